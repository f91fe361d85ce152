"""The real openai client, instrumented by `init()`, against a byte-realistic fake of the API."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from tests.fakes import bodies
from tests.fakes.recorded import Recorded
from tests.fakes.server import Fake
from tests.fakes.tokens import expected_tokens  # fixtures `fake` and `recorded` live in conftest

import llmledger
from llmledger.events import UsageEvent


def client(fake: Fake, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", http_client=fake.client(), max_retries=0, **kw)


def aclient(fake: Fake, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", http_client=fake.async_client(), max_retries=0, **kw)


MSGS = [{"role": "user", "content": "Say hello to the ledger, please."}]
# gpt-4o-mini: $0.15 / M input, $0.075 / M cached input, $0.60 / M output
CHAT_COST = Decimal("0.15") * 176 / 10**6 + Decimal("0.075") * 1024 / 10**6 + Decimal("0.6") * 300 / 10**6


def assert_chat_usage(e: UsageEvent) -> None:
    assert (e.provider, e.model, e.requested_model) == ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini")
    assert (e.input_tokens, e.cache_read_tokens, e.output_tokens, e.reasoning_tokens) == (
        1200,
        1024,
        300,
        256,
    )
    assert e.cost_usd == CHAT_COST and e.cost_source == "catalog"
    assert e.status == "ok" and not e.estimated


def test_chat_create_sync(fake: Fake, recorded: list[UsageEvent]) -> None:
    with llmledger.attribute(tenant="acme", feature="chat"):
        reply = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Hello there, how can I help?"
    [e] = recorded
    assert_chat_usage(e)
    assert (e.tenant, e.feature, e.endpoint, e.stream, e.complete) == (
        "acme",
        "chat",
        "chat.completions",
        False,
        True,
    )
    assert e.request_id == "chatcmpl-AbC123" and e.duration_ms is not None and e.duration_ms > 0
    llmledger.flush()
    assert [x.event_id for x in llmledger.events()] == [e.event_id]


def test_chat_create_async(fake: Fake, recorded: list[UsageEvent]) -> None:
    async def go() -> None:
        async with llmledger.attribute(user="u1") if False else _null():
            await aclient(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, ledger_user="u1")  # type: ignore[arg-type,call-overload]

    asyncio.run(go())
    [e] = recorded
    assert_chat_usage(e)
    assert e.user == "u1"


class _null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_stream_hides_the_injected_usage_chunk(fake: Fake, recorded: list[UsageEvent]) -> None:
    stream = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
    assert type(stream).__name__ == "Stream" and isinstance(stream, openai.Stream)
    chunks = list(stream)
    # exactly what the caller would have seen without llmledger: no `choices: []` chunk
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello there, how can I help?"
    assert fake.seen[0].body["stream_options"] == {"include_usage": True}
    [e] = recorded
    assert_chat_usage(e)
    assert e.stream and e.complete and e.time_to_first_token_ms is not None
    assert e.time_to_first_token_ms <= e.duration_ms  # type: ignore[operator]


def test_stream_keeps_usage_chunk_the_caller_asked_for(fake: Fake, recorded: list[UsageEvent]) -> None:
    chunks = list(
        client(fake).chat.completions.create(
            model="gpt-4o-mini",
            messages=MSGS,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert_chat_usage(recorded[0])


def test_stream_async_and_context_manager(fake: Fake, recorded: list[UsageEvent]) -> None:
    async def go() -> list[Any]:
        stream = await aclient(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
        async with stream:
            return [c async for c in stream]

    chunks = asyncio.run(go())
    assert all(c.choices for c in chunks)
    [e] = recorded
    assert_chat_usage(e)
    assert e.stream and e.complete


def test_async_stream_closed_early(fake: Fake, recorded: list[UsageEvent]) -> None:
    async def go() -> None:
        stream = await aclient(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
        async with stream:
            async for _ in stream:
                break

    asyncio.run(go())
    [e] = recorded
    assert e.stream and not e.complete and e.estimated and e.output_tokens == 0  # only the role chunk


def test_stream_closed_early_is_recorded_once_estimated(fake: Fake, recorded: list[UsageEvent]) -> None:
    with client(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True) as stream:  # type: ignore[arg-type]
        for i, _ in enumerate(stream):
            if i == 3:
                break
    gc.collect()
    [e] = recorded
    assert e.stream and not e.complete and e.estimated
    assert e.model == "gpt-4o-mini-2024-07-18"
    assert e.input_tokens == 8  # ~4 characters a token of the prompt text (32 chars)
    assert e.output_tokens >= 1 and e.cost_usd is not None and e.cost_usd > 0


def test_stream_cut_by_the_server_before_usage(fake: Fake, recorded: list[UsageEvent]) -> None:
    fake.cut = 5  # role chunk + 4 deltas, then the connection ends without usage or [DONE]
    chunks = list(client(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))  # type: ignore[arg-type]
    assert len(chunks) == 5
    [e] = recorded
    assert e.estimated and e.output_tokens == 4  # "Hello there, how" = 16 chars
    assert e.input_tokens == 8


def test_stream_abandoned_to_the_garbage_collector(fake: Fake, recorded: list[UsageEvent]) -> None:
    stream = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
    next(iter(stream))
    del stream
    gc.collect()
    assert len(recorded) == 1 and not recorded[0].complete


def test_stream_never_iterated_is_recorded_when_dropped(fake: Fake, recorded: list[UsageEvent]) -> None:
    stream = client(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
    del stream
    gc.collect()
    assert len(recorded) == 1 and recorded[0].estimated


def test_stream_helper(fake: Fake, recorded: list[UsageEvent]) -> None:
    with client(fake).chat.completions.stream(
        model="gpt-4o-mini", messages=MSGS, ledger_tenant="t9"
    ) as stream:  # type: ignore[arg-type]
        text = "".join(ev.delta for ev in stream if ev.type == "content.delta")
        final = stream.get_final_completion()
    assert text == "Hello there, how can I help?"
    assert final.usage is None  # the caller did not ask for usage, so the helper sees none
    [e] = recorded
    assert_chat_usage(e)
    assert e.tenant == "t9"


def test_stream_helper_closed_early_records_at_close(fake: Fake, recorded: list[UsageEvent]) -> None:
    with client(fake).chat.completions.stream(model="gpt-4o-mini", messages=MSGS) as stream:  # type: ignore[arg-type]
        for _ in stream:
            break
    assert len(recorded) == 1 and not recorded[0].complete  # at close, not at garbage collection


def test_parse_helper(fake: Fake, recorded: list[UsageEvent]) -> None:
    client(fake).chat.completions.parse(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert_chat_usage(recorded[0])


def test_responses_create_and_stream(fake: Fake, recorded: list[UsageEvent]) -> None:
    c = client(fake)
    resp = c.responses.create(model="o4-mini", input="Say hello.")
    assert resp.output_text == "Hello there, how can I help?"
    events = list(c.responses.create(model="o4-mini", input="Say hello.", stream=True))
    assert events[-1].type == "response.completed"
    with c.responses.stream(model="o4-mini", input="Say hello.") as s:
        s.until_done()
    assert len(recorded) == 3
    # o4-mini: $1.10 / M input, $0.275 / M cached, $4.40 / M output
    cost = Decimal("1.1") * 464 / 10**6 + Decimal("0.275") * 1536 / 10**6 + Decimal("4.4") * 500 / 10**6
    for e in recorded:
        assert (e.model, e.endpoint) == ("o4-mini-2025-04-16", "responses")
        assert (e.input_tokens, e.cache_read_tokens, e.output_tokens, e.reasoning_tokens) == (
            2000,
            1536,
            500,
            384,
        )
        assert e.cost_usd == cost and not e.estimated
    assert [e.stream for e in recorded] == [False, True, True]


def test_responses_stream_cut_before_completed(fake: Fake, recorded: list[UsageEvent]) -> None:
    fake.cut = 8  # created, reasoning added + done, message added, part added, 3 deltas
    list(client(fake).responses.create(model="o4-mini", input="Say hello.", stream=True))
    [e] = recorded
    assert e.estimated and not e.complete and e.model == "o4-mini-2025-04-16"
    assert e.input_tokens == 3 and e.output_tokens == 3  # "Say hello." and "Hello there," estimated


def test_embeddings_completions_audio_images(fake: Fake, recorded: list[UsageEvent]) -> None:
    c = client(fake)
    c.embeddings.create(model="text-embedding-3-small", input="hello world")
    c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say")
    c.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", b"RIFF0000WAVE"))
    speech = c.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hello there, listener.")
    assert speech.content.startswith(b"ID3")
    c.images.generate(model="gpt-image-1", prompt="a ledger")
    by = {e.endpoint: e for e in recorded}
    assert set(by) == {
        "embeddings",
        "completions",
        "audio.transcriptions",
        "audio.speech",
        "images.generations",
    }
    emb = by["embeddings"]
    assert (emb.input_tokens, emb.output_tokens, emb.cost_usd) == (8, 0, Decimal("0.02") * 8 / 10**6)
    assert (by["completions"].input_tokens, by["completions"].output_tokens) == (5, 7)
    tr = by["audio.transcriptions"]
    assert (tr.input_tokens, tr.input_audio_tokens, tr.output_tokens) == (140, 120, 30)
    # gpt-4o-transcribe: $2.50 / M text input, $6 / M audio input, $10 / M output
    assert tr.cost_usd == (Decimal("2.5") * 20 + Decimal(6) * 120 + Decimal(10) * 30) / 10**6
    sp = by["audio.speech"]
    # no usage in an audio body: the input text is counted (tokenizer where public, else ~4 chars)
    assert sp.estimated and sp.output_tokens == 0
    assert sp.input_tokens == expected_tokens("Hello there, listener.", "gpt-4o-mini-tts")
    im = by["images.generations"]
    assert (im.input_tokens, im.output_tokens, im.output_image_tokens) == (50, 4160, 4160)
    assert im.cost_usd == (Decimal(5) * 50 + Decimal(40) * 4160) / 10**6


def test_raw_and_streaming_response_paths(fake: Fake, recorded: list[UsageEvent]) -> None:
    c = client(fake)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert raw.headers["x-request-id"] == "req_fake"
    assert raw.parse().id == "chatcmpl-AbC123" and raw.parse() is raw.parse()
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSGS) as resp:  # type: ignore[arg-type]
        resp.parse()
    raw_stream = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
    assert all(ch.choices for ch in raw_stream.parse())
    assert len(recorded) == 3
    for e in recorded:
        assert_chat_usage(e)


def test_raw_response_never_parsed_is_recorded_unread(fake: Fake, recorded: list[UsageEvent]) -> None:
    raw = client(fake).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert raw.http_response.status_code == 200
    del raw
    gc.collect()
    [e] = recorded
    assert e.cost_usd is None and e.estimated and "never parsed" in (e.unpriced_reason or "")


def test_langchain_style_wrapper_is_counted_once(fake: Fake, recorded: list[UsageEvent]) -> None:
    class ChatModel:  # what LangChain's ChatOpenAI does underneath: raw response, then parse
        def __init__(self) -> None:
            self.client = client(fake).chat.completions

        def invoke(self, text: str) -> str:
            raw = self.client.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
            )
            return str(raw.parse().choices[0].message.content)

    assert ChatModel().invoke("hi") == "Hello there, how can I help?"
    assert len(recorded) == 1


@pytest.mark.parametrize("status", [400, 429, 500])
def test_provider_error_recorded_and_original_raised(
    fake: Fake, recorded: list[UsageEvent], status: int
) -> None:
    fake.fail = (status, bodies.error_body(status))
    expected = {400: openai.BadRequestError, 429: openai.RateLimitError, 500: openai.InternalServerError}[
        status
    ]
    with pytest.raises(expected) as info:
        client(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS, ledger_tenant="acme")  # type: ignore[arg-type,call-overload]
    assert info.value.status_code == status
    [e] = recorded
    assert (e.status, e.error_type, e.cost_usd, e.tenant) == ("error", expected.__name__, Decimal(0), "acme")
    assert e.input_tokens == 0 and e.model == "gpt-4o-mini"


def test_connection_error_recorded(recorded: list[UsageEvent]) -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    c = openai.OpenAI(
        api_key="k", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(refuse))
    )
    with pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert recorded[0].status == "error" and recorded[0].error_type == "APIConnectionError"


def test_error_mid_stream(fake: Fake, recorded: list[UsageEvent]) -> None:
    def broken(request: httpx2.Request) -> httpx2.Response:
        def body() -> Iterator[bytes]:
            yield bodies.chat_stream("gpt-4o-mini-2024-07-18", True, cut=3)
            raise httpx2.ReadError("connection reset")

        return httpx2.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    c = openai.OpenAI(
        api_key="k", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(broken))
    )
    got: list[Any] = []
    stream = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
    with pytest.raises((openai.APIConnectionError, httpx2.ReadError)):  # openai 3.0 does not wrap it
        got.extend(stream)
    assert len(got) == 3
    [e] = recorded
    assert e.status == "error" and e.estimated and not e.complete
    assert e.output_tokens == expected_tokens("Hello there", "gpt-4o-mini-2024-07-18")  # 2 exact, 3 by chars


def test_non_billable_calls_are_not_metered(fake: Fake, recorded: list[UsageEvent]) -> None:
    c = client(fake)
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-4o-mini")
    assert recorded == []


@pytest.mark.parametrize(
    ("base_url", "kw", "provider"),
    [
        ("https://api.deepseek.com/v1", {}, "deepseek"),
        ("https://openrouter.ai/api/v1", {}, "openrouter"),
        ("https://api.mistral.ai/v1", {}, "mistral"),
        ("https://api.together.xyz/v1", {}, "together"),
        ("https://api.groq.com/openai/v1", {}, "groq"),
        ("https://api.fireworks.ai/inference/v1", {}, "fireworks"),
        ("https://api.x.ai/v1", {}, "xai"),
        ("http://llm.internal:8000/v1", {}, "openai"),
    ],
)
def test_provider_from_base_url(
    fake: Fake, recorded: list[UsageEvent], base_url: str, kw: Any, provider: str
) -> None:
    client(fake, base_url=base_url).chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert recorded[0].provider == provider


def test_base_url_providers_mapping(fake: Fake, ledger_path: Path) -> None:
    events = Recorded()
    llmledger.init(
        ledger=str(ledger_path), on_event=events.append, base_url_providers={"llm.internal:8000": "together"}
    )
    client(fake, base_url="http://llm.internal:8000/v1").chat.completions.create(
        model="gpt-4o-mini", messages=MSGS
    )  # type: ignore[arg-type]
    assert events[0].provider == "together"


def test_azure_client(fake: Fake, recorded: list[UsageEvent]) -> None:
    c = openai.AzureOpenAI(
        api_key="k",
        api_version="2024-10-21",
        azure_endpoint="https://myco.openai.azure.com",
        azure_deployment="prod-mini",
        http_client=fake.client(),
        max_retries=0,
    )
    c.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert fake.seen[0].path == "/openai/deployments/prod-mini/chat/completions"
    [e] = recorded
    assert e.provider == "azure" and e.model == "gpt-4o-mini-2024-07-18"


def test_deepseek_cache_hit_counted_once(fake: Fake, recorded: list[UsageEvent]) -> None:
    fake.usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_tokens_details": {"cached_tokens": 640},
        "prompt_cache_hit_tokens": 640,
        "prompt_cache_miss_tokens": 360,
    }
    client(fake, base_url="https://api.deepseek.com").chat.completions.create(
        model="deepseek-chat", messages=MSGS
    )  # type: ignore[arg-type]
    [e] = recorded
    assert (e.provider, e.input_tokens, e.cache_read_tokens) == ("deepseek", 1000, 640)


def test_openrouter_billed_cost(fake: Fake, recorded: list[UsageEvent]) -> None:
    fake.usage = {**bodies.CHAT_USAGE, "cost": 0.00123, "is_byok": False}
    client(fake, base_url="https://openrouter.ai/api/v1").chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=MSGS,  # type: ignore[arg-type]
    )
    [e] = recorded
    assert (e.cost_usd, e.cost_source) == (Decimal("0.00123"), "provider")


def test_stream_reader_does_not_keep_chunks_alive() -> None:
    """Regression: keeping every chunk alive until the stream ended cost ~13 µs a chunk in GC work."""
    import gc

    from openai.types.chat import ChatCompletionChunk

    from llmledger.instrumentation.providers.openai import stream_reader

    reader = stream_reader("chat.completions", True)
    chunks = [
        ChatCompletionChunk.model_validate(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "delta": {"content": "abcd"}, "finish_reason": None}],
            }
        )
        for _ in range(3)
    ]
    for chunk in chunks:
        assert reader.chunk(chunk)
    assert reader.chars == 12
    held = [r for r in gc.get_referrers(chunks[1]) if r is not chunks]
    assert held == []  # only the first chunk is kept (for the model name), not the others


def test_fields_reads_declared_extra_dict_and_slotted_objects() -> None:
    from openai.types import CompletionUsage

    from llmledger.instrumentation.usage import fields

    u = CompletionUsage.model_validate(
        {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cost": 0.5}
    )
    f = fields(u)
    assert (f.get("prompt_tokens"), f.get("cost"), f.get("missing")) == (3, 0.5, None)  # declared and extra
    assert fields({"a": 1}).get("a") == 1 and fields(None).get("a") is None

    class Slotted:
        __slots__ = ("a",)

        def __init__(self) -> None:
            self.a = 7

    assert fields(Slotted()).get("a") == 7 and fields(Slotted()).get("b") is None
