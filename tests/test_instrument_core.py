"""install / uninstall, idempotence, switches, per-call attribution and fault isolation."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys
import threading
from pathlib import Path

import anthropic
import openai
import pytest
from google.genai import _api_client
from tests.fakes.recorded import Recorded
from tests.fakes.server import Fake

import llmledger
from llmledger import instrumentation
from llmledger.instrumentation.patching import MARK

MSGS = [{"role": "user", "content": "hi"}]


def current() -> dict[str, tuple[object, ...]]:
    return {
        "openai": (openai._base_client.SyncAPIClient.request, openai._base_client.AsyncAPIClient.request),
        "anthropic": (
            anthropic._base_client.SyncAPIClient.request,
            anthropic._base_client.AsyncAPIClient.request,
        ),
        "google": (_api_client.BaseApiClient.request, _api_client.BaseApiClient.request_streamed),
        # the billable methods keep a labels patch once llmledger has been set up (switched off, it
        # drops `ledger_*` keywords): what lies beneath it must be the original
        "create": (_beneath_labels(openai.resources.chat.completions.Completions.create),),
    }


def _beneath_labels(method: object) -> object:
    from llmledger.instrumentation import _labels

    if "openai" in _labels and getattr(method, MARK, False):
        return getattr(method, "__wrapped__", method)
    return method


ORIGINALS = current()


def chat(fake: Fake, **kw: object) -> None:
    c = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, **kw)  # type: ignore[arg-type,call-overload]


def test_uninstrument_restores_every_original_exactly(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path))
    assert instrumentation.instrumented() == ["anthropic", "google", "openai"]
    assert all(getattr(f, MARK, False) for k, fs in current().items() if k != "create" for f in fs)
    assert getattr(openai.resources.chat.completions.Completions.create, MARK, False)
    llmledger.uninstrument()
    assert current() == ORIGINALS
    assert instrumentation.instrumented() == []


def test_double_init_does_not_double_wrap(ledger_path: Path) -> None:
    events = Recorded()
    llmledger.init(ledger=str(ledger_path), on_event=events.append)
    first = current()
    llmledger.init(ledger=str(ledger_path), on_event=events.append)
    llmledger.init(ledger=str(ledger_path), on_event=events.append, debug=True)
    assert current() == first
    chat(Fake())
    assert len(events) == 1
    llmledger.uninstrument()
    assert current() == ORIGINALS


def test_concurrent_init_is_safe(ledger_path: Path) -> None:
    events = Recorded()
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait()
        llmledger.init(ledger=str(ledger_path), on_event=events.append)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chat(Fake())
    assert len(events) == 1
    assert openai._base_client.SyncAPIClient.request.__wrapped__ is ORIGINALS["openai"][0]  # type: ignore[attr-defined]


def test_client_created_before_init_is_covered(ledger_path: Path) -> None:
    fake = Fake()
    early = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    events = Recorded()
    llmledger.init(ledger=str(ledger_path), on_event=events.append)
    early.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert len(events) == 1


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_disabled_records_nothing_and_patches_nothing(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    events = Recorded()
    if how == "environment":
        monkeypatch.setenv("LLMLEDGER_DISABLED", "1")
        llmledger.init(ledger=str(ledger_path), on_event=events.append)
    else:
        llmledger.init(ledger=str(ledger_path), on_event=events.append)
        llmledger.init(ledger=str(ledger_path), on_event=events.append, enabled=False)
    assert current() == ORIGINALS
    chat(Fake())
    assert events == []


def test_providers_limits_the_instrumentation(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), providers=["anthropic"])
    assert instrumentation.instrumented() == ["anthropic"]
    assert current()["openai"] == ORIGINALS["openai"]
    llmledger.init(ledger=str(ledger_path), providers=["openai"])
    assert instrumentation.instrumented() == ["openai"]
    assert current()["anthropic"] == ORIGINALS["anthropic"]
    with pytest.raises(llmledger.ConfigError, match="unknown provider"):
        llmledger.init(ledger=str(ledger_path), providers=["cohere"])
    with pytest.raises(llmledger.ConfigError, match="list of names"):
        llmledger.init(ledger=str(ledger_path), providers="openai")


def test_per_call_attribution_wins_and_never_reaches_the_provider(ledger_path: Path) -> None:
    events = Recorded()
    llmledger.init(ledger=str(ledger_path), on_event=events.append, tenant="default-co", org="o1")
    fake = Fake()
    with llmledger.attribute(tenant="ctx-tenant", feature="ctx-feature", tags={"plan": "pro", "team": "a"}):
        chat(fake, ledger_tenant="call-tenant", ledger_tags={"team": "b"}, extra_headers={"x-app": "1"})
    [e] = events
    assert (e.tenant, e.feature, e.org) == ("call-tenant", "ctx-feature", "o1")
    assert e.tags == {"plan": "pro", "team": "b"}
    assert "x-llmledger-attribution" not in fake.seen[0].headers and fake.seen[0].headers["x-app"] == "1"
    assert "ledger_tenant" not in fake.seen[0].body


def test_bad_ledger_kwargs_fail_before_the_call(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path))
    fake = Fake()
    with pytest.raises(llmledger.InvalidUsageError, match="tenant"):
        chat(fake, ledger_tenant="")
    with pytest.raises(llmledger.InvalidUsageError, match="tag 'plan'"):
        chat(fake, ledger_tags={"plan": 3})
    assert fake.seen == []


def test_metering_fault_never_reaches_the_host_app(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmledger.instrumentation.providers import openai as oai_provider

    monkeypatch.setenv("LLMLEDGER_SWALLOW_INTERNAL_ERRORS", "1")  # production behaviour: log and count

    def broken(endpoint: str, response: object) -> None:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(oai_provider, "SPEC", dataclasses.replace(oai_provider.SPEC, read=broken))
    events = Recorded()
    llmledger.init(ledger=str(ledger_path), on_event=events.append)
    before = llmledger.stats().internal_errors
    fake = Fake()
    c = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    reply = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert reply.id == "chatcmpl-AbC123"  # the app got its answer
    chunks = list(c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))  # type: ignore[arg-type]
    assert len(chunks) == 10
    assert llmledger.stats().internal_errors == before + 1


def test_metering_fault_fails_our_tests(ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmledger.instrumentation.providers import openai as oai_provider

    def broken(endpoint: str, response: object) -> None:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(oai_provider, "SPEC", dataclasses.replace(oai_provider.SPEC, read=broken))
    llmledger.init(ledger=str(ledger_path))
    with pytest.raises(RuntimeError, match="reader bug"):  # under pytest internal errors re-raise
        chat(Fake())


def test_debug_line(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    llmledger.init(ledger=str(ledger_path), debug=True)
    with llmledger.attribute(tenant="acme"):
        chat(Fake())
    llmledger.flush()  # events are built, and printed, on the writer thread
    err = capsys.readouterr().err
    assert err.strip() == "[llmledger] openai gpt-4o-mini-2024-07-18 tenant=acme 1200→300 tok $0.000283"


def test_sdk_imported_after_init_is_patched_then(tmp_path: Path) -> None:
    code = f"""
