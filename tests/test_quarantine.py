"""One bad value never stops metering: bounds, the quarantine, bounded retries, a writer that stops."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import llmledger
from llmledger.cli import app
from llmledger.errors import ConfigError, InvalidUsageError
from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.sdk import runtime as _rt
from llmledger.transport import BackgroundWriter

runner = CliRunner()


def _good(n: int) -> None:
    for _ in range(n):
        llmledger.track(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=2)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"input_tokens": 2**63}, "input_tokens"),
        ({"input_tokens": 2**63 - 1}, "input_tokens"),
        ({"tenant": "\ud800"}, "tenant"),
        ({"tags": {"k": "a\x00b"}}, "tag"),
        ({"model": "m" * 1_000_000}, "model"),
        ({"request_id": "r\x00"}, "request_id"),
        ({"timestamp": datetime(9999, 12, 31, tzinfo=timezone.utc)}, "timestamp"),
        ({"cost_usd": "1e1000000"}, "cost_usd"),
        ({"cost_usd": Decimal("1e-40")}, "cost_usd"),
        ({"duration_ms": float("nan")}, "duration_ms"),
        ({"duration_ms": float("inf")}, "duration_ms"),
        ({"stream": "no"}, "stream"),
        ({"units": {"web_searches": 1e300}}, "web_searches"),
    ],
)
def test_a_bad_value_is_a_typed_error_and_metering_goes_on(
    ledger: Any, bad: dict[str, Any], field: str
) -> None:
    llmledger.set_limit(usd=100, per="month")  # the year-9999 and huge-cost cases broke limit windows
    kwargs = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1, **bad}
    with pytest.raises(InvalidUsageError, match=field):
        llmledger.track(**kwargs)
    _good(5)
    started = time.perf_counter()
    assert llmledger.flush(timeout=5)
    assert time.perf_counter() - started < 2  # before: flush() and spend() hung 30 s each
    assert len(llmledger.events(limit=None)) == 5
    assert llmledger.spend() > 0


def _poison(ledger_path: Path, model: str) -> None:
    # A real fault of the store for one row: SQLite refuses it (as PostgreSQL refuses a value that
    # does not fit a column), whatever the rest of the batch.
    with sqlite3.connect(ledger_path) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON llmledger_events "
            f"WHEN NEW.model = '{model}' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )


def test_the_writer_quarantines_the_rows_at_fault_and_writes_the_rest(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.02)
    _good(1)
    assert llmledger.flush()
    _poison(ledger_path, "poison-model")
    with llmledger.attribute(tenant="acme"):  # one batch of 201 with the poisoned row inside
        _good(100)
        llmledger.track(provider="openai", model="poison-model", input_tokens=3)
        _good(100)
    assert llmledger.flush(timeout=10)
    assert len(llmledger.events(limit=None)) == 201
    stats = llmledger.stats()
    assert stats.events_quarantined == 1
    assert stats.events_pending == 0
    listed = runner.invoke(app, ["quarantine", "list", "--ledger", str(ledger_path)])
    assert listed.exit_code == 0, listed.output
    assert "1 event(s)" in listed.output and "poisoned row" in listed.output
    # Still refused: the retry keeps it, with the reason.
    kept = runner.invoke(app, ["quarantine", "retry", "--ledger", str(ledger_path)])
    assert "0 event(s) written, 1 still quarantined" in kept.output, kept.output
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("DROP TRIGGER poison")
    fixed = runner.invoke(app, ["quarantine", "retry", "--ledger", str(ledger_path)])
    assert "1 event(s) written, 0 still quarantined" in fixed.output, fixed.output
    models = [e.model for e in llmledger.events(limit=None)]
    assert models.count("poison-model") == 1 and len(models) == 202


def test_provider_data_no_store_holds_is_quarantined_not_retried_forever(ledger_path: Path) -> None:
    # Events built from provider data on the writer thread are checked there: a relay reporting
    # 2**63 tokens or a NUL in the model name costs one quarantined row, not the whole process.
    llmledger.init(ledger=str(ledger_path), flush_interval=0.02)
    runtime = _rt.current()
    for model, tokens in (("gpt-4o", 2**63), ("bad\x00model", 5), ("gpt-4o", 5)):
        now = datetime.now(timezone.utc)
        runtime.record(
            UsageEvent(event_id=uuid7(), timestamp=now, provider="openai", model=model, input_tokens=tokens)
        )
    assert llmledger.flush(timeout=5)
    assert llmledger.stats().events_quarantined == 2
    assert len(llmledger.events(limit=None)) == 1


def test_spend_and_usage_survive_an_old_ledger_with_huge_counts(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.02)
    _good(2)
    assert llmledger.flush()
    # Rows an older version (before the rollups) let in: two counts whose sum overflows 64 bits.
    llmledger.shutdown()
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("UPDATE llmledger_events SET input_tokens = ?", (2**63 - 1,))
        conn.execute("DROP TABLE llmledger_rollups")
        conn.execute("DROP TABLE llmledger_forgotten_spend")  # 0008, after the rollups
        conn.execute("UPDATE alembic_version SET version_num = '0006_webhook_deliveries'")
    llmledger.init(ledger=str(ledger_path), flush_interval=0.02)  # the migration builds the rollups
    rows = llmledger.usage("tenant")
    assert rows[0].input_tokens == 2 * (2**63 - 1)
    assert llmledger.spend() >= 0


def test_a_closed_writer_whose_ledger_fails_stops_at_once(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.02)
    _good(1)
    assert llmledger.flush()
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("ALTER TABLE llmledger_events RENAME TO parked")
    _good(5)
    writer = _rt.current().writer
    thread = writer._thread
    assert thread is not None
    started = time.perf_counter()
    assert not llmledger.shutdown(timeout=0.5)
    assert time.perf_counter() - started < 3
    thread.join(2)
    assert not thread.is_alive()  # before: it spun at 100 % CPU forever after shutdown()


def test_a_closed_writer_does_not_spin() -> None:
    calls = 0

    def failing(batch: Any) -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk full")

    writer: BackgroundWriter[int] = BackgroundWriter(failing, flush_interval=0.01, max_backoff=0.2)
    writer.submit(1)
    assert not writer.close(timeout=0.3)
    before = calls
    time.sleep(0.5)
    assert calls == before
    assert writer.pending == 1  # counted, not lost silently


def test_after_a_failure_batches_shrink_so_a_nearly_full_store_still_takes_them() -> None:
    sizes: list[int] = []

    def sink(batch: Any) -> None:
        sizes.append(len(batch))
        if len(batch) > 100:
            raise OSError("database or disk is full")

    writer: BackgroundWriter[int] = BackgroundWriter(
        sink, batch_size=1000, flush_interval=0.01, max_backoff=0.02
    )
    for i in range(3000):
        writer.submit(i)
    assert writer.flush(timeout=10)
    assert writer.counters.written == 3000
    assert max(sizes[1:]) <= 1000 and min(sizes) <= 100


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"flush_interval": float("inf")}, "flush_interval"),
        ({"flush_interval": float("nan")}, "flush_interval"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"max_buffer": 0}, "max_buffer"),
        ({"max_buffer": 1.5}, "max_buffer"),
        ({"reservation_ttl": float("nan")}, "reservation_ttl"),
        ({"reservation_ttl": float("inf")}, "reservation_ttl"),
        ({"default_output_cap": 2**63}, "default_output_cap"),
        ({"enabled": "no"}, "enabled"),
        ({"debug": "yes"}, "debug"),
        ({"on_event": 3}, "on_event"),
        ({"ledger": 42}, "ledger"),
        ({"providers": 5}, "providers"),
        ({"tenant": "\ud800"}, "tenant"),
    ],
)
def test_init_settings_are_finite_and_in_range(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError if field != "tenant" else InvalidUsageError, match=field):
        llmledger.init(**{"ledger": str(tmp_path / "l.db"), **kwargs})


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a 2 MB filesystem needs root")
def test_a_full_disk_then_freed_loses_nothing(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        ledger = mnt / "ledger.db"
        filler = mnt / "filler"
        filler.touch()
        llmledger.init(ledger=str(ledger), flush_interval=0.02, journal=False)  # the ledger alone
        _good(200)
        assert llmledger.flush(timeout=10)
        with open(
            filler, "ab", buffering=0
        ) as f:  # fill the disk (unbuffered: nothing left to flush at close)
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        _good(3000)
        assert not llmledger.flush(timeout=1)
        assert llmledger.stats().write_errors >= 1
        filler.unlink()  # free it
        assert llmledger.flush(timeout=60)
        assert len(llmledger.events(limit=None)) == 3200  # before: 879 of 5,561 ever written
        assert llmledger.stats().events_dropped == 0
    finally:
        llmledger.shutdown(timeout=5)
        subprocess.run(["umount", "-l", str(mnt)], check=False)
