"""After `shutdown()`, a later `track()` or query reopens the ledger `init()` named, never a new
default `./llmledger.db` (newcomer report item 13: events split across two files, spend() wrong)."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

import llmledger


def test_track_and_spend_after_shutdown_use_the_same_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMLEDGER_DB", raising=False)
    mine = tmp_path / "mine.db"
    llmledger.init(ledger=str(mine))
    first = llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1000, tenant="a")
    llmledger.shutdown()
    with caplog.at_level(logging.WARNING, logger="llmledger"):
        second = llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1000, tenant="a")
        spent = llmledger.spend(tenant="a")
    llmledger.shutdown()
    assert first.cost_usd is not None and second.cost_usd is not None
    assert spent == first.cost_usd + second.cost_usd == Decimal("0.0003")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["mine.db"]
    assert "shut down" in caplog.text


def test_init_after_shutdown_starts_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    llmledger.init(ledger=str(tmp_path / "one.db"))
    llmledger.shutdown()
    llmledger.init(ledger=str(tmp_path / "two.db"))
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=10, tenant="b")
    llmledger.shutdown()
    llmledger.shutdown()  # twice is harmless and keeps two.db as the last ledger
    assert llmledger.spend(tenant="b") > 0
    llmledger.shutdown()
    assert not (tmp_path / "llmledger.db").exists()
