"""The background writer's sustained rate into SQLite (target: >= 50,000 events/s on 2 cores).

Submits N events as fast as one producer thread can, then waits for the writer to commit them all,
and reports events/s end to end (submit + write) and for the writer alone (write time only).
A real SQLite ledger file, WAL mode, the schema's indexes, batches of 5,000.

    python bench/bench_writer.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.storage import Ledger
from llmledger.transport import BackgroundWriter


def make_events(n: int) -> list[UsageEvent]:
    now = datetime.now(timezone.utc)
    tags = {"plan": "pro"}
    return [
        UsageEvent(
            event_id=uuid7(),
            timestamp=now,
            provider="openai",
            model="gpt-4o-mini-2024-07-18",
            endpoint="chat.completions",
            input_tokens=1200,
            cache_read_tokens=1024,
            output_tokens=80,
            cost_usd=Decimal("0.0001356"),
            cost_source="catalog",
            duration_ms=412.5,
            tenant=f"tenant-{i % 50}",
            user=f"user-{i % 1000}",
            feature="chat",
            tags=tags,
        )
        for i in range(n)
    ]


def run(n: int) -> tuple[float, float]:
    ledger = Ledger(str(Path(tempfile.mkdtemp(prefix="llmledger-bench-")) / "writer.db"))
    write_time = 0.0

    def sink(batch: list[UsageEvent]) -> None:
        nonlocal write_time
        t = time.perf_counter()
        ledger.write(batch)
        write_time += time.perf_counter() - t

    writer: BackgroundWriter[UsageEvent] = BackgroundWriter(sink, max_buffer=n + 1, flush_interval=0.05)  # type: ignore[arg-type]
    events = make_events(n)
    t0 = time.perf_counter()
    for e in events:
        writer.submit(e)
    assert writer.flush(timeout=300)
    total = time.perf_counter() - t0
    writer.close()
    assert ledger.count() == n
    ledger.close()
    return n / total, n / write_time


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    runs = [run(n) for _ in range(3)]
    end_to_end = [r[0] for r in runs]
    writer_only = [r[1] for r in runs]
    print(f"events per run: {n:,}; 3 runs; SQLite WAL, batches of 5,000")
    print(
        f"end to end (submit + write): median {statistics.median(end_to_end):,.0f} events/s "
        f"(min {min(end_to_end):,.0f}, max {max(end_to_end):,.0f})"
    )
    print(
        f"writer alone (commit time):  median {statistics.median(writer_only):,.0f} events/s "
        f"(min {min(writer_only):,.0f}, max {max(writer_only):,.0f})"
    )
