"""Nothing slow inside the ledger's write lock: a storm of limit decisions from several processes,
each also writing its events, gets every decision (no `LedgerBusy`, no call sent unchecked).

Seen (lim, 2026-12-02): 4 processes doing reserve / settle / write printed "no limit decision
(LedgerBusy: the ledger stayed locked for 623 ms with no commit)". The lock holder was the event
write: it registered the rollup key function on its connection at every write, which expires every
statement SQLite had prepared on it, so each one-event write re-prepared ~25 statements inside the
write lock (~15 ms instead of ~1.5 ms; hundreds of ms on a loaded machine), and decisions queued
behind it past their bound."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.hammer import in_processes

import llmledger
from llmledger.errors import LedgerBusy
from llmledger.events import UsageEvent
from llmledger.limit.model import scope_of_call
from llmledger.storage.ledger import Ledger
from llmledger.storage.limits import Held, LimitStore
from llmledger.storage.rollups_sql import _raw


class _Counting(sqlite3.Connection):
    """A real SQLite connection that counts the SQL functions registered on it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registered: list[str] = []

    def create_function(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.registered.append(name)
        super().create_function(name, *args, **kwargs)


def _event(tenant: str = "acme") -> UsageEvent:
    return UsageEvent(
        event_id=str(uuid.uuid4()),
        timestamp=datetime.now(timezone.utc),
        provider="openai",
        model="gpt-4o",
        input_tokens=12,
        output_tokens=80,
        cost_usd=Decimal("0.00083"),
        cost_source="catalog",
        tenant=tenant,
        user="u1",
    )


def test_the_rollup_writer_registers_its_function_once_per_connection(tmp_path: Path) -> None:
    # Registering a function expires every prepared statement of the connection: once per
    # connection, however many writes use it.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}", connect_args={"factory": _Counting})
    try:
        for _ in range(5):
            with engine.connect() as conn:  # the pool hands back the same connection
                _raw(conn)
                counting = conn.connection.driver_connection
        assert isinstance(counting, _Counting)
        assert counting.registered.count("llmledger_rollup_key") == 1, counting.registered
    finally:
        engine.dispose()


def test_writes_still_sum_their_rollups(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path / "ledger.db"))
    try:
        for _ in range(4):
            ledger.write([_event()])
        assert ledger.check_rollups() == []
        assert ledger.count() == 4
    finally:
        ledger.close()


def _storm(path: str, n: int) -> None:
    runtime = llmledger.init(ledger=path, flush_interval=3600, limit_timeout=0.5, on_ledger_fault="open")
    enforcer = runtime.enforcer
    enforcer.limits(fresh=True)
    scope = scope_of_call({"tenant": "acme", "user": "u1"}, "gpt-4o", "openai", {})
    for _ in range(n):
        rid, _ = enforcer.admit(
            scope, provider="openai", model="gpt-4o", feature=None, input_tokens=12, max_output_tokens=100
        )
        event = _event()
        if rid is not None:
            enforcer.settle(rid, event)
        runtime.ledger.write([event], [rid] if rid else [])
    unchecked, fault = enforcer.unchecked, enforcer.last_fault
    llmledger.shutdown()
    assert unchecked == 0, f"{unchecked} call(s) undecided: {fault}"


@pytest.mark.slow
def test_a_reserve_storm_of_4_writing_processes_decides_every_call(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.db")
    llmledger.init(ledger=path)
    llmledger.set_limit(usd=10**6, per="month", tenant="acme")
    llmledger.set_limit(usd=10**6, per="day", user="*")
    llmledger.shutdown()
    in_processes(_storm, [(path, 300)] * 4)
    llmledger.init(ledger=path)
    try:
        assert llmledger.spend(tenant="acme") == Decimal("0.00083") * 1200
    finally:
        llmledger.shutdown()


def _committing(path: Path, stop: threading.Event, hold: float) -> None:
    """Another process's writer that keeps the write lock nearly all the time, committing every `hold` s."""
    conn = sqlite3.connect(path, isolation_level=None)
    i = 0
    while not stop.is_set():
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO llmledger_meta (key, value) VALUES ('busy-test', ?)", (str(i),))
        time.sleep(hold)
        conn.execute("COMMIT")
        i += 1
    conn.close()


def _silent(path: Path, locked: threading.Event, hold: float) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO llmledger_meta (key, value) VALUES ('busy-test', 'x')")
    locked.set()
    time.sleep(hold)
    conn.execute("ROLLBACK")
    conn.close()


def _held(store: LimitStore) -> list[Held]:
    limit = store.load()[1][0]
    return [Held(limit, "tenant=acme", Decimal("0.01"))]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, LimitStore]]:
    path = tmp_path / "ledger.db"
    llmledger.init(ledger=str(path))
    llmledger.set_limit(usd=10, per="month", tenant="acme")
    llmledger.shutdown()
    ledger = Ledger(str(path))
    ledger.limits.decision_timeout = 0.1
    yield path, ledger.limits
    ledger.close()


def test_a_decision_behind_a_silent_lock_says_nobody_committed(store: tuple[Path, LimitStore]) -> None:
    path, limits = store
    locked = threading.Event()
    holder = threading.Thread(target=_silent, args=(path, locked, 1.0))
    holder.start()
    assert locked.wait(10)
    try:
        with pytest.raises(LedgerBusy, match="with no commit"):
            limits.reserve(_held(limits), "r-silent", 60)
    finally:
        holder.join()


def test_a_decision_starved_by_committing_writers_says_so(store: tuple[Path, LimitStore]) -> None:
    # Others commit all along: the wait ends at its cap (4 x limit_timeout), and says why; it
    # never claims that nobody committed (it did: the ledger was contended, not stuck).
    path, limits = store
    limits.decision_timeout = 0.25  # commits come every 20 ms: far more often than that
    stop = threading.Event()
    writer = threading.Thread(target=_committing, args=(path, stop, 0.02))
    writer.start()
    try:
        time.sleep(0.05)
        started = time.monotonic()
        busy: LedgerBusy | None = None
        try:
            limits.reserve(_held(limits), "r-starved", 60)
        except LedgerBusy as exc:
            busy = exc
        waited = time.monotonic() - started
    finally:
        stop.set()
        writer.join()
    if busy is not None:  # (a retry may also slip into a gap between two commits: decided)
        assert "kept committing" in str(busy)
        assert waited >= 4 * 0.25 - 0.01


def test_release_says_whether_the_reservation_was_held(store: tuple[Path, LimitStore]) -> None:
    _, limits = store
    limits.reserve(_held(limits), "r-live", 60)
    assert limits.release(["r-live"]) == 1
    assert limits.release(["r-live"]) == 0  # released already
    assert limits.release(["never-made"]) == 0
    limits.reserve(_held(limits), "r-expired", 1)
    time.sleep(1.1)
    assert limits.release(["r-expired"]) == 0  # expired: no longer held, dropped all the same
    assert limits.standing(_held(limits)[0].limit, "tenant=acme", datetime.now(timezone.utc)).reserved == 0
