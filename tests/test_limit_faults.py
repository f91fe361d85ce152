"""Issue 8 part 3: a ledger fault never turns limits off silently, never blocks callers for long, and
nothing of llmledger's (its attribution header, `ledger_*` keywords) reaches the provider — on every
path: refused, ledger locked, disk full, an internal fault in the hook, a bad label, a bad setting.

Each case runs the real openai / anthropic / google-genai clients (sync and async, stream and not)
against the fake provider, and asserts what the provider RECEIVED.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types
from tests.fakes.server import Fake

import llmledger
from llmledger.engine.limits import Enforcer
from llmledger.errors import LimitUndecided
from llmledger.storage.limits import LimitStore

MSGS = [{"role": "user", "content": "Summarise the ledger."}]


def _openai(fake: Fake, aio: bool, stream: bool) -> Any:
    kw: dict[str, Any] = {"model": "gpt-4o", "messages": MSGS, "max_tokens": 100, "ledger_tenant": "acme"}
    if aio:
        client = openai.AsyncOpenAI(api_key="k", http_client=fake.async_client(), max_retries=0)

        async def run() -> Any:
            out = await client.chat.completions.create(stream=stream, **kw)
            return [c async for c in out] if stream else out

        return asyncio.run(run())
    sync = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    out = sync.chat.completions.create(stream=stream, **kw)
    return list(out) if stream else out


def _anthropic(fake: Fake, aio: bool, stream: bool) -> Any:
    kw: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": MSGS}
    kw["ledger_tenant"] = "acme"
    if aio:
        client = anthropic.AsyncAnthropic(api_key="a", http_client=fake.async_client(), max_retries=0)

        async def run() -> Any:
            out = await client.messages.create(stream=stream, **kw)
            return [c async for c in out] if stream else out

        return asyncio.run(run())
    sync = anthropic.Anthropic(api_key="a", http_client=fake.client(), max_retries=0)
    out = sync.messages.create(stream=stream, **kw)
    return list(out) if stream else out


def _google(fake: Fake, aio: bool, stream: bool) -> Any:
    options = types.HttpOptions(httpx_client=fake.client(), httpx_async_client=fake.async_client())
    client = genai.Client(api_key="g", http_options=options)
    kw: dict[str, Any] = {"model": "gemini-2.5-flash", "contents": "Hello?", "ledger_tenant": "acme"}
    kw["config"] = {"max_output_tokens": 100}
    if aio:

        async def run() -> Any:
            if stream:
                out = await client.aio.models.generate_content_stream(**kw)
                return [c async for c in out]
            return await client.aio.models.generate_content(**kw)

        return asyncio.run(run())
    if stream:
        return list(client.models.generate_content_stream(**kw))
    return client.models.generate_content(**kw)


CALLS: dict[str, Callable[[Fake, bool, bool], Any]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "google": _google,
}
SHAPES = [(p, aio, stream) for p in CALLS for aio in (False, True) for stream in (False, True)]
IDS = [f"{p}-{'async' if aio else 'sync'}-{'stream' if stream else 'plain'}" for p, aio, stream in SHAPES]


def assert_clean(fake: Fake) -> None:
    """Nothing of llmledger's in what the provider received."""
    for seen in fake.seen:
        assert not [h for h in seen.headers if "llmledger" in h.lower()], seen.headers
        text = repr(seen.body)
        assert "ledger_" not in text and "llmledger" not in text, text[:300]


