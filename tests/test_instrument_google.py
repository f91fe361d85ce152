"""The real google-genai client, instrumented by `init()`, against a byte-realistic fake of the API."""

from __future__ import annotations

import asyncio
import gc
from decimal import Decimal

import pytest
from google import genai
from google.genai import errors, types
from tests.fakes import bodies
from tests.fakes.server import Fake  # fixtures `fake` and `recorded` live in conftest

from llmledger.events import UsageEvent

# gemini-2.5-flash: $0.30 / M text input, $1 / M audio input, $0.03 / M cached text, $2.50 / M output
COST = (Decimal("0.3") * 276 + Decimal(1) * 200 + Decimal("0.03") * 1024 + Decimal("2.5") * 420) / 10**6


def client(fake: Fake, vertex: bool = False) -> genai.Client:
    options = types.HttpOptions(httpx_client=fake.client(), httpx_async_client=fake.async_client())
    if vertex:
        return genai.Client(
            vertexai=True, project="p", location="us-central1", credentials=_Creds(), http_options=options
        )
    return genai.Client(api_key="g-test", http_options=options)


class _Creds:
    """Enough of google.auth credentials for the Vertex client to sign a request."""

    token = "ya29.test"
    valid = True
    expired = False
    quota_project_id = None

    def refresh(self, request: object) -> None:
        return None

    def before_request(self, request: object, method: str, url: str, headers: dict[str, str]) -> None:
        headers["authorization"] = "Bearer ya29.test"


def assert_usage(e: UsageEvent, provider: str = "gemini") -> None:
    assert (e.provider, e.model, e.requested_model, e.endpoint) == (
        provider,
        "gemini-2.5-flash",
        "gemini-2.5-flash",
        "generate_content",
    )
    # candidatesTokenCount EXCLUDES thoughts: output = 120 + 300
    assert (e.input_tokens, e.cache_read_tokens, e.input_audio_tokens) == (1500, 1024, 200)
    assert (e.output_tokens, e.reasoning_tokens) == (420, 300)
    assert e.cost_usd == COST and not e.estimated and e.status == "ok"


def test_generate_content_sync_async(fake: Fake, recorded: list[UsageEvent]) -> None:
    c = client(fake)
    r = c.models.generate_content(model="gemini-2.5-flash", contents="Hello?", ledger_tenant="acme")  # type: ignore[call-arg]
    assert r.text == "Hello there, how can I help?"

    async def go() -> None:
        await c.aio.models.generate_content(model="gemini-2.5-flash", contents="Hello?")

    asyncio.run(go())
    assert len(recorded) == 2
    for e in recorded:
        assert_usage(e)
    assert recorded[0].tenant == "acme" and recorded[0].request_id == "mQ5HaZ-xBKqn1MkPz9nQ8Qc"
    assert all("x-llmledger-attribution" not in s.headers for s in fake.seen)


def test_ledger_kwargs_with_existing_config(fake: Fake, recorded: list[UsageEvent]) -> None:
    c = client(fake)
    config = types.GenerateContentConfig(
        temperature=0.1, http_options=types.HttpOptions(headers={"x-app": "1"})
    )
    c.models.generate_content(model="gemini-2.5-flash", contents="Hi", config=config, ledger_user="u7")  # type: ignore[call-arg]
    c.models.generate_content(
        model="gemini-2.5-flash", contents="Hi", config={"temperature": 0.2}, ledger_user="u8"
    )  # type: ignore[call-arg]
    assert [e.user for e in recorded] == ["u7", "u8"]
    assert fake.seen[0].headers["x-app"] == "1"
    assert config.http_options is not None and config.http_options.headers == {"x-app": "1"}  # not mutated


def test_stream_takes_the_last_running_total(fake: Fake, recorded: list[UsageEvent]) -> None:
    chunks = list(client(fake).models.generate_content_stream(model="gemini-2.5-flash", contents="Hello?"))
    assert "".join(ch.text or "" for ch in chunks) == "Hello there, how can I help?"
    [e] = recorded
    assert_usage(e)
    assert e.stream and e.complete and e.time_to_first_token_ms is not None


def test_stream_async(fake: Fake, recorded: list[UsageEvent]) -> None:
    async def go() -> int:
        stream = await client(fake).aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Hi"
        )
        return len([ch async for ch in stream])

    assert asyncio.run(go()) == len(bodies.TEXT)
    [e] = recorded
    assert_usage(e)
    assert e.stream


def test_stream_closed_early(fake: Fake, recorded: list[UsageEvent]) -> None:
    stream = client(fake).models.generate_content_stream(model="gemini-2.5-flash", contents="Hello?")
    for i, _ in enumerate(stream):
        if i == 2:
            break
    del stream
    gc.collect()
    [e] = recorded
    # the running totals so far: exact input, output so far; marked estimated because it was cut
    assert not e.complete and e.estimated and e.input_tokens == 1500 and e.output_tokens == 330


def test_vertex_provider(fake: Fake, recorded: list[UsageEvent]) -> None:
    client(fake, vertex=True).models.generate_content(model="gemini-2.5-flash", contents="Hello?")
    assert "/publishers/google/models/gemini-2.5-flash:generateContent" in fake.seen[0].path
    assert_usage(recorded[0], provider="google-vertex")


def test_embeddings_are_estimated(fake: Fake, recorded: list[UsageEvent]) -> None:
    client(fake).models.embed_content(model="gemini-embedding-001", contents=["hello world", "ledger"])
    [e] = recorded
    assert (e.endpoint, e.model, e.estimated) == ("embed_content", "gemini-embedding-001", True)
    assert e.input_tokens == 5  # "hello world" + "ledger": 17 characters
    assert e.cost_usd == Decimal("0.15") * 5 / 10**6


def test_provider_error(fake: Fake, recorded: list[UsageEvent]) -> None:
    fake.fail = (429, bodies.gemini_error(429))
    with pytest.raises(errors.ClientError) as info:
        client(fake).models.generate_content(model="gemini-2.5-flash", contents="Hello?")
    assert info.value.code == 429
    [e] = recorded
    assert (e.status, e.error_type, e.cost_usd) == ("error", "ClientError", Decimal(0))


def test_stream_error_before_first_chunk(fake: Fake, recorded: list[UsageEvent]) -> None:
    fake.fail = (400, bodies.gemini_error(400))
    with pytest.raises(errors.ClientError):
        list(client(fake).models.generate_content_stream(model="gemini-2.5-flash", contents="Hello?"))
    [e] = recorded
    assert (e.status, e.cost_usd, e.input_tokens) == ("error", Decimal(0), 0)
