"""Retention and erasure: `delete_events()` and `llmledger delete`, with limits kept consistent."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

import llmledger

NOW = datetime.now(timezone.utc)
OLD = NOW - timedelta(days=400)


def _fill(path: Path) -> None:
    llmledger.init(ledger=str(path), flush_interval=0.02)
    llmledger.set_limit(usd=100, per="month", user="*")
    llmledger.set_limit(usd=100, per="lifetime", tenant="acme")
    llmledger.set_limit(requests=1000, per="day", tenant="*")
    for tenant, user in (("acme", "u1"), ("acme", "u2"), ("globex", "u3")):
        for _ in range(3):
            llmledger.track(
                provider="openai",
                model="gpt-4o",
                input_tokens=1000,
                output_tokens=100,
                tenant=tenant,
                user=user,
            )
        llmledger.track(
            provider="openai", model="gpt-4o", input_tokens=1000, tenant=tenant, user=user, timestamp=OLD
        )
    llmledger.flush()


def test_erasure_of_a_user_keeps_counters_equal_to_the_events(ledger_path: Path) -> None:
    _fill(ledger_path)
    assert llmledger.reconcile() == []
    before = llmledger.spend(tenant="acme")
    gone = llmledger.delete_events(user="u1")
    assert gone == 4
    assert llmledger.events(user="u1") == []
    assert llmledger.reconcile() == []  # counters lost exactly the deleted events' amounts
    assert llmledger.spend(tenant="acme") < before
    statuses = llmledger.remaining(tenant="acme", user="u2")
    [per_user] = [s for s in statuses if s.limit.scope == (("user", "*"),)]
    assert per_user.spent == Decimal("0.0105")  # u2's three calls in this month, untouched


def test_erasure_of_a_tenant_and_retention_before_a_date(ledger_path: Path) -> None:
    _fill(ledger_path)
    assert llmledger.delete_events(before=NOW - timedelta(days=30)) == 3  # the three old events
    assert llmledger.reconcile() == []
    assert llmledger.delete_events(tenant="globex") == 3
    assert llmledger.reconcile() == []
    assert {e.tenant for e in llmledger.events()} == {"acme"}
    assert llmledger.delete_events(before="1d", tenant="acme") == 0  # all criteria must match


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "say which events"), ({"tenant": ""}, "tenant must be"), ({"before": "soon"}, "not a time")],
)
def test_bad_criteria_are_typed_errors(ledger_path: Path, kwargs: dict[str, str], message: str) -> None:
    llmledger.init(ledger=str(ledger_path))
    with pytest.raises(llmledger.InvalidQueryError, match=message):
        llmledger.delete_events(**kwargs)  # type: ignore[arg-type]
