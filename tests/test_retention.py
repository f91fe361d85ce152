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
    assert llmledger.reconcile() == []  # the counters keep the deleted spend, and reconcile knows it
    assert llmledger.spend(tenant="acme") < before  # reports read the events: u1's are gone
    statuses = llmledger.remaining(tenant="acme", user="u2")
    [per_user] = [s for s in statuses if s.limit.scope == (("user", "*"),)]
    assert per_user.spent == Decimal("0.0105")  # u2's three calls in this month, untouched
    # Regression (newcomer report, 2026-12-02, item 2): erasing a user mid-month reset the user's
    # monthly budget: what u1 spent this month still counts against it.
    [erased] = [s for s in llmledger.remaining(tenant="acme", user="u1") if s.limit.scope == (("user", "*"),)]
    assert erased.spent == Decimal("0.0105")


def test_retention_never_refunds_a_prepaid_credit(ledger_path: Path) -> None:
    # Regression (newcomer report, 2026-12-02, item 2): deleting year-old events gave their spend
    # back to a lifetime (prepaid) limit: a tenant spent $0.000153 of a $0.0001 credit.
    llmledger.init(ledger=str(ledger_path), flush_interval=0.02)
    llmledger.set_limit(usd="0.0001", per="lifetime", tenant="prepaid")
    for _ in range(3):  # $0.000027 each: 100 x $0.15 + 20 x $0.6 per 1M (gpt-4o-mini)
        llmledger.track(
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=100,
            output_tokens=20,
            tenant="prepaid",
            timestamp=OLD,
        )
    llmledger.flush()
    [credit] = llmledger.remaining(tenant="prepaid")
    assert credit.spent == Decimal("0.000081")
    assert llmledger.delete_events(before="365d") == 3
    assert llmledger.events(tenant="prepaid") == []
    [credit] = llmledger.remaining(tenant="prepaid")
    assert credit.spent == Decimal("0.000081") and credit.remaining == Decimal("0.000019")
    assert llmledger.reconcile() == []
    llmledger.shutdown()  # a new process: the counters were stored, not held in memory
    llmledger.init(ledger=str(ledger_path))
    [credit] = llmledger.remaining(tenant="prepaid")
    assert credit.spent == Decimal("0.000081") and llmledger.reconcile() == []
    # Replacing the limit recounts its counters from the events and the forgotten spend.
    llmledger.set_limit(usd="0.0002", per="lifetime", tenant="prepaid")  # same scope/window: same id
    [credit] = llmledger.remaining(tenant="prepaid")
    assert credit.spent == Decimal("0.000081")


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