@pytest.fixture
def limited(ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMLEDGER_SWALLOW_INTERNAL_ERRORS", "1")  # production behaviour
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01, limit_timeout=0.05)
    llmledger.set_limit(usd=100, per="day", tenant="acme")
    return ledger_path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another process's long write transaction holds the ledger's write lock."""
    other = sqlite3.connect(path, isolation_level=None, timeout=5)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.mark.parametrize(("provider", "aio", "stream"), SHAPES, ids=IDS)
def test_refused_calls_send_nothing(
    ledger_path: Path, fake: Fake, provider: str, aio: bool, stream: bool
) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd="0.000001", per="day", tenant="acme")
    with pytest.raises(llmledger.LimitExceeded):
        CALLS[provider](fake, aio, stream)
    assert fake.seen == []


@pytest.mark.parametrize(("provider", "aio", "stream"), SHAPES, ids=IDS)
def test_ledger_locked_open_sends_clean_counts_and_meters(
    limited: Path, fake: Fake, provider: str, aio: bool, stream: bool
) -> None:
    with locked(limited):
        t0 = time.monotonic()
        CALLS[provider](fake, aio, stream)
        waited = time.monotonic() - t0
    assert waited < 2.0  # bounded by limit_timeout (0.05 s), never SQLite's 30 s
    assert len(fake.seen) == 1
    assert_clean(fake)
    stats = llmledger.stats()
    assert stats.calls_unchecked == 1 and "LedgerBusy" in (stats.last_limit_fault or "")
    assert llmledger.flush(10)
    assert len(llmledger.events(tenant="acme")) == 1  # metered all the same


@pytest.mark.parametrize(("provider", "aio", "stream"), SHAPES, ids=IDS)
def test_ledger_locked_closed_refuses_with_a_typed_error(
    ledger_path: Path, fake: Fake, provider: str, aio: bool, stream: bool
) -> None:
    llmledger.init(ledger=str(ledger_path), limit_timeout=0.05, on_ledger_fault="closed")
    llmledger.set_limit(usd=100, per="day", tenant="acme")
    with locked(ledger_path), pytest.raises(LimitUndecided) as info:
        CALLS[provider](fake, aio, stream)
    assert isinstance(info.value, llmledger.LlmLedgerError) and "LedgerBusy" in info.value.reason
    assert fake.seen == []
    assert llmledger.stats().calls_unchecked == 1


def _disk_full(*args: Any, **kwargs: Any) -> Any:
    raise sqlite3.OperationalError("database or disk is full")


def _bug(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


FAULTS: dict[str, tuple[Any, str, Callable[..., Any]]] = {
    "disk-full-at-reserve": (LimitStore, "reserve", _disk_full),
    "bug-in-worst-case": (Enforcer, "worst_case", _bug),
    "bug-reading-limits": (Enforcer, "limits", _bug),
    "bug-in-scope": ("llmledger.instrumentation.call.scope_of_call", "", _bug),
    "bug-decoding-labels": ("llmledger.instrumentation.stainless.decode_attribution", "", _bug),
    "bug-decoding-labels-google": ("llmledger.instrumentation.genai.decode_attribution", "", _bug),
    "bug-in-call": ("llmledger.instrumentation.stainless.Call", "", _bug),
    "bug-in-google-call": ("llmledger.instrumentation.genai.Call", "", _bug),
    "bug-settling": (Enforcer, "settle", _bug),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize(("provider", "aio", "stream"), SHAPES, ids=IDS)
def test_faults_at_each_step_never_leak_labels(
    limited: Path,
    fake: Fake,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    provider: str,
    aio: bool,
    stream: bool,
) -> None:
    target, name, replacement = FAULTS[fault]
    if name:
        monkeypatch.setattr(target, name, replacement)
    else:
        monkeypatch.setattr(target, replacement)
    CALLS[provider](fake, aio, stream)  # the host's call succeeds
    assert len(fake.seen) == 1
    assert_clean(fake)


@pytest.mark.parametrize(("provider", "aio", "stream"), SHAPES, ids=IDS)
def test_bad_label_never_leaks(limited: Path, fake: Fake, provider: str, aio: bool, stream: bool) -> None:
    """A lone surrogate label: refused as bad input before sending, or sent without the header."""
    try:
        with llmledger.attribute(tenant="acme", user="\ud800"):
            CALLS[provider](fake, aio, stream)
    except llmledger.LlmLedgerError:
        assert fake.seen == []
    assert_clean(fake)
    llmledger.shutdown(timeout=0.5)  # (the writer may still be retrying that event: issue 8 part 2)


def test_nan_reservation_ttl_is_refused_at_init(ledger_path: Path) -> None:
    with pytest.raises(llmledger.ConfigError, match="reservation_ttl"):
        llmledger.init(ledger=str(ledger_path), reservation_ttl=float("nan"))
    with pytest.raises(llmledger.ConfigError, match="limit_timeout"):
        llmledger.init(ledger=str(ledger_path), limit_timeout=float("inf"))
    with pytest.raises(llmledger.ConfigError, match="on_ledger_fault"):
        llmledger.init(ledger=str(ledger_path), on_ledger_fault="maybe")


def test_a_long_lock_does_not_block_callers(limited: Path, fake: Fake) -> None:
    """Issue: each call blocked 10-30 s behind a locked ledger. Now: limit_timeout per call."""
    client = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    times = []
    with locked(limited):
        for _ in range(5):
            t0 = time.monotonic()
            client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=10, ledger_tenant="acme")  # type: ignore[arg-type,call-arg]
            times.append(time.monotonic() - t0)
    assert max(times) < 1.0, times
    assert llmledger.stats().calls_unchecked == 5
    assert_clean(fake)


def test_reads_that_cannot_see_their_writes_raise(limited: Path, fake: Fake) -> None:
    """Issue: reads during a lock blocked 30 s, then returned 1 of 6 events with no error."""
    client = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    release = threading.Event()
    holder = sqlite3.connect(limited, isolation_level=None, timeout=5)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for _ in range(6):
            client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=10, ledger_tenant="acme")  # type: ignore[arg-type,call-arg]
        for read in (
            lambda: llmledger.spend(tenant="acme", flush_timeout=0.3),
            lambda: llmledger.usage("tenant", flush_timeout=0.3),
            lambda: llmledger.events(tenant="acme", flush_timeout=0.3),
        ):
            t0 = time.monotonic()
            with pytest.raises(llmledger.StaleReadError):
                read()
            assert time.monotonic() - t0 < 2.0
    finally:
        release.set()
        holder.execute("ROLLBACK")
        holder.close()
    assert len(llmledger.events(tenant="acme")) == 6  # once the lock is gone, every event is there
