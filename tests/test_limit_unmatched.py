"""A call no limit matches costs nothing for the limits (issue 8, hot15): no reservation id, no
journaled reservation record, no ledger transaction — while a matching call still reserves."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes.served import calls

import llmledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ledger.db"
    llmledger.init(ledger=str(path))
    yield path
    llmledger.shutdown()


def _journal_kinds(ledger: Path) -> list[str]:
    """The kind letter of every record in the live process's journal files (read from disk)."""
    kinds = []
    for path in sorted((ledger.parent / (ledger.name + ".journal")).glob("*.jnl")):
        data = path.read_bytes().rstrip(b"\0")
        kinds += [line[:1].decode() for line in data.split(b"\n") if line]
    return kinds


def _reservations_ever(ledger: Path) -> int:
    with sqlite3.connect(ledger) as conn:
        return int(conn.execute("SELECT count(*) FROM llmledger_reservations").fetchone()[0])


def test_a_call_no_limit_matches_journals_no_reservation(ledger: Path, tmp_path: Path) -> None:
    llmledger.set_limit(usd=1000, per="month", tenant="someone-else")
    calls(tmp_path / "served.log", 3, tenant="t")
    assert llmledger.flush()
    assert _journal_kinds(ledger) == ["B", "E"] * 3  # no `R` record: nothing was reserved
    assert llmledger.stats().calls_unchecked == 0
    assert len(llmledger.events()) == 3


def test_a_matching_call_still_reserves_and_journals_it(ledger: Path, tmp_path: Path) -> None:
    llmledger.set_limit(usd=1000, per="month", tenant="t")
    calls(tmp_path / "served.log", 2, tenant="t")
    assert llmledger.flush()
    assert _journal_kinds(ledger) == ["R", "B", "E"] * 2
    assert _reservations_ever(ledger) == 0  # settled and released once written
    assert llmledger.spend(tenant="t") > 0