import sys, llmledger
llmledger.init(ledger={str(tmp_path / "l.db")!r})
assert "openai" not in sys.modules and "anthropic" not in sys.modules, "init() imported an SDK"
import openai
from llmledger.instrumentation import instrumented
assert instrumented() == ["openai"], instrumented()
assert getattr(openai._base_client.SyncAPIClient.request, "__llmledger_patch__", False)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_stream_in_flight_across_reinit_and_shutdown(ledger_path: Path, tmp_path: Path) -> None:
    from llmledger.sdk import runtime as rt

    first, second = Recorded(), Recorded()
    llmledger.init(ledger=str(ledger_path), on_event=first.append)
    c = openai.OpenAI(api_key="k", http_client=Fake().client(), max_retries=0)
    stream = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
    next(iter(stream))
    llmledger.init(ledger=str(tmp_path / "other.db"), on_event=second.append)  # new settings mid-stream
    list(stream)
    assert (len(first), len(second)) == (0, 1)  # recorded by the runtime in force when it ended

    late = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)  # type: ignore[arg-type]
    next(iter(late))
    llmledger.shutdown()
    del late
    gc.collect()
    assert rt._runtime is None  # a stream ending after shutdown records nothing and revives nothing


def test_a_finished_call_drops_the_prompt_before_it_waits_in_the_queue(ledger_path: Path) -> None:
    from llmledger.attribution.context import EMPTY
    from llmledger.instrumentation.call import Call
    from llmledger.instrumentation.usage import Usage

    llmledger.init(ledger=str(ledger_path))
    call = Call(
        "openai", "chat.completions", "gpt-4o-mini", EMPTY, {"messages": [{"content": "secret" * 1000}]}
    )
    call.ok(Usage({"input_tokens": 10, "output_tokens": 2}))
    assert call.request is None  # a down ledger must not hold every queued prompt in memory
    llmledger.flush()
    assert llmledger.events()[0].input_tokens == 10
