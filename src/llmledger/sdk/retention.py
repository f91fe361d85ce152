"""`delete_events()`: retention (events before a date) and erasure requests (a tenant's or user's)."""

from __future__ import annotations

from llmledger._time import TimeBound, parse_time_bound
from llmledger.sdk import runtime as _rt

__all__ = ["delete_events"]


def delete_events(*, before: TimeBound = None, tenant: str | None = None, user: str | None = None) -> int:
    """Delete the events matching ALL the criteria given; returns how many were deleted.

    `before`: a datetime, a date, an ISO string or a duration (`"365d"`: older than a year);
    `tenant` / `user`: every event of that tenant / user (an erasure request). At least one is
    required. Pending events are written first. The spend-limit counters keep what the deleted
    events had spent (recorded as forgotten spend in the same transaction: no prepaid credit is
    refunded, no budget reset), and `reconcile()` stays clean. Raises `InvalidQueryError` naming
    the bad argument.
    """
    cutoff = parse_time_bound(before)
    from llmledger.storage.retention import delete_events as _delete

    runtime = _rt.current()
    runtime.writer.flush(30.0)
    ledger = runtime.ledger
    return _delete(ledger.engine, ledger.limits, before=cutoff, tenant=tenant, user=user)
