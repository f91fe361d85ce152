"""Rollups: what they cost each write, and what they save each report.

Writes N events (20 tenants, 200 users, 5 features, 6 models over 60 days; batches of 5,000, the
writer's size) through `Ledger.write` into a fresh SQLite file and reports events/s; then times
`usage(group_by=("tenant", "model"))` and a few dashboard-like reports from the events and from the
rollups (median and spread of 5 runs each).

    python bench/bench_rollups.py [N]          # default 1,000,000
    PYTHONPATH=/work/main/src python bench/bench_rollups.py 200000 --write-only   # a tree without rollups
    python bench/bench_rollups.py 200000 --write-only --days=1    # denser: 200k events in one day
    python bench/bench_rollups.py 20000 --write-only --floor      # the same writes, rollups skipped
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.storage import Ledger

MODELS = [
    ("openai", "gpt-4o-mini-2024-07-18", Decimal("0.00000015")),
    ("openai", "gpt-4o-2024-08-06", Decimal("0.0000025")),
    ("openai", "o4-mini", Decimal("0.0000011")),
    ("anthropic", "claude-sonnet-4-5", Decimal("0.000003")),
    ("anthropic", "claude-haiku-4-5", Decimal("0.000001")),
    ("google", "gemini-2.5-flash", Decimal("0.0000003")),
]
FEATURES = ["chat", "search", "summarize", "classify", "agent"]
END = datetime(2026, 12, 1, tzinfo=timezone.utc)
DAYS = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--days=")), 60)


def make_events(n: int, rng: random.Random, first: int = 0, total: int = 0) -> list[UsageEvent]:
    """Events `first`..`first + n` of `total`, in time order over the DAYS before END (as written)."""
    out = []
    span_s = DAYS * 86400
    total = total or n
    for i in range(first, first + n):
        provider, model, price = rng.choice(MODELS)
        user = rng.randrange(200)
        tokens = rng.randrange(50, 4000)
        unpriced = rng.random() < 0.01
        out.append(
            UsageEvent(
                event_id=uuid7(),
                timestamp=END - timedelta(seconds=span_s * (1 - (i + rng.random()) / total)),
                provider=provider,
                model=model,
                input_tokens=tokens,
                output_tokens=tokens // 8,
                cache_read_tokens=tokens // 3,
                cost_usd=None if unpriced else price * tokens,
                status="error" if rng.random() < 0.02 else "ok",
                tenant=f"tenant-{user % 20:02d}",
                user=f"user-{user:03d}",
                feature=rng.choice(FEATURES),
            )
        )
    return out


def timed(fn: Any, runs: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times) - min(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000
    write_only = "--write-only" in sys.argv
    if "--floor" in sys.argv:  # the floor: the same transaction without its rollups
        from llmledger.storage import ledger as _ledger

        _ledger._rollups_sql.add_since = lambda *_: True  # type: ignore[attr-defined]
        _ledger._rollups.add_events = lambda *_, **__: None  # type: ignore[attr-defined]
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        store = Ledger(str(Path(tmp) / "bench.db"))
        write_s = cpu_s = 0.0
        done = 0
        while done < n:
            batch = make_events(min(5_000, n - done), rng, done, n)
            start, cpu = time.perf_counter(), time.process_time()
            store.write(batch)
            write_s += time.perf_counter() - start
            cpu_s += time.process_time() - cpu
            done += len(batch)
        print(
            f"Ledger.write: {n:,} events in {write_s:.1f} s = {n / write_s:,.0f} events/s "
            f"(batches of 5,000); CPU {cpu_s / n * 1e6:.1f} us/event"
        )
        if write_only:
            return
        month = END.replace(day=1)
        cases: list[tuple[str, tuple[str, ...], dict[str, Any], datetime | None]] = [
            ("usage(tenant, model), all time", ("tenant", "model"), {}, None),
            ("usage(model, day), last 30 days", ("model", "day"), {}, END - timedelta(days=30)),
            ("usage(user), one tenant, month", ("user",), {"tenant": "tenant-03"}, month),
            ("usage(feature), last 7 days + 5 min", ("feature",), {}, END - timedelta(days=7, minutes=5)),
        ]
        for title, keys, filters, since in cases:
            exact = store.usage(keys, filters, since, use_rollups=False)
            fast = store.usage(keys, filters, since)
            assert exact == fast, title
            e_med, e_spread = timed(
                lambda k=keys, f=filters, s=since: store.usage(k, f, s, use_rollups=False)
            )
            r_med, r_spread = timed(lambda k=keys, f=filters, s=since: store.usage(k, f, s))
            print(
                f"{title:40s} events {e_med * 1000:8.1f} ms (±{e_spread * 500:.1f})   "
                f"rollups {r_med * 1000:6.1f} ms (±{r_spread * 500:.1f})   x{e_med / r_med:,.0f}"
            )
        start = time.perf_counter()
        rows = store.rebuild_rollups()
        print(f"rollups rebuild: {rows:,} rows in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        assert store.check_rollups() == []
        print(f"rollups check (reconcile): {time.perf_counter() - start:.1f} s")
        store.close()


if __name__ == "__main__":
    main()
