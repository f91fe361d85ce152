"""The background writer: never blocks the caller, survives ledger failures, counts what it drops."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import llmledger
from llmledger.transport import BackgroundWriter


def test_ledger_outage_is_retried_without_losing_events(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.02)
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=1)
    assert llmledger.flush()
    # A real failure of the database: the table disappears under the writer.
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("ALTER TABLE llmledger_events RENAME TO parked")
    started = time.perf_counter()
    for _ in range(50):
        llmledger.track(provider="openai", model="gpt-4o", input_tokens=1)
    assert time.perf_counter() - started < 1.0  # the caller never waits for the ledger
    assert not llmledger.flush(timeout=0.5)
    stats = llmledger.stats()
    assert stats.events_pending == 50  # in flight or queued for retry: counted, not lost
    assert 1 <= stats.write_errors <= 10  # regression: flush() wake-ups used to defeat the backoff
    assert stats.last_write_error and "no such table" in stats.last_write_error
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("ALTER TABLE parked RENAME TO llmledger_events")
    assert llmledger.flush(timeout=15)
    assert len(llmledger.events(limit=None)) == 51
    assert llmledger.stats().events_dropped == 0


def test_full_buffer_drops_and_counts_instead_of_blocking() -> None:
    gate = threading.Event()
    written: list[int] = []

    def slow_sink(batch: Sequence[int]) -> None:
        gate.wait(10)
        written.extend(batch)

    writer: BackgroundWriter[int] = BackgroundWriter(
        slow_sink, max_buffer=100, batch_size=10, flush_interval=0.01
    )
    accepted = sum(writer.submit(i) for i in range(1000))
    assert accepted < 1000
    assert writer.counters.dropped == 1000 - accepted
    gate.set()
    assert writer.close(timeout=10)
    assert sorted(written) == sorted(set(written)) and len(written) == accepted


def test_flush_writes_everything_submitted_before_it() -> None:
    written: list[int] = []
    writer: BackgroundWriter[int] = BackgroundWriter(written.extend, flush_interval=5.0)
    for i in range(12_345):
        writer.submit(i)
    assert writer.flush(timeout=10)
    assert written == list(range(12_345))
    writer.close()


def test_events_pending_at_exit_are_written(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "exit.db"
    code = (
        "import llmledger\n"
        f"llmledger.init(ledger={str(path)!r}, flush_interval=60)\n"
        "for i in range(500): llmledger.track(provider='openai', model='gpt-4o', input_tokens=i)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM llmledger_events").fetchone()[0] == 500


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_writes_its_own_events(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.02)
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, tenant="parent")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, tenant="child")
            os._exit(0 if llmledger.flush(timeout=20) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tenants = sorted(e.tenant or "" for e in llmledger.events(limit=None))
    assert tenants == ["child", "parent"]
