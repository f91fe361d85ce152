"""Engines for the ledger: SQLite (WAL, exact decimal sums, explicit write locks) or PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmledger._urls import redact_url
from llmledger.errors import ConfigError, LedgerError

__all__ = [
    "FORK_WAIT",
    "IMMEDIATE",
    "create_ledger_engine",
    "normalize_url",
    "register_sqlite_functions",
    "sqlite_in_use",
    "sqlite_path",
]

FORK_WAIT = 30.0
"""Seconds `os.fork()` waits at most for this process's threads to leave SQLite (the busy timeout of
the writer's connections: a transaction cannot wait longer for another process's lock)."""

IMMEDIATE = "llmledger_immediate"
"""Execution option: take the ledger's write lock when the transaction begins, so that writers (and
every limit check with its reservation) run one at a time across threads, processes and servers.
SQLite: `BEGIN IMMEDIATE` (two writers queue on `busy_timeout` instead of failing with a deadlock).
PostgreSQL: a transaction-level advisory lock (`pg_advisory_xact_lock`), released at commit."""

WRITE_LOCK_KEY = 0x6C6C6D6C65646772
"""The PostgreSQL advisory lock key of the ledger's write lock ("llmledgr" in ASCII)."""


class _DecimalSum:
    """SQLite aggregate `dsum(text)`: the exact sum of decimal strings, as a decimal string."""

    def __init__(self) -> None:
        self.total = Decimal(0)
        self.seen = False

    def step(self, value: Any) -> None:
        if value is not None:
            self.total += Decimal(value)
            self.seen = True

    def finalize(self) -> str | None:
        return str(self.total) if self.seen else None


class _IntSum:
    """SQLite aggregate `isum(int)`: the exact sum of integers, as text when it outgrows 64 bits
    (`SUM()` raises "integer overflow"; used when a ledger holds counts an older version let in)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: Any) -> None:
        if value is not None:
            self.total += int(value)

    def finalize(self) -> int | str:
        return self.total if -(2**63) <= self.total < 2**63 else str(self.total)


def _decimal_add(a: str | None, b: str | None) -> str:
    """SQLite function `dadd(text, text)`: exact decimal addition (counters of spend limits)."""
    return str(Decimal(a or 0) + Decimal(b or 0))


def normalize_url(url: str) -> str:
    """Accept `sqlite:///path`, `postgresql://...` or a bare file path; return a SQLAlchemy URL."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("ledger must be a database URL such as 'sqlite:///llmledger.db' or a file path")
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser()}"
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def sqlite_path(url: str) -> str | None:
    """The file a SQLite ledger URL or bare path names (None for other databases or bad URLs)."""
    try:
        parsed = sa.make_url(normalize_url(url))
    except (ConfigError, sa.exc.ArgumentError):
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return str(Path(parsed.database).expanduser())


_DRIVERS = {"postgresql": "psycopg (pip install 'llmledger[postgres]')"}


def create_ledger_engine(url: str) -> Engine:
    """Create an engine for the ledger at `url`, configured for safe multi-process use.

    Raises `ConfigError` for a URL llmledger cannot use (unknown database, missing driver) and
    `LedgerError` when a SQLite file's folder cannot be created (a path under a file, no permission).
    """
    url = normalize_url(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"not a valid ledger URL: {redact_url(url)!r} ({exc})") from exc
    backend = parsed.get_backend_name()
    if backend != "sqlite":
        try:
            engine = sa.create_engine(url, pool_pre_ping=True)
        except sa.exc.NoSuchModuleError as exc:
            raise ConfigError(
                f"ledger URL {parsed.render_as_string(hide_password=True)!r}: unknown database "
                f"{parsed.drivername!r}; use a file path, sqlite:///path or postgresql://user@host/db"
            ) from exc
        except ImportError as exc:
            need = _DRIVERS.get(backend, f"the {parsed.drivername} driver")
            raise ConfigError(
                f"ledger URL {parsed.render_as_string(hide_password=True)!r} needs {need}: {exc}"
            ) from exc
        if backend == "postgresql":
            sa.event.listen(engine, "begin", _on_postgres_begin)
        _FORK.watch(engine)  # a forked child never uses its parent's server connections
        return engine
    if parsed.database in (None, "", ":memory:"):
        raise ConfigError("an in-memory SQLite ledger cannot be shared by the writer; use a file path")
    path = Path(parsed.database).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror or str(exc)
        raise LedgerError(f"cannot create the ledger {path}: {why}; choose another path") from exc
    if path.exists() and not path.is_file():
        raise LedgerError(f"cannot use {path} as a ledger: it is a folder, not a file; name a file in it")
    _create_private(path)
    engine = sa.create_engine(url, connect_args={"timeout": 30.0, "check_same_thread": False})
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    sa.event.listen(engine, "begin", _on_sqlite_begin)
    _FORK.watch(engine)
    return engine


