"""An event id twice in one written batch is stored once and counted once by the limit counters
(review finding: `LimitStore.apply` counted each copy, the ledger kept one: counters above events)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import llmledger
from llmledger.events import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.storage import Ledger


def test_a_repeated_id_in_one_batch_counts_once(tmp_path: Path) -> None:
    path = str(tmp_path / "d.db")
    llmledger.init(ledger=path)
    llmledger.set_limit(usd=1, per="month", tenant="acme")
    llmledger.shutdown()
    event = UsageEvent(
        event_id=uuid7(),
        timestamp=datetime.now(timezone.utc),
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=1000,
        output_tokens=100,
        cost_usd=Decimal("0.25"),
        tenant="acme",
    )
    ledger = Ledger(path)
    try:
        ledger.write([event, event, event])
    finally:
        ledger.close()
    llmledger.init(ledger=path)
    [status] = llmledger.remaining(tenant="acme")
    assert llmledger.spend(tenant="acme") == Decimal("0.25")
    assert status.spent == Decimal("0.25")
