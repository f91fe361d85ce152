"""Data retention and erasure: delete events before a date, or every event of a tenant or user.

The events go in ONE write transaction (`BEGIN IMMEDIATE` on SQLite) that also takes their amounts
off the spend-limit counters that counted them and off the rollups, so both keep equalling the
ledger's events (`reconcile()` stays clean). Deleting events therefore gives their spend back to the
limits whose windows still hold them, prepaid (lifetime) credits included: the ledger no longer knows
about it.
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
from llmledger.storage.limits import LimitStore, event_amount, event_scope
from llmledger.storage.rows import row_to_event, to_us
from llmledger.storage.tables import counters, events

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
        _take_off(conn, taken)
        _rollups.subtract_rows(conn, gone)  # the rollups keep equalling the events
    return deleted


def _count_off(active: list[Limit], event: UsageEvent, taken: dict[tuple[str, str, int], Decimal]) -> None:
    scope = event_scope(event)
    for limit in active:
        subject = limit.subject(scope)
        if subject is not None:
            taken[(limit.id, subject, span(limit.window, event.timestamp).last)] += event_amount(limit, event)


def _take_off(conn: Connection, taken: dict[tuple[str, str, int], Decimal]) -> None:
    """Subtract from the counters that exist (a bucket older than its limit was never counted)."""
    for (limit_id, subject, bucket), amount in taken.items():
        key = (
            (counters.c.limit_id == limit_id)
            & (counters.c.subject == subject)
            & (counters.c.bucket == bucket)
        )
        used = conn.execute(sa.select(counters.c.used).where(key)).scalar()
        if used is None:
            continue
        left = max(Decimal(0), used - amount)
        if left == 0:
            conn.execute(sa.delete(counters).where(key))
        else:
            conn.execute(sa.update(counters).where(key).values(used=left))
