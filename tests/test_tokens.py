"""llmledger.tokens: exact OpenAI counts offline, a safe bound for every other model, prompt bounds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fakes.prompt_tokens import openai_prompt_tokens

from llmledger.errors import InvalidUsageError
from llmledger.tokens import (
    count_tokens,
    encoding_for_model,
    prompt_tokens_bound,
    upper_bound_tokens,
)
from llmledger.tokens.prompt import IMAGE_TOKENS_MAX, context_window

SYSTEM = (
    "You are a support assistant for Acme Cloud. Answer in the customer's language, cite the relevant "
    "documentation section, never reveal internal ticket numbers, and escalate billing disputes over "
    "$500 to a human. Keep answers under 200 words unless the customer asks for detail. "
) * 6
TURNS = [
    "My deployment in eu-west-1 keeps failing with 'quota exceeded' although I deleted two clusters.",
    "Quotas are released within 15 minutes of deletion. Could you share the cluster ids you removed?",
    "Sure: clu-7f3a9 and clu-11bd2. It has been an hour. Also, why was I billed €42.10 for March?",
    "Thanks. The March charge covers 3 node-days of clu-11bd2 (€14.03 each). I have asked our team.",
    "Über-urgent: our CEO 日本 demo is tomorrow 🙂 — can you raise the quota to 12 vCPU today?",
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_quota",
            "description": "Read the current vCPU quota of a region for the customer's account.",
            "parameters": {
                "type": "object",
                "properties": {
                    "region": {"type": "string", "description": "Cloud region id, e.g. eu-west-1"},
                    "unit": {"type": "string", "enum": ["vcpu", "gpu", "memory_gb"], "description": "Unit"},
                },
                "required": ["region"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "open_ticket",
            "description": "Open a ticket for the human support team.",
            "parameters": {
                "type": "object",
                "properties": {
                    "summary": {"type": "string", "description": "One line summary."},
                    "priority": {"type": "integer", "description": "1 (urgent) to 4 (low)."},
                },
            },
        },
    },
]


def _conversation(turns: int = 5, system: str = SYSTEM) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}]
    for i in range(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": TURNS[i % len(TURNS)]})
    return messages


def test_counts_exactly_with_openai_encodings() -> None:
    assert count_tokens("hello world", "gpt-4o") == 2
    assert count_tokens("tiktoken is great!", "gpt-4") == 6  # OpenAI cookbook's example (cl100k_base)
    assert count_tokens("", "gpt-5-mini") == 0
    assert encoding_for_model("gpt-4o-mini-2024-07-18") == "o200k_base"
    assert encoding_for_model("ft:gpt-4o-mini:acme::abc") == "o200k_base"
    assert encoding_for_model("openai/gpt-5") == "o200k_base"
    assert encoding_for_model("gpt-4-turbo") == "cl100k_base"
    assert encoding_for_model("gpt-3.5-turbo") == "cl100k_base"


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash", "mistral-large", None, ""])
def test_no_public_tokenizer_gives_none(model: str | None) -> None:
    assert count_tokens("hello", model) is None


def test_bad_text_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        count_tokens(b"bytes", "gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        upper_bound_tokens(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("call", [lambda: count_tokens(None, "gpt-4o"), lambda: upper_bound_tokens(5)])  # type: ignore[arg-type]
def test_bad_text_is_also_an_llmledger_error(call: Any) -> None:
    """Newcomer report item 33: raw builtins from a public module."""
    with pytest.raises(InvalidUsageError, match="needs a str"):
        call()


@pytest.mark.parametrize("body", ["x", ["messages"], 5])
def test_a_body_that_is_not_an_object_is_a_typed_error(body: Any) -> None:
    with pytest.raises(InvalidUsageError, match="body must be"):
        prompt_tokens_bound(body, "gpt-4o")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_upper_bound_is_never_below_a_real_count(text: str) -> None:
    bound = upper_bound_tokens(text)
    for model in ("gpt-4o", "gpt-4"):
        counted = count_tokens(text, model)
        assert counted is not None
        assert counted <= bound


def test_lone_surrogate_is_bounded_not_raised() -> None:
    counted = count_tokens("a\ud800b", "gpt-4o")
    assert counted is not None
    assert counted <= upper_bound_tokens("a\ud800b") == 5


def test_loaded_lazily_and_offline(tmp_path: Path) -> None:
    """`import llmledger` (and init) never loads the tokenizer; counting works with no network."""
    code = textwrap.dedent(
        """
        import socket, sys
        def no_network(*a, **k):
            raise OSError("network used")
        socket.socket.connect = no_network
        socket.create_connection = no_network
        socket.getaddrinfo = no_network
        import llmledger
        llmledger.init(ledger=sys.argv[1], instrument=False)
        assert "bpe_openai" not in sys.modules, "loaded at import"
        from llmledger.tokens import count_tokens
        assert "bpe_openai" not in sys.modules, "loaded at import of llmledger.tokens"
        assert count_tokens("hello world", "gpt-4o") == 2
        assert count_tokens("hello world", "gpt-3.5-turbo") == 2
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "l.db")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o", "messages": _conversation(5)},
        {"model": "gpt-4o", "messages": _conversation(5), "tools": TOOLS},
        {"model": "gpt-4o", "messages": _conversation(1, SYSTEM * 8), "max_tokens": 850},  # ~2,450 tokens
        {"model": "gpt-4o", "messages": _conversation(16, SYSTEM[:400])},
        {
            "model": "gpt-4o",
            "messages": [*_conversation(3), {"role": "user", "name": "ana", "content": "Hi"}],
        },
    ],
    ids=["conversation", "with-tools", "long-system", "many-turns", "named"],
)
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-5-mini", "gpt-4o-mini-2024-07-18"])
def test_prompt_bound_is_within_ten_percent_above_the_reported_count(
    body: dict[str, object], model: str
) -> None:
    reported = openai_prompt_tokens(body)
    bound = prompt_tokens_bound(body, model)
    assert reported <= bound <= reported * 1.10, (reported, bound)


