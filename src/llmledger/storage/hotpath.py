"""The limit decision's hot path: reserve, settle and release in one short write transaction each.

On SQLite it runs on one raw `sqlite3` connection per process (a SQLAlchemy `BEGIN IMMEDIATE ...
COMMIT` costs ~40 µs and each statement ~20 µs more: issue 8 part 3), serialized inside the process
by a lock, so at most one thread per process queues for SQLite's write lock. It queues by retrying
`BEGIN IMMEDIATE` after short, growing, jittered sleeps (0.2 to 2 ms; SQLite's own busy handler
sleeps up to 100 ms at a time, long after the lock is free). The wait for a decision is bounded by
`timeout` seconds (never the 30 s of the writer's engine) WITHOUT PROGRESS: while other decisions
and writes keep committing (mere contention, seen by SQLite's `data_version` and by this process's
own decisions), a waiting decision keeps its place, up to `PROGRESS_CAP` x `timeout`; a ledger that
commits nothing for `timeout` (locked by a stuck or long transaction, unreachable) makes the
decision fail with `LedgerBusy`, and the caller applies its `on_ledger_fault` policy.

The clock is read INSIDE the write lock: a window or a throttle is decided at the moment the
decision is made, not before a wait for the lock.

`TRY_ONLY` (a context variable) makes a decision that would have to wait raise `WouldWait` instead:
the HTTP server decides on its event loop when the ledger is free at once, in a thread otherwise.

On PostgreSQL the same statements run through SQLAlchemy (`%s` markers, `sum` instead of `dsum`),
under the ledger's transaction-level advisory write lock taken with `SET LOCAL lock_timeout` set to
`timeout`: a lock another session holds longer than that makes the decision fail with `LedgerBusy`
(PostgreSQL's `lock_not_available`), so the caller's wait is bounded there too.
"""

from __future__ import annotations

import contextvars
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from llmledger.errors import LedgerBusy
from llmledger.storage.engine import WRITE_LOCK_KEY, register_sqlite_functions, sqlite_in_use

__all__ = ["PROGRESS_CAP", "TRY_ONLY", "Exec", "HotPath", "WouldWait", "now_us", "pg"]

T = TypeVar("T")

PROGRESS_CAP = 4
"""A decision waits at most this many `timeout`s in all, even while the ledger makes progress."""
_FIRST_RETRY = 0.0002
_LAST_RETRY = 0.002
"""Seconds between tries for a locked ledger's write lock: from 0.2 ms, doubling to 2 ms (jittered)."""


TRY_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("llmledger_try_only", default=False)
"""Set (in a context: an asyncio task, a thread's call) to make a decision only if it needs no wait:
`HotPath.run` raises `WouldWait` instead of waiting for a lock (the HTTP server decides on its event
loop when the ledger is free, and hands the call to a worker thread otherwise)."""


class WouldWait(Exception):
    """`TRY_ONLY` is set and the decision would have to wait (nothing was done)."""


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class _Patience:
    """How long one decision may still wait for the ledger: `timeout` seconds without progress (a
    `mark` that changes when someone commits), `PROGRESS_CAP` x `timeout` in all. The one rule of
    both waits (this process's lock, then SQLite's write lock)."""

    __slots__ = ("cap", "mark", "progress", "start", "timeout")

    def __init__(self, timeout: float, mark: object) -> None:
        self.start = self.progress = time.monotonic()
        self.cap = self.start + timeout * PROGRESS_CAP
        self.timeout = timeout
        self.mark = mark

    def check(self, mark: object, waiting_for: str) -> None:
        """Raise `LedgerBusy` if the wait is over; `mark` is the progress seen now."""
        now = time.monotonic()
        if mark != self.mark:  # someone committed meanwhile: contention, keep waiting
            self.mark, self.progress = mark, now
        waited = (now - self.start) * 1000
        if now - self.progress >= self.timeout:
            raise LedgerBusy(
                f"{waiting_for} stayed locked for {(now - self.progress) * 1000:.0f} ms with no commit "
                f"(waited {waited:.0f} ms): no limit decision"
            )
        if now >= self.cap:
            raise LedgerBusy(
                f"no limit decision within {waited:.0f} ms: {waiting_for} kept committing other work "
                f"(contended past the decision's bound of {PROGRESS_CAP} x limit_timeout)"
            )


