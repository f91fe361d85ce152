"""Shared fixtures: every test gets its own real SQLite ledger file and a fresh runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from tests.fakes.recorded import Recorded
from tests.fakes.server import Fake
from tests.pg import PostgresServer, start_server

import llmledger
from llmledger.events import UsageEvent
from llmledger.sdk import runtime as _rt

# Input generation may be slow on a loaded 2-core CI machine: that is not a failure of llmledger
# (each test's own assertions and example counts are unchanged).
settings.register_profile("llmledger", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("llmledger")


@pytest.fixture(autouse=True)
def _isolated_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test writes ./llmledger.db or leaks a runtime (and its writer thread) into the next."""
    monkeypatch.setenv("LLMLEDGER_DB", str(tmp_path / "default.db"))
    monkeypatch.delenv("LLMLEDGER_PRICES", raising=False)
    monkeypatch.delenv("LLMLEDGER_DISABLED", raising=False)
    yield
    llmledger.shutdown(timeout=10)
    assert _rt._runtime is None
    _rt._last_config = None  # the next test's implicit runtime uses its own LLMLEDGER_DB


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (tests/pg.py), started on first use."""
    yield from start_server()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh, empty database on that server."""
    return pg_server.create_database()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    """A fresh ledger file path."""
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(ledger_path: Path) -> _rt.Runtime:
    """llmledger initialised on a fresh SQLite file, flushing quickly."""
    return llmledger.init(ledger=str(ledger_path), flush_interval=0.02)


@pytest.fixture
def fake() -> Fake:
    """A fresh fake of the provider APIs (see tests/fakes)."""
    return Fake()


@pytest.fixture
def recorded(ledger_path: Path) -> list[UsageEvent]:
    """llmledger initialised (and so instrumented) on a fresh ledger; every event lands in the list."""
    events = Recorded()
    llmledger.init(ledger=str(ledger_path), on_event=events.append, flush_interval=0.02)
    return events