def test_prompt_bound_of_the_issue_case() -> None:
    """The ~2,450-token prompt of issue 8 part 4 is bounded near its real size (not 6x: bytes)."""
    body = {"model": "gpt-5-mini", "messages": _conversation(1, SYSTEM * 8), "max_tokens": 850}
    reported = openai_prompt_tokens(body)
    assert 2000 < reported < 3000
    assert prompt_tokens_bound(body, "gpt-5-mini") <= reported * 1.10


def test_non_openai_models_use_the_byte_bound_and_tool_overhead() -> None:
    body = {"model": "claude-sonnet-4-5", "system": SYSTEM, "messages": _conversation(3)[1:]}
    plain = prompt_tokens_bound(body, "claude-sonnet-4-5")
    assert plain >= len(SYSTEM.encode())
    with_tools = prompt_tokens_bound(
        {**body, "tools": [{"name": "x", "input_schema": {}}]}, "claude-sonnet-4-5"
    )
    assert with_tools >= plain + 1024


def test_images_and_stored_prompts_are_bounded() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]}
    assert prompt_tokens_bound(body, "gpt-4o") >= IMAGE_TOKENS_MAX
    assert prompt_tokens_bound(body, "gpt-4o-mini") >= 2833 + 5667 * 8
    stored = {"model": "gpt-5", "input": "and then?", "previous_response_id": "resp_1"}
    assert prompt_tokens_bound(stored, "gpt-5") == context_window("gpt-5") == 400_000


def test_responses_and_embeddings_shapes() -> None:
    responses = {
        "model": "gpt-5",
        "instructions": SYSTEM,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": TURNS[0]}]},
            {"type": "function_call", "call_id": "c1", "name": "get_quota", "arguments": '{"region":"eu"}'},
            {"type": "function_call_output", "call_id": "c1", "output": '{"vcpu": 8}'},
        ],
    }
    expected = count_tokens(SYSTEM, "gpt-5")
    assert expected is not None
    assert prompt_tokens_bound(responses, "gpt-5") > expected
    assert prompt_tokens_bound({"input": [1, 2, 3, 4]}, "text-embedding-3-small") >= 4
    assert prompt_tokens_bound({"input": ["a b", "c"]}, "text-embedding-3-small") >= 3


IDS = list(range(1000, 6000))
_FILE = "https://files.example.com/report.pdf"