class Exec:
    """Runs one statement (qmark parameters) in an open transaction; returns its rows and keeps the
    count of rows it changed in `rowcount`. The statements are written for SQLite and rewritten for
    PostgreSQL (`pg`)."""

    __slots__ = ("_execute", "raw", "rowcount", "sqlite")

    def __init__(self, execute: Callable[[str, Any], Any], sqlite: bool, raw: bool = False) -> None:
        self._execute = execute
        self.sqlite = sqlite
        self.raw = raw
        """`execute` is a `sqlite3.Connection`'s own (rows are tuples, no result wrapper)."""
        self.rowcount = 0

    def __call__(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self.raw:
            cursor = self._execute(sql, params)
            self.rowcount = cursor.rowcount
            rows: list[tuple[Any, ...]] = cursor.fetchall()  # sqlite3 rows are tuples already
            return rows
        cursor = self._execute(sql if self.sqlite else pg(sql), tuple(params))
        self.rowcount = cursor.rowcount
        if not getattr(cursor, "returns_rows", True):
            return []
        return [tuple(row) for row in cursor.fetchall()]

    @classmethod
    def on(cls, conn: Connection) -> Exec:
        """An `Exec` on a SQLAlchemy connection (inside its transaction)."""
        return cls(conn.exec_driver_sql, conn.dialect.name == "sqlite")


def now_us() -> int:
    """The wall clock in integer microseconds since the Unix epoch."""
    return time.time_ns() // 1000


class HotPath:
    """Short write transactions on the ledger for the limit decision (one per process and ledger)."""

    def __init__(self, engine: Engine, timeout: float) -> None:
        self.engine = engine
        self.timeout = timeout
        self.sqlite = engine.dialect.name == "sqlite"
        self._database = engine.url.database if self.sqlite else None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._exec = Exec(_closed, True, raw=True)
        self._pid = 0
        self._done = 0  # decisions committed by this process (progress seen by waiting threads)
        ref = weakref.ref(self)  # a parent thread may hold the lock at a fork: the child starts free
        os.register_at_fork(after_in_child=lambda: _fresh_in_child(ref))

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with sqlite_in_use():
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is not None and self._pid == os.getpid():
            return conn
        # A forked child must not share its parent's connection: open its own.
        assert self._database is not None
        conn = sqlite3.connect(
            self._database, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=0")  # never SQLite's sleeps: `_begin` retries itself
        register_sqlite_functions(conn)
        self._conn, self._pid = conn, os.getpid()
        self._exec = Exec(conn.execute, True, raw=True)
        return conn

    def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(run, *args)` in one write transaction, taken within `timeout` seconds without progress (and
        `PROGRESS_CAP` x `timeout` in all), or `LedgerBusy`; its result. One plain call, no context
        managers: it is the whole decision's overhead (issue 8 part 3)."""
        patience = _Patience(self.timeout, self._done)
        lock = self._lock
        if TRY_ONLY.get():
            if not self.sqlite or not lock.acquire(blocking=False):
                raise WouldWait
        else:
            while not lock.acquire(timeout=self.timeout):
                patience.check(self._done, "this process's decisions are stuck waiting for the ledger")
        try:
            if self.sqlite:
                with sqlite_in_use():  # a fork waits for the transaction
                    conn = self._connect()
                    self._begin(conn, patience)
                    try:
                        result = work(self._exec, *args)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
            else:
                with self._sqlalchemy() as run:
                    result = work(run, *args)
            self._done += 1
            return result
        finally:
            lock.release()

    def _begin(self, conn: sqlite3.Connection, patience: _Patience) -> None:
        # SQLite's own busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries, so a waiter can
        # sleep on long after the lock is free (the p99 of 4 processes was 100-400 ms with 1-2 ms
        # holds). So the connection never waits (busy_timeout 0) and this loop retries after short
        # jittered sleeps instead. `data_version` (another connection committed) is only read once
        # the lock is found taken.
        delay = 0.0
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
                if TRY_ONLY.get():
                    raise WouldWait from exc
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if delay == 0.0:  # the first try: what the ledger's commits are counted from
                    patience.mark = version
                else:
                    try:
                        patience.check(version, "the ledger")
                    except LedgerBusy as busy:
                        raise busy from exc
            delay = _FIRST_RETRY if delay == 0.0 else min(delay * 2, _LAST_RETRY)
            time.sleep(delay * (0.5 + random.random()))  # jittered: waiters do not retry in step

    @contextmanager
    def _sqlalchemy(self) -> Iterator[Exec]:
        from sqlalchemy.exc import OperationalError

        with self.engine.connect() as conn, conn.begin():
            # The ledger's write lock (as `IMMEDIATE` takes it), waited for at most `timeout`.
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(self.timeout * 1000))}")
            start = time.monotonic()
            try:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                    raise
                raise LedgerBusy(
                    f"the ledger's write lock stayed held for {(time.monotonic() - start) * 1000:.0f} ms: "
                    "no limit decision"
                ) from exc
            yield Exec.on(conn)


def _closed(sql: str, params: Any) -> Any:
    raise sqlite3.ProgrammingError("no decision connection is open")


def _fresh_in_child(ref: weakref.ref[HotPath]) -> None:
    path = ref()
    if path is not None:  # the parent's connection stays the parent's; the child opens its own
        path._lock = threading.Lock()
        path._conn = None
        path._exec = Exec(_closed, True, raw=True)


def pg(sql: str) -> str:
    """A qmark statement of this module for PostgreSQL (psycopg `%s`, plain `sum`)."""
    return (
        sql.replace("?", "%s")
        .replace("dsum(", "sum(")
        .replace("INSERT OR IGNORE", "INSERT")
        .replace("/*IGNORE*/", "ON CONFLICT DO NOTHING")
    )