def _create_private(path: Path) -> None:
    """Create the SQLite file (and its folder) readable by its owner only: mode 0600. SQLite creates
    the `-wal` and `-shm` files with the database file's mode, so they are 0600 too."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return  # an existing ledger keeps the mode its owner chose
    except OSError as exc:
        raise LedgerError(f"cannot create the ledger file {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
    finally:
        os.close(fd)


class _ForkGuard:
    """Keeps SQLite state from crossing `os.fork()` mid-use (gunicorn --preload, Celery prefork,
    multiprocessing): a fork waits until no thread of this process is inside SQLite — a pooled
    connection checked out, a connection being opened, or the limits hot path's raw connection in a
    transaction (`in_use()`) — holding new entries meanwhile. SQLite keeps process-wide mutexes (its
    allocator's, its per-file lock bookkeeping) that a thread may hold at the instant of the fork; the
    child would inherit them locked and hang forever in its first `connect` or `BEGIN` (seen: 1 of
    40 children stuck for minutes). The wait is capped at `FORK_WAIT` seconds (a transaction waiting
    for another process's lock can last that long); the child then drops the pooled connections
    without closing them (they belong to the parent) and never checks out a connection opened by
    another process."""

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._cond = threading.Condition()
        self._active = 0
        self._forking = False
        os.register_at_fork(
            before=self._before, after_in_parent=self._after_parent, after_in_child=self._after_child
        )

    def watch(self, engine: Engine) -> None:
        self._engines.add(engine)
        sa.event.listen(engine, "do_connect", self._do_connect)
        sa.event.listen(engine, "connect", _remember_pid)
        sa.event.listen(engine, "checkout", self._checkout)
        sa.event.listen(engine, "checkin", self._checkin)

    def _checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():  # opened by the parent: never used here
            record.dbapi_connection = proxy.dbapi_connection = None
            raise sa.exc.DisconnectionError("connection opened by another process")
        self._enter()
        record.info["active"] = True

    def _checkin(self, dbapi_connection: Any, record: Any) -> None:
        if record.info.pop("active", False):
            self._leave()

    def _enter(self) -> None:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._active += 1

    def _leave(self) -> None:
        with self._cond:
            self._active -= 1
            if self._forking:  # only a fork waits for the count to fall
                self._cond.notify_all()

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Mark the calling thread as inside SQLite until the block ends (a fork waits for it)."""
        self._enter()
        try:
            yield
        finally:
            self._leave()

    def _do_connect(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        # Opening a connection runs inside SQLite (and a server driver's sockets): gate it too, and
        # return the connection so SQLAlchemy uses it.
        with self.in_use():
            return dialect.connect(*cargs, **cparams)

    def _before(self) -> None:
        self._cond.acquire()
        self._forking = True
        deadline = time.monotonic() + FORK_WAIT
        while self._active > 0 and (left := deadline - time.monotonic()) > 0:
            self._cond.wait(left)

    def _after_parent(self) -> None:
        self._forking = False
        self._cond.notify_all()
        self._cond.release()

    def _after_child(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._forking = False
        for engine in list(self._engines):
            engine.dispose(close=False)


def _remember_pid(dbapi_connection: Any, record: Any) -> None:
    record.info["pid"] = os.getpid()


_FORK = _ForkGuard()
sqlite_in_use = _FORK.in_use
"""`with sqlite_in_use(): ...` around SQLite work on a raw connection, so that `os.fork()` waits for it."""


def _on_sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit transactions are wrong
    # for DDL and cannot take the write lock up front).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    dbapi_connection.create_aggregate("dsum", 1, _DecimalSum)  # type: ignore[arg-type]
    dbapi_connection.create_aggregate("isum", 1, _IntSum)  # type: ignore[arg-type]
    dbapi_connection.create_function("dadd", 2, _decimal_add, deterministic=True)


def _on_postgres_begin(conn: Connection) -> None:
    # READ COMMITTED alone lets two limit checks see the same standing and both reserve: serialize
    # the writers that asked for the write lock, as SQLite's BEGIN IMMEDIATE does.
    if conn.get_execution_options().get(IMMEDIATE, False):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")


def _on_sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def register_sqlite_functions(dbapi_connection: sqlite3.Connection) -> None:
    """Register llmledger's exact-decimal SQL functions (`dsum`, `dadd`) on a raw sqlite3 connection."""
    dbapi_connection.create_aggregate("dsum", 1, _DecimalSum)  # type: ignore[arg-type]
    dbapi_connection.create_function("dadd", 2, _decimal_add, deterministic=True)
