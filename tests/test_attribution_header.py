"""A bad `x-llmledger-attribution` header is refused before the call is sent, on every SDK path.

Regression (newcomer15 #20): a header that is not JSON, has the wrong types or is oversized was an
internal error, and the call went out UNMETERED and outside every limit. Now it is an
`InvalidUsageError` naming the header, like `ledger_tenant=5`, and nothing reaches the provider.
A misspelt `ledger_*` keyword is an `InvalidUsageError` listing the valid names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types
from tests.fakes.server import Fake
from tests.test_switch_off import CALLS as BASIC

import llmledger
from llmledger.attribution.labels import LABELS_HEADER

MSGS: Any = [{"role": "user", "content": "hi"}]


def _anthropic_stream(fake: Fake, **kw: Any) -> None:
    c = anthropic.Anthropic(api_key="k", http_client=fake.client(), max_retries=0)
    list(c.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS, stream=True, **kw))


def _anthropic_async(fake: Fake, **kw: Any) -> None:
    async def go() -> None:
        c = anthropic.AsyncAnthropic(api_key="k", http_client=fake.async_client(), max_retries=0)
        await c.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS, **kw)

    asyncio.run(go())


def _openai_async_stream(fake: Fake, **kw: Any) -> None:
    async def go() -> None:
        c = openai.AsyncOpenAI(api_key="k", http_client=fake.async_client(), max_retries=0)
        stream = await c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True, **kw)
        async for _ in stream:
            pass

    asyncio.run(go())


def _google_client(fake: Fake) -> genai.Client:
    options = types.HttpOptions(httpx_client=fake.client(), httpx_async_client=fake.async_client())
    return genai.Client(api_key="g", http_options=options)


def _google_kw(kw: dict[str, Any]) -> dict[str, Any]:
    headers = kw.pop("extra_headers", None)
    if headers is not None:
        kw["config"] = {"http_options": {"headers": headers}}
    return kw


def _google_stream(fake: Fake, **kw: Any) -> None:
    c = _google_client(fake)
    list(c.models.generate_content_stream(model="gemini-2.5-flash", contents="hi", **_google_kw(kw)))


def _google_async(fake: Fake, **kw: Any) -> None:
    async def go() -> None:
        c = _google_client(fake)
        await c.aio.models.generate_content(model="gemini-2.5-flash", contents="hi", **_google_kw(kw))

    asyncio.run(go())


def _google_async_stream(fake: Fake, **kw: Any) -> None:
    async def go() -> None:
        c = _google_client(fake)
        stream = await c.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="hi", **_google_kw(kw)
        )
        async for _ in stream:
            pass

    asyncio.run(go())


CALLS: dict[str, Callable[..., None]] = {
    **BASIC,
    "openai-async-stream": _openai_async_stream,
    "anthropic-stream": _anthropic_stream,
    "anthropic-async": _anthropic_async,
    "google-stream": _google_stream,
    "google-async": _google_async,
    "google-async-stream": _google_async_stream,
}

BAD_HEADERS = {
    "not-json": "{not json",
    "wrong-type": '{"tenant": 5}',
    "oversized-label": '{"tenant": "' + "a" * 100_000 + '"}',
    "oversized-header": '{"tenant": "' + "a" * (1 << 21) + '"}',
    "not-an-object": "[1, 2]",
    "unknown-field": '{"teant": "x"}',
    "tags-not-a-map": '{"tags": "x"}',
    "deeply-nested": "[" * 100_000 + "]" * 100_000,
    "control-char": '{"tenant": "a\\u0000b"}',
}


@pytest.mark.parametrize("bad", list(BAD_HEADERS))
@pytest.mark.parametrize("call", list(CALLS))
def test_bad_attribution_header_is_refused_before_sending(recorded: list[Any], call: str, bad: str) -> None:
    fake = Fake()
    faults = llmledger.stats().internal_errors  # a process-wide count
    with pytest.raises(llmledger.InvalidUsageError, match=f"bad {LABELS_HEADER} header.*not sent"):
        CALLS[call](fake, extra_headers={LABELS_HEADER: BAD_HEADERS[bad]})
    assert fake.seen == []
    llmledger.flush()
    assert recorded == []
    assert llmledger.stats().internal_errors == faults


@pytest.mark.parametrize("call", ["openai", "openai-async", "anthropic-stream", "google-async"])
def test_bad_header_does_not_bypass_a_used_up_hard_limit(recorded: list[Any], call: str) -> None:
    llmledger.set_limit(requests=1, per="day", tenant="z")
    fake = Fake()
    with llmledger.attribute(tenant="z"):
        CALLS[call](fake)
        with pytest.raises(llmledger.LimitExceeded):
            CALLS[call](fake)
        for _ in range(3):
            with pytest.raises(llmledger.InvalidUsageError, match="not sent"):
                CALLS[call](fake, extra_headers={LABELS_HEADER: "{bad"})
    assert len(fake.seen) == 1
    llmledger.flush()
    assert len(llmledger.events(tenant="z")) == 1


def test_bad_header_is_refused_with_on_ledger_fault_closed(tmp_path: Any) -> None:
    llmledger.init(ledger=str(tmp_path / "c.db"), on_ledger_fault="closed")
    llmledger.set_limit(requests=0, per="day", tenant="z")
    fake = Fake()
    with pytest.raises(llmledger.InvalidUsageError, match="not sent"):
        CALLS["openai"](fake, extra_headers={LABELS_HEADER: '{"tenant": 5}'})
    assert fake.seen == []


def test_good_header_still_attributes(recorded: list[Any]) -> None:
    fake = Fake()
    CALLS["google-async-stream"](fake, extra_headers=llmledger.labels(tenant="acme", tags={"a": "b"}))
    llmledger.flush()
    [event] = recorded
    assert (event.tenant, event.tags) == ("acme", {"a": "b"})
    assert LABELS_HEADER not in fake.seen[0].headers


@pytest.mark.parametrize(
    "call", ["openai", "openai-async", "anthropic-stream", "google", "google-async-stream"]
)
def test_misspelt_ledger_keyword_names_the_valid_ones(recorded: list[Any], call: str) -> None:
    fake = Fake()
    with pytest.raises(llmledger.InvalidUsageError, match=r"ledger_teant=.*ledger_tenant.*not sent"):
        CALLS[call](fake, ledger_teant="x")
    assert fake.seen == []


def test_misspelt_ledger_keyword_is_refused_when_switched_off_too(tmp_path: Any) -> None:
    llmledger.init(ledger=str(tmp_path / "off.db"), enabled=False)
    with pytest.raises(llmledger.InvalidUsageError, match="ledger_teant="):
        CALLS["openai"](Fake(), ledger_teant="x")
