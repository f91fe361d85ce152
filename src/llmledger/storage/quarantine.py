"""The quarantine: events the ledger could not store, kept with the reason until retried.

The writer moves a row here when storing it fails for a reason of its own (a value no store holds),
so that everything else in its batch is written. `llmledger quarantine list` shows them;
`llmledger quarantine retry` validates each again and writes those that now pass (after a fix, or
an upgrade with wider bounds), leaving the others with their new reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.errors import InvalidEventError
from llmledger.events.event import UsageEvent
from llmledger.storage.rows import from_us, to_us
from llmledger.storage.tables import quarantine

if TYPE_CHECKING:
    from llmledger.storage.ledger import Ledger

__all__ = ["Quarantined", "count", "drop", "get", "insert", "record_of", "retry", "rows"]

_MAX_RECORD = 1 << 20


@dataclass(frozen=True)
class Quarantined:
    """One quarantined row: `record` is the event's JSON wire form (or what could be kept of it)."""

    id: int
    event_id: str | None
    quarantined_at: datetime
    reason: str
    record: str


def record_of(event: Any) -> str:
    """The JSON text kept for an event (ASCII-escaped: lone surrogates and NUL survive any store)."""
    try:
        text = json.dumps(event.to_dict(), ensure_ascii=True, default=str)
    except Exception:
        text = json.dumps({"event_id": getattr(event, "event_id", None), "repr": repr(event)[:_MAX_RECORD]})
    if len(text) > _MAX_RECORD:
        text = json.dumps({"event_id": getattr(event, "event_id", None), "truncated": text[:_MAX_RECORD]})
    return text


def insert(conn: Connection, items: Sequence[tuple[str | None, str, str]]) -> None:
    """Quarantine `(event_id, reason, record)` rows (inside the caller's transaction)."""
    if items:
        now = to_us(datetime.now(timezone.utc))
        conn.execute(
            sa.insert(quarantine),
            [
                {
                    "event_id": (eid or "")[:64] or None,
                    "quarantined_us": now,
                    "reason": reason[:4000],
                    "record": rec,
                }
                for eid, reason, rec in items
            ],
        )


def rows(ledger: Ledger, limit: int | None = 100) -> list[Quarantined]:
    """Quarantined rows, oldest first."""
    query = sa.select(quarantine).order_by(quarantine.c.id)
    if limit is not None:
        query = query.limit(limit)
    with ledger.engine.connect() as conn:
        return [
            Quarantined(r.id, r.event_id, from_us(r.quarantined_us), r.reason, r.record)
            for r in conn.execute(query)
        ]


def get(ledger: Ledger, row_id: int) -> Quarantined | None:
    """The quarantined row with this id, or None."""
    if not 0 < row_id < 2**63:  # beyond any id (and SQL's integers)
        return None
    with ledger.engine.connect() as conn:
        r = conn.execute(sa.select(quarantine).where(quarantine.c.id == row_id)).first()
    return None if r is None else Quarantined(r.id, r.event_id, from_us(r.quarantined_us), r.reason, r.record)


def drop(ledger: Ledger, row_id: int) -> bool:
    """Discard a quarantined row for good (an event that can never be stored); False if none."""
    if not 0 < row_id < 2**63:
        return False
    with ledger.engine.begin() as conn:
        return bool(conn.execute(sa.delete(quarantine).where(quarantine.c.id == row_id)).rowcount)


def count(ledger: Ledger) -> int:
    """How many rows the quarantine holds."""
    with ledger.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar_one())


def retry(ledger: Ledger, ids: Iterable[int] | None = None) -> tuple[int, int]:
    """Validate quarantined rows again (all, or `ids`); write and remove those that pass, keep the
    others with their new reason. Returns (written, still quarantined)."""
    picked = [r for r in rows(ledger, None) if ids is None or r.id in set(ids)]
    written = kept = 0
    for row in picked:
        try:
            event = UsageEvent.from_json(row.record)
        except InvalidEventError as exc:
            reason = str(exc)
            with ledger.engine.begin() as conn:
                conn.execute(
                    sa.update(quarantine).where(quarantine.c.id == row.id).values(reason=reason[:4000])
                )
            kept += 1
            continue
        try:
            ledger.write([event])
        except Exception as exc:
            with ledger.engine.begin() as conn:
                conn.execute(
                    sa.update(quarantine)
                    .where(quarantine.c.id == row.id)
                    .values(reason=f"{type(exc).__name__}: {exc}"[:4000])
                )
            kept += 1
            continue
        with ledger.engine.begin() as conn:
            conn.execute(sa.delete(quarantine).where(quarantine.c.id == row.id))
        written += 1
    return written, kept
