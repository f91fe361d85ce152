"""Issue 8 part 5: alerts that mean what they say.

Before: thresholds were checked against reservations (all four fired with $0 spent), a hard limit's
refusals never raised the 100 % alert, and a rolling window's alert was keyed per 1-second slot.
"""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import time_machine

import llmledger
from llmledger.limit.model import Alert


def _spend(amount: str, tenant: str = "acme") -> None:
    llmledger.track(
        provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1, cost_usd=amount, tenant=tenant
    )


@pytest.fixture
def alerts(ledger_path: Path) -> list[Alert]:
    got: list[Alert] = []
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01, on_threshold=got.append)
    return got


def test_thresholds_fire_on_committed_spend_not_reservations(alerts: list[Alert]) -> None:
    llmledger.set_limit(usd=1, per="day", tenant="acme", mode="soft", thresholds=(0.25, 0.5, 0.8, 1.0))
    # a huge worst case held, nothing spent: no alert (before: 25/50/80/100 % all fired at $0)
    with llmledger.guard(model="gpt-4o", max_output_tokens=200_000, tenant="acme"):
        pass
    assert alerts == []
    _spend("0.2")
    assert llmledger.flush()
    assert alerts == []
    _spend("0.35")  # committed 0.55: crosses 25 % and 50 %
    assert llmledger.flush()
    assert [(a.threshold, a.spent, a.allowed, a.kind) for a in alerts] == [
        (Decimal("0.25"), Decimal("0.55"), Decimal(1), "threshold"),
        (Decimal("0.5"), Decimal("0.55"), Decimal(1), "threshold"),
    ]
    _spend("0.1")
    assert llmledger.flush()
    assert len(alerts) == 2  # once per threshold
    _spend("0.5")  # a commit far above what anyone reserved: 80 % and 100 %
    assert llmledger.flush()
    assert [a.threshold for a in alerts[2:]] == [Decimal("0.8"), Decimal(1)]
    assert alerts[-1].spent == Decimal("1.15")


def test_a_commit_above_its_reservation_fires(alerts: list[Alert]) -> None:
    llmledger.set_limit(usd=1, per="day", tenant="acme", thresholds=(0.5,))
    with llmledger.guard(model="gpt-4o", max_output_tokens=10, input_tokens=10, tenant="acme"):
        _spend("0.7")  # settles a tiny reservation with a large actual cost
    assert llmledger.flush()
    assert [(a.threshold, a.spent) for a in alerts] == [(Decimal("0.5"), Decimal("0.7"))]


def test_a_hard_limits_refusal_is_an_alert_once_per_window(alerts: list[Alert]) -> None:
    limit = llmledger.set_limit(usd="0.01", per="day", tenant="acme", thresholds=(0.5, 1.0))
    for _ in range(5):
        with pytest.raises(llmledger.LimitExceeded):
            llmledger.guard(model="gpt-4o", max_output_tokens=10_000, tenant="acme").__enter__()
    refused = [a for a in alerts if a.kind == "refused"]
    assert len(refused) == 1
    assert (refused[0].limit.id, refused[0].threshold, refused[0].allowed) == (
        limit.id,
        Decimal(1),
        Decimal("0.01"),
    )
    _spend("0.02")  # committed spend crosses 50 % and 100 %: 100 % was already raised by the refusal
    assert llmledger.flush()
    assert [a.threshold for a in alerts if a.kind == "threshold"] == [Decimal("0.5")]


def test_rolling_window_alerts_once_per_window_not_per_slot(alerts: list[Alert]) -> None:
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False):
        llmledger.set_limit(usd=1, per="rolling:1h", tenant="acme", mode="soft", thresholds=(0.5,))
        _spend("0.6")
        assert llmledger.flush()
    for minutes in (2, 5, 9):  # new slots (1 min each), same window: no new alert
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            _spend("0.01")
            assert llmledger.flush()
    assert len(alerts) == 1


def _worker(ledger: str, out: str, n: int) -> None:
    got: list[dict[str, Any]] = []

    def keep(alert: Alert) -> None:
        got.append({"threshold": str(alert.threshold), "kind": alert.kind, "spent": str(alert.spent)})

    llmledger.init(ledger=ledger, flush_interval=0.005, on_threshold=keep, instrument=False)
    for _ in range(n):
        _spend("0.01")
        llmledger.flush()
    llmledger.shutdown()
    Path(out).write_text(json.dumps(got))


@pytest.mark.slow
def test_exactly_once_across_processes(ledger_path: Path, tmp_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path))
    llmledger.set_limit(usd=1, per="day", tenant="acme", mode="soft", thresholds=(0.25, 0.5, 0.8, 1.0))
    llmledger.shutdown()
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"alerts-{i}.json" for i in range(4)]
    procs = [ctx.Process(target=_worker, args=(str(ledger_path), str(out), 30)) for out in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    fired = [a for out in outs for a in json.loads(out.read_text())]
    levels = sorted(Decimal(a["threshold"]) for a in fired)  # 4 x 30 x $0.01 = $1.20 committed
    assert levels == [Decimal("0.25"), Decimal("0.5"), Decimal("0.8"), Decimal(1)]
    for a in fired:  # each carries the committed spend at the commit that crossed it
        assert Decimal(a["spent"]) >= Decimal(a["threshold"])