def _doc(source: dict[str, str]) -> dict[str, Any]:
    """An Anthropic messages body with one document block."""
    return {"messages": [{"role": "user", "content": [{"type": "document", "source": source}]}]}


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({"input": [IDS]}, "text-embedding-3-small"),
        ({"input": [IDS[:2500], IDS[2500:]]}, "text-embedding-3-small"),
        ({"prompt": [IDS]}, "gpt-3.5-turbo-instruct"),
        ({"input": [IDS]}, "some-embedding-model-without-tokenizer"),
    ],
)
def test_token_id_batches_count_one_token_per_id(body: dict[str, Any], model: str) -> None:
    # Regression (newcomer report, 2026-12-02, item 3): a list of token-id lists was bounded at
    # 7 tokens, so one embeddings call of 5,000 ids overshot a hard limit 4x.
    assert prompt_tokens_bound(body, model) >= len(IDS)


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}, "gpt-4o"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_url": _FILE}]}]}, "gpt-4o"),
        ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}, "gpt-4o"),
        (_doc({"type": "url", "url": _FILE}), "claude-sonnet-4-5"),
        (_doc({"type": "file", "file_id": "f"}), "claude-sonnet-4-5"),
        ({"contents": [{"parts": [{"fileData": {"fileUri": "gs://b/r.pdf"}}]}]}, "gemini-2.5-flash"),
        ({"contents": [{"parts": [{"file_data": {"file_uri": "gs://b/r.pdf"}}]}]}, "gemini-2.5-flash"),
        ({"contents": [{"parts": [{"text": "?"}]}], "cachedContent": "cachedContents/1"}, "gemini-2.5-pro"),
    ],
)
def test_content_held_elsewhere_is_bounded_by_the_context_window(body: dict[str, Any], model: str) -> None:
    # Regression (same report): a file by id or URL, a document by URL and Gemini cached content
    # were bounded at 11-166 tokens; a referenced PDF bills tens of thousands.
    assert prompt_tokens_bound(body, model) == context_window(model)


def test_images_by_reference_count_the_most_an_image_can_for_every_model() -> None:
    anthropic = {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}
    body = {"messages": [{"role": "user", "content": [anthropic, anthropic]}]}
    assert prompt_tokens_bound(body, "claude-sonnet-4-5") >= 2 * IMAGE_TOKENS_MAX
    inline = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}
    small = {"messages": [{"role": "user", "content": [inline]}]}
    assert prompt_tokens_bound(small, "claude-sonnet-4-5") < IMAGE_TOKENS_MAX  # its bytes are in the body


FORK_DURING_WARM = """
import logging, os, signal, sys, time
logging.basicConfig(level=logging.WARNING)
import llmledger.tokens.count as count
from llmledger.tokens import count_tokens, warm

thread = warm(("gpt-4o",))
deadline = time.monotonic() + 60
while "bpe_openai" not in sys.modules and time.monotonic() < deadline:
    time.sleep(0.0002)
in_progress = thread.is_alive() and "o200k_base" not in count._encodings
pid = os.fork()
if pid == 0:
    signal.alarm(30)  # a child stuck on the parent's import lock (the bug) dies instead of hanging
    got = count_tokens("hello world", "gpt-4o")
    os._exit(0 if got == 2 else 3)
_, status = os.waitpid(pid, 0)
print(in_progress, os.waitstatus_to_exitcode(status), count_tokens("hello world", "gpt-4o"))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_while_warm_imports_the_tokenizer_counts_exactly() -> None:
    """Regression (hot8's crash runs): a child forked while the parent's `warm()` thread was in the
    middle of `import bpe_openai` got a half-initialised module and fell back to the byte bound."""
    out = subprocess.run(
        [sys.executable, "-c", FORK_DURING_WARM], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    in_progress, child_exit, parent_count = out.stdout.split()
    assert in_progress == "True", "the fork did not happen during the import: the race was not exercised"
    assert child_exit == "0", out.stderr
    assert parent_count == "2"
    assert "cannot load" not in out.stderr and "forked" not in out.stderr, out.stderr
    assert "Exception ignored" not in out.stderr, out.stderr  # every fork handler ran in pairs
