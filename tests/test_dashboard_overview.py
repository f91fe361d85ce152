"""The overview's figures, answered from a few rollup queries, equal the same figures computed from
every event (`usage(..., use_rollups=False)`), on SQLite and PostgreSQL, for filters the rollups
answer with hours, without hours (cuboid `all`), and not at all (tags)."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmledger.engine import Engine
from llmledger.events import UsageEvent
from llmledger.server.dashboard_data import _periods, overview, whole_hours

NOW = datetime(2026, 3, 2, 13, 25, 7, tzinfo=timezone.utc)  # a month just begun: the previous one ends


def _history(n: int = 1500) -> list[UsageEvent]:
    rng = random.Random(15)
    out = []
    for _ in range(n):
        cost = rng.choice(
            [None, Decimal("0.0015"), Decimal("2.5"), Decimal("1E-7"), Decimal(rng.randrange(10**6)) / 10**6]
        )
        out.append(
            UsageEvent(
                event_id=str(uuid.uuid4()),
                timestamp=NOW - timedelta(seconds=rng.randrange(70 * 86_400)),
                provider="openai",
                model=rng.choice(["gpt-4o-mini", "gpt-4o", "o4-mini"]),
                input_tokens=rng.randrange(1000),
                output_tokens=rng.randrange(100),
                cache_read_tokens=rng.randrange(50),
                cost_usd=cost,
                status=rng.choice(["ok", "ok", "error"]),
                estimated=rng.random() < 0.1,
                tenant=rng.choice(["acme", "globex", None]),
                user=rng.choice(["u1", "u2", "u3", None]),
                feature=rng.choice(["chat", "search", None]),
                tags={"plan": rng.choice(["free", "pro"])},
            )
        )
    return out


def _money(value: Decimal) -> str:
    return f"{value:f}"


def _expected(
    engine: Engine, filters: dict[str, Any], since: datetime, until: datetime, stack: str, bucket: str
) -> dict[str, Any]:
    def scan(keys: tuple[str, ...], a: datetime, b: datetime) -> list[Any]:
        return engine.ledger.usage(keys, filters, a, b, use_rollups=False)

    def cost(a: datetime, b: datetime) -> Decimal:
        rows = scan((), a, b)
        return rows[0].cost_usd if rows else Decimal(0)

    kpis = {name: (cost(*now), cost(*before)) for name, (now, before) in _periods(NOW).items()}
    (total,) = scan((), since, until) or [None]
    tops = {
        key: [(r.group[key], r.requests, r.cost_usd) for r in scan((key,), since, until)[:10]]
        for key in ("tenant", "user", "feature", "model")
    }
    series: dict[tuple[str, str], Decimal] = {}
    for r in scan((bucket, stack), since, until):
        k = (str(r.group[bucket]), "(none)" if r.group[stack] is None else str(r.group[stack]))
        series[k] = series.get(k, Decimal(0)) + r.cost_usd
    return {"kpis": kpis, "total": total, "tops": tops, "series": series}


def _check(engine: Engine) -> None:
    engine.ledger.write(_history())
    cases = [
        ({}, "30d", "model", None),
        ({"tenant": "acme"}, "3d", "user", None),  # hourly series, cuboid `tm`/`u`
        ({"tenant": "acme", "feature": "chat"}, "60d", "model", None),  # cuboid `all`: no hours
        ({"model": "gpt-4o-mini"}, "30d", "tenant", "month"),
        ({"tags": {"plan": "pro"}}, "30d", "feature", None),  # not rolled up: the events
    ]
    for filters, span, stack, bucket in cases:
        days = int(span[:-1])
        since, until = whole_hours(NOW - timedelta(days=days), NOW)
        got = overview(engine, filters, NOW - timedelta(days=days), NOW, stack=stack, bucket=bucket, now=NOW)
        want = _expected(engine, filters, since, until, stack, got["series"]["bucket"])
        for name, (spend, before) in want["kpis"].items():
            assert Decimal(got["kpis"][name]["spend_usd"]) == spend, (filters, name)
            assert Decimal(got["kpis"][name]["previous_usd"]) == before, (filters, name)
        total = want["total"]
        assert got["totals"]["requests"] == (total.requests if total else 0)
        assert Decimal(got["totals"]["cost_usd"]) == (total.cost_usd if total else 0)
        assert got["totals"]["errors"] == (total.errors if total else 0)
        assert got["totals"]["input_tokens"] == (total.input_tokens if total else 0)
        for key, rows in want["tops"].items():
            mine = [(r[key], r["requests"], Decimal(r["cost_usd"])) for r in got["top"][key]]
            assert mine == rows, (filters, key)
        drawn = got["series"]
        shown = {
            (label, s["name"]): Decimal(v)
            for s in drawn["stacks"]
            for label, v in zip(drawn["labels"], s["cost_usd"], strict=True)
            if Decimal(v) or (label, s["name"]) in want["series"]
        }
        if "(other)" not in {s["name"] for s in drawn["stacks"]}:
            assert {k: v for k, v in shown.items() if v or want["series"].get(k)} == {
                k: v for k, v in want["series"].items() if v or shown.get(k)
            }, filters
        assert sum(shown.values(), Decimal(0)) == sum(want["series"].values(), Decimal(0))


def test_overview_equals_the_event_scan_sqlite(tmp_path: Path) -> None:
    engine = Engine(str(tmp_path / "l.db"))
    try:
        _check(engine)
    finally:
        engine.ledger.close()


@pytest.mark.postgres
def test_overview_equals_the_event_scan_postgres(pg_url: str) -> None:
    engine = Engine(pg_url)
    try:
        _check(engine)
    finally:
        engine.ledger.close()
