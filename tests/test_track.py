"""Manual tracking: track(), track_usage(), bad input, hooks, disabling."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

import llmledger
from llmledger import InvalidUsageError


def test_track_works_without_init(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMLEDGER_DB", str(tmp_path / "implicit.db"))
    event = llmledger.track(
        provider="openai", model="gpt-4o-mini", input_tokens=100, output_tokens=10, tenant="a"
    )
    assert event.cost_usd is not None and event.cost_usd > 0
    assert llmledger.events(tenant="a") == [event]
    assert (tmp_path / "implicit.db").exists()


def test_recorded_event_equals_the_returned_one(ledger: object) -> None:
    event = llmledger.track(
        provider="anthropic",
        model="claude-sonnet-4-5-20250929",
        requested_model="claude-sonnet-4-5",
        endpoint="messages",
        input_tokens=5000,
        cache_read_tokens=3000,
        output_tokens=200,
        reasoning_tokens=50,
        units={"web_searches": 2},
        duration_ms=1234.5,
        request_id="msg_1",
        tenant="acme",
        user="u1",
        tags={"plan": "pro"},
    )
    assert event.cost_usd == (
        Decimal(2000) * 3 + Decimal(3000) * Decimal("0.3") + 200 * 15
    ) / 1_000_000 + Decimal("0.02")  # + 2 web searches at $10 / 1k
    (stored,) = llmledger.events()
    assert stored == event


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "model must be a non-empty string"),
        ({"model": None}, "model must be a non-empty string"),
        ({"provider": "  "}, "provider must be a non-empty string"),
        ({"input_tokens": -1}, "input_tokens must be >= 0"),
        ({"output_tokens": 1.5}, "output_tokens must be an int"),
        ({"output_tokens": True}, "output_tokens must be an int"),
        ({"input_tokens": 10, "cache_read_tokens": 11}, "exceeds input_tokens"),
        ({"output_tokens": 1, "reasoning_tokens": 2}, "exceeds output_tokens"),
        ({"input_tokns": 1}, "unknown track\\(\\) argument\\(s\\): input_tokns"),
        ({"units": {"furlongs": 1}}, "unknown unit"),
        ({"units": {"web_searches": -1}}, ">= 0"),
        ({"cost_usd": "abc"}, "decimal amount"),
        ({"cost_usd": -1}, ">= 0"),
        ({"status": "maybe"}, "status must be one of"),
        ({"duration_ms": -5}, "duration_ms"),
        ({"timestamp": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"tenant": ""}, "tenant"),
    ],
)
def test_bad_input_raises_a_clear_value_error(
    ledger: object, kwargs: dict[str, object], message: str
) -> None:
    call: dict[str, object] = {"provider": "openai", "model": "gpt-4o", **kwargs}
    with pytest.raises(InvalidUsageError, match=message) as info:
        llmledger.track(**call)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert llmledger.events() == []  # nothing half-recorded


def test_bad_event_next_to_good_ones_loses_nothing(ledger: object) -> None:
    good = []
    for i in range(10):
        if i == 5:
            with pytest.raises(InvalidUsageError):
                llmledger.track(provider="openai", model="gpt-4o", input_tokens=-1)
        good.append(llmledger.track(provider="openai", model="gpt-4o", input_tokens=i))
    assert sorted(e.event_id for e in llmledger.events(limit=None)) == sorted(e.event_id for e in good)


def test_track_usage_measures_and_records(ledger: object) -> None:
    with llmledger.track_usage(provider="openai", model="gpt-4o-mini", tenant="acme", endpoint="chat") as t:
        t.set_usage(input_tokens=100, output_tokens=20)
    assert t.event is not None
    assert t.event.status == "ok" and t.event.tenant == "acme"
    assert t.event.duration_ms is not None and t.event.duration_ms >= 0
    assert t.event.cost_usd is not None


def test_track_usage_records_errors_and_reraises_the_original(ledger: object) -> None:
    class ProviderDown(Exception):
        pass

    original = ProviderDown("503")
    with pytest.raises(ProviderDown) as info, llmledger.track_usage(provider="openai", model="gpt-4o") as t:
        raise original
    assert info.value is original
    assert t.event is not None
    assert (t.event.status, t.event.error_type, t.event.cost_usd) == ("error", "ProviderDown", Decimal(0))
    assert llmledger.events(status="error") == [t.event]


def test_track_usage_async_and_cancellation(ledger: object) -> None:
    async def call() -> None:
        async with llmledger.track_usage(provider="openai", model="gpt-4o") as t:
            t.set_usage(input_tokens=5)
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(call())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (event,) = llmledger.events()
    assert (event.status, event.error_type, event.input_tokens) == ("cancelled", "CancelledError", 5)


def test_track_usage_keeps_the_attribution_of_its_block(ledger: object) -> None:
    with llmledger.attribute(tenant="outer"):
        tracker = llmledger.track_usage(provider="openai", model="gpt-4o")
        with tracker:
            tracker.set_usage(input_tokens=1)
    assert tracker.event is not None and tracker.event.tenant == "outer"


def test_track_usage_bad_input() -> None:
    with pytest.raises(InvalidUsageError, match="unknown track_usage"):
        llmledger.track_usage(provider="openai", model="gpt-4o", tokens=3)
    tracker = llmledger.track_usage(provider="openai", model="gpt-4o")
    with pytest.raises(InvalidUsageError, match="must be >= 0"):
        tracker.set_usage(output_tokens=-3)
    with pytest.raises(InvalidUsageError, match="unknown set_usage"):
        tracker.set_usage(tokens=3)


def test_on_event_hook_and_debug_line(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[llmledger.UsageEvent] = []
    llmledger.init(ledger=str(ledger_path), on_event=seen.append, debug=True)
    event = llmledger.track(
        provider="openai", model="gpt-4o-mini", input_tokens=1234, output_tokens=56, tenant="acme"
    )
    assert seen == [event]
    assert "[llmledger] openai gpt-4o-mini tenant=acme 1234→56 tok $0.000" in capsys.readouterr().err


def test_a_failing_on_event_hook_never_breaks_the_call(ledger_path: Path) -> None:
    def broken(_event: llmledger.UsageEvent) -> None:
        raise RuntimeError("user bug")

    llmledger.init(ledger=str(ledger_path), on_event=broken)
    event = llmledger.track(provider="openai", model="gpt-4o", input_tokens=1)
    assert llmledger.events() == [event]


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_disabled_records_nothing(ledger_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "environment":
        monkeypatch.setenv("LLMLEDGER_DISABLED", "1")
        llmledger.init(ledger=str(ledger_path))
    else:
        llmledger.init(ledger=str(ledger_path), enabled=False)
    event = llmledger.track(provider="openai", model="gpt-4o", input_tokens=1)
    assert event.cost_usd is not None  # still priced for the caller
    assert llmledger.stats().events_recorded == 0
    assert not ledger_path.exists()


def test_init_is_idempotent_and_reconfigures(ledger_path: Path, tmp_path: Path) -> None:
    first = llmledger.init(ledger=str(ledger_path))
    assert llmledger.init(ledger=str(ledger_path)) is first
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=1)
    second = llmledger.init(ledger=str(tmp_path / "other.db"))
    assert second is not first
    assert first.stats().events_recorded == 1  # the old runtime flushed before it closed


def test_timestamps_are_utc(ledger: object) -> None:
    event = llmledger.track(provider="openai", model="gpt-4o", input_tokens=1)
    assert event.timestamp.tzinfo == timezone.utc
