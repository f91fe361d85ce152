"""Recompute spend-limit counters from the ledger's events, and compare them with the stored ones."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.limit.model import Limit
from llmledger.limit.windows import ROLLING_SLOTS, span
from llmledger.storage.rows import row_to_event
from llmledger.storage.tables import counters, events, forgotten

if TYPE_CHECKING:
    from llmledger.storage.limits import LimitStore

__all__ = ["reconcile", "recount"]

_COLUMNS = ("tenant", "user", "org", "feature", "agent", "model", "provider")


def recount(conn: Connection, limit: Limit, now: datetime) -> dict[tuple[str, int], Decimal]:
    """What each (subject, bucket) of `limit`'s window at `now` should hold: the events, plus the
    spend of deleted events (`llmledger_forgotten_spend`, see `retention`)."""
    from llmledger.storage.limits import event_amount, event_scope

    window = span(limit.window, now)
    query = sa.select(events)
    if limit.window.kind == "rolling":
        query = query.where(
            events.c.ts_us >= window.first * max(1, limit.window.seconds // ROLLING_SLOTS) * 10**6
        )
    elif limit.window.kind != "lifetime":
        query = query.where(events.c.ts_us >= window.first * 10**6)
    for key, value in limit.scope:
        if value != "*" and key in _COLUMNS and key != "model":  # a model matches by identity, below
            query = query.where(events.c[key] == value)
    totals: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for row in conn.execute(query).mappings():
        event = row_to_event(row)
        subject = limit.subject(event_scope(event))
        if subject is not None:
            totals[(subject, span(limit.window, event.timestamp).last)] += event_amount(limit, event)
    deleted = sa.select(forgotten.c.subject, forgotten.c.bucket, forgotten.c.used).where(
        forgotten.c.limit_id == limit.id, forgotten.c.bucket.between(window.first, window.last)
    )
    for subject, bucket, used in conn.execute(deleted):
        totals[(subject, bucket)] += used
    return dict(totals)


def reconcile(store: LimitStore, now: datetime) -> list[dict[str, Any]]:
    """Every (limit, subject, bucket) of the current windows whose counter differs from the events."""
    _, active = store.load()
    out = []
    with store.engine.connect() as conn:
        for limit in active:
            window = span(limit.window, now)
            expected = recount(conn, limit, now)
            rows = conn.execute(
                sa.select(counters.c.subject, counters.c.bucket, counters.c.used).where(
                    counters.c.limit_id == limit.id, counters.c.bucket.between(window.first, window.last)
                )
            )
            stored = {(r.subject, r.bucket): r.used for r in rows}
            for key in sorted(set(expected) | set(stored)):
                want, have = expected.get(key, Decimal(0)), stored.get(key, Decimal(0))
                if want != have:
                    row = {
                        "limit_id": limit.id,
                        "subject": key[0],
                        "bucket": key[1],
                        "ledger": want,
                        "counter": have,
                    }
                    out.append(row)
    return out
