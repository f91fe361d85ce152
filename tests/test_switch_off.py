"""Switched off, llmledger does nothing: labelled calls (`ledger_*`, `labels()`) work like bare SDK calls.

Every way of switching off (the environment, `init(enabled=False)`, `uninstrument()`, `shutdown()`)
times every SDK shape (openai sync / async / stream, anthropic, google-genai): the call succeeds,
the provider sees neither the labels nor llmledger's header, nothing is recorded, and a disabled
llmledger creates no ledger file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types
from tests.fakes.recorded import Recorded
from tests.fakes.server import Fake

import llmledger
from llmledger.attribution.labels import LABELS_HEADER

MSGS: Any = [{"role": "user", "content": "hi"}]


def _openai(fake: Fake, **kw: Any) -> None:
    c = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, **kw)


def _openai_stream(fake: Fake, **kw: Any) -> None:
    c = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    list(c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True, **kw))


def _openai_async(fake: Fake, **kw: Any) -> None:
    async def go() -> None:
        c = openai.AsyncOpenAI(api_key="k", http_client=fake.async_client(), max_retries=0)
        await c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, **kw)

    asyncio.run(go())


def _openai_raw(fake: Fake, **kw: Any) -> None:
    c = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS, **kw).parse()


def _anthropic(fake: Fake, **kw: Any) -> None:
    c = anthropic.Anthropic(api_key="k", http_client=fake.client(), max_retries=0)
    c.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS, **kw)


def _google(fake: Fake, **kw: Any) -> None:
    options = types.HttpOptions(httpx_client=fake.client(), httpx_async_client=fake.async_client())
    c = genai.Client(api_key="g", http_options=options)
    headers = kw.pop("extra_headers", None)
    if headers is not None:
        kw["config"] = {"http_options": {"headers": headers}}
    c.models.generate_content(model="gemini-2.5-flash", contents="hi", **kw)


CALLS: dict[str, Callable[..., None]] = {
    "openai": _openai,
    "openai-stream": _openai_stream,
    "openai-async": _openai_async,
    "openai-raw": _openai_raw,
    "anthropic": _anthropic,
    "google": _google,
}


def _switch_off(how: str, path: Path, events: Recorded, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "environment":
        monkeypatch.setenv("LLMLEDGER_DISABLED", "1")
        llmledger.init(ledger=str(path), on_event=events.append)
    elif how == "enabled=False":
        llmledger.init(ledger=str(path), on_event=events.append, enabled=False)
    elif how == "uninstrument":
        llmledger.init(ledger=str(path), on_event=events.append)
        llmledger.uninstrument()
    else:
        llmledger.init(ledger=str(path), on_event=events.append)
        llmledger.shutdown()


def _assert_bare(fake: Fake) -> None:
    assert fake.seen, "the call was not sent"
    for seen in fake.seen:
        assert LABELS_HEADER not in seen.headers
        assert "ledger" not in str(seen.body)


@pytest.mark.parametrize("how", ["environment", "enabled=False", "uninstrument", "shutdown"])
@pytest.mark.parametrize("call", list(CALLS))
def test_labelled_calls_work_like_bare_calls_when_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, call: str
) -> None:
    events = Recorded()
    path = tmp_path / "off.db"
    _switch_off(how, path, events, monkeypatch)
    fake = Fake()
    CALLS[call](fake, ledger_tenant="acme", ledger_tags={"plan": "pro"}, ledger_feature="chat")
    CALLS[call](fake, extra_headers=llmledger.labels(tenant="acme"))
    CALLS[call](fake, ledger_tenant="")  # not validated either: switched off means "does nothing"
    _assert_bare(fake)
    assert events == []
    if how in ("environment", "enabled=False"):
        assert not path.exists(), "a disabled llmledger created its ledger file"


@pytest.mark.parametrize("call", list(CALLS))
def test_typed_labels_attribute_one_call(recorded: list[Any], call: str) -> None:
    fake = Fake()
    with llmledger.attribute(tenant="ctx", feature="ctx-feature"):
        CALLS[call](fake, extra_headers=llmledger.labels(tenant="acme", tags={"plan": "pro"}))
    llmledger.flush()
    [event] = recorded
    assert (event.tenant, event.feature, event.tags) == ("acme", "ctx-feature", {"plan": "pro"})
    _assert_bare(fake)


def test_labels_validates_before_sending() -> None:
    with pytest.raises(llmledger.InvalidUsageError, match="tenant"):
        llmledger.labels(tenant="")
    assert llmledger.labels(user="u1") == {LABELS_HEADER: '{"user":"u1"}'}


@pytest.mark.parametrize("call", list(CALLS))
def test_empty_ledger_kwarg_is_a_labelled_error_before_sending(recorded: list[Any], call: str) -> None:
    fake = Fake()
    with pytest.raises(llmledger.InvalidUsageError, match=r"ledger_tenant='': .*not sent"):
        CALLS[call](fake, ledger_tenant="")
    assert fake.seen == []


def test_providers_not_metered_drop_labels(tmp_path: Path) -> None:
    events = Recorded()
    llmledger.init(ledger=str(tmp_path / "l.db"), on_event=events.append, providers=["anthropic"])
    fake = Fake()
    _openai(fake, ledger_tenant="acme", extra_headers=llmledger.labels(user="u"))
    _assert_bare(fake)
    _anthropic(fake, ledger_tenant="acme")
    llmledger.flush()
    assert [e.tenant for e in events] == ["acme"]


def test_labels_shim_lies_over_the_original_exactly(tmp_path: Path) -> None:
    from llmledger.instrumentation.patching import MARK

    llmledger.init(ledger=str(tmp_path / "l.db"))
    llmledger.uninstrument()
    create = openai.resources.chat.completions.Completions.create
    assert getattr(create, MARK, False)
    assert not getattr(create.__wrapped__, MARK, False)  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["", "   "])
def test_init_rejects_an_empty_ledger(bad: str) -> None:
    with pytest.raises(llmledger.ConfigError, match="ledger must be"):
        llmledger.init(ledger=bad)


def test_row_group_keys_read_as_attributes_and_items(ledger: Any) -> None:
    llmledger.track(
        provider="openai", model="gpt-4o-mini", input_tokens=10, tenant="acme", tags={"plan": "p"}
    )
    [row] = llmledger.usage(["tenant", "model", "tag:plan"])
    assert row.tenant == row["tenant"] == "acme" and row.model == "gpt-4o-mini"
    assert row["tag:plan"] == "p" and row.requests == row["requests"] == 1
    with pytest.raises(AttributeError, match="grouped by: tenant, model, tag:plan"):
        _ = row.user


NEVER_INIT = """
import sys
sys.path.insert(0, {root!r})
import llmledger
from llmledger.attribution.labels import LABELS_HEADER
from tests.fakes.server import Fake
from tests.test_switch_off import CALLS

for name, call in CALLS.items():
    fake = Fake()
    call(fake, extra_headers=llmledger.labels(tenant="acme", feature="x"))
    assert fake.seen, name
    leaked = [name for seen in fake.seen if LABELS_HEADER in seen.headers]
    assert not leaked, leaked
print("ok", len(CALLS))
"""


def test_labels_never_reach_the_provider_in_a_process_that_never_called_init(tmp_path: Path) -> None:
    # Regression (newcomer report, 2026-12-02, item 12): without init() nothing took the labels()
    # header off, so the app's tenant and user ids went to the provider.
    import subprocess
    import sys

    root = str(Path(__file__).parent.parent)
    code = NEVER_INIT.format(root=root)
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": f"{root}/src"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and f"ok {len(CALLS)}" in done.stdout, done.stderr[-2000:]
