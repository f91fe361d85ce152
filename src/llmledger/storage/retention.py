"""Data retention and erasure: delete events before a date, or every event of a tenant or user.

The events go in ONE write transaction (`BEGIN IMMEDIATE` on SQLite) that also takes them off the
rollups (which keep equalling the ledger's events) and records what they had used of each limit's
current window buckets in `llmledger_forgotten_spend`: money spent stays spent, so the spend-limit
counters keep it (a retention run never refunds a prepaid credit, an erasure never resets a user's
daily budget), and `reconcile()` counts it beside the remaining events (it stays clean). The
forgotten rows name the limit's subject (e.g. `user=u1`) for as long as the limit keeps its
counter; deleting the limit deletes them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from llmledger.errors import InvalidQueryError
from llmledger.events.event import UsageEvent
from llmledger.limit.model import Limit
from llmledger.limit.windows import span
from llmledger.storage import rollups as _rollups
from llmledger.storage.engine import IMMEDIATE
from llmledger.storage.limits import LimitStore, add_used, bucket_row, event_amount, event_scope
from llmledger.storage.rows import row_to_event, to_us
from llmledger.storage.tables import counters, events, forgotten

__all__ = ["delete_events"]

_CHUNK = 500


def _conditions(before: datetime | None, tenant: str | None, user: str | None) -> list[ColumnElement[bool]]:
    for name, value in (("tenant", tenant), ("user", user)):
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidQueryError(f"{name} must be a non-empty string, got {value!r}")
    if before is None and tenant is None and user is None:
        raise InvalidQueryError("say which events to delete: before=<date>, tenant=... and/or user=...")
    clauses: list[ColumnElement[bool]] = []
    if before is not None:
        clauses.append(events.c.ts_us < to_us(before))
    if tenant is not None:
        clauses.append(events.c.tenant == tenant)
    if user is not None:
        clauses.append(events.c.user == user)
    return clauses


def delete_events(
    engine: Engine,
    store: LimitStore,
    *,
    before: datetime | None = None,
    tenant: str | None = None,
    user: str | None = None,
) -> int:
    """Delete the events matching ALL the criteria given (at least one); returns how many went.

    Raises `InvalidQueryError` when no criterion is given or one is empty.
    """
    clauses = _conditions(before, tenant, user)
    deleted = 0
    with engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
        active = store.active(conn)
        taken: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
        ids: list[str] = []
        gone = []
        for row in conn.execute(sa.select(events).where(*clauses)).mappings():
            ids.append(row["event_id"])
            gone.append(row)
            if active:
                _count_off(active, row_to_event(row), taken)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            deleted += conn.execute(sa.delete(events).where(events.c.event_id.in_(chunk))).rowcount
        _remember(conn, taken)
        _rollups.subtract_rows(conn, gone)  # the rollups keep equalling the events
    return deleted


def _count_off(active: list[Limit], event: UsageEvent, taken: dict[tuple[str, str, int], Decimal]) -> None:
    scope = event_scope(event)
    for limit in active:
        subject = limit.subject(scope)
        if subject is not None:
            taken[(limit.id, subject, span(limit.window, event.timestamp).last)] += event_amount(limit, event)


def _remember(conn: Connection, taken: dict[tuple[str, str, int], Decimal]) -> None:
    """Add the deleted events' amounts to the forgotten spend of each counter that counted them (a
    bucket with no counter was never counted: older than its limit, or outside its windows)."""
    for (limit_id, subject, bucket), amount in taken.items():
        counted = bucket_row(counters, limit_id, subject, bucket)
        if amount and conn.execute(sa.select(counters.c.used).where(counted)).scalar() is not None:
            add_used(conn, forgotten, limit_id, subject, bucket, amount)
