"""The webhook delivery queue in the ledger: alerts recorded once per webhook and alert (across
replicas), claimed by one server at a time, retried until delivered.

A claim is a lease: `next_us` moves to the end of the lease, so a server that dies mid-delivery
leaves the row to be claimed again when the lease runs out (a receiver may then see it twice: the
delivery id is stable, dedupe on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from llmledger.storage.tables import webhook_deliveries as table

__all__ = ["Delivery", "DeliveryStore"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert for one webhook."""

    delivery_id: str
    hook: str
    alert_key: str
    payload: str
    attempts: int = 0
    status: str = "pending"


class DeliveryStore:
    """The `llmledger_webhook_deliveries` table of one ledger."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, deliveries: Sequence[Delivery], now_us: int) -> int:
        """Record new deliveries, due now; one already recorded for the same webhook and alert is
        left as it is. Returns how many were new."""
        if not deliveries:
            return 0
        rows = [
            {
                "delivery_id": d.delivery_id,
                "hook": d.hook,
                "alert_key": d.alert_key,
                "payload": d.payload,
                "status": "pending",
                "attempts": 0,
                "next_us": now_us,
                "created_us": now_us,
            }
            for d in deliveries
        ]
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).on_conflict_do_nothing(index_elements=["hook", "alert_key"])
        added = 0
        with self.engine.begin() as conn:
            for row in rows:
                added += conn.execute(statement, row).rowcount
        return added

    def claim(self, now_us: int, lease_us: int, most: int = 20) -> list[Delivery]:
        """Take up to `most` due deliveries for `lease_us` (rows another server claimed first are
        skipped)."""
        due = (
            sa.select(
                table.c.delivery_id,
                table.c.hook,
                table.c.alert_key,
                table.c.payload,
                table.c.attempts,
                table.c.next_us,
            )
            .where(table.c.status == "pending", table.c.next_us <= now_us)
            .order_by(table.c.next_us)
            .limit(most)
        )
        taken: list[Delivery] = []
        with self.engine.begin() as conn:
            for row in conn.execute(due).all():
                moved = conn.execute(
                    table.update()
                    .where(table.c.delivery_id == row.delivery_id, table.c.next_us == row.next_us)
                    .where(table.c.status == "pending")
                    .values(next_us=now_us + lease_us)
                )
                if moved.rowcount == 1:
                    taken.append(
                        Delivery(row.delivery_id, row.hook, row.alert_key, row.payload, row.attempts)
                    )
        return taken

    def delivered(self, delivery_id: str, attempts: int, now_us: int) -> None:
        """Mark a delivery done."""
        self._set(delivery_id, status="delivered", attempts=attempts, done_us=now_us, last_error=None)

    def retry(self, delivery_id: str, attempts: int, next_us: int, error: str) -> None:
        """Try again at `next_us`."""
        self._set(delivery_id, attempts=attempts, next_us=next_us, last_error=error[:256])

    def failed(self, delivery_id: str, attempts: int, now_us: int, error: str) -> None:
        """Give up (the last attempt failed)."""
        self._set(delivery_id, status="failed", attempts=attempts, done_us=now_us, last_error=error[:256])

    def all(self) -> list[Delivery]:
        """Every delivery, oldest first (for tests and `doctor`-style checks)."""
        query = sa.select(table).order_by(table.c.created_us, table.c.delivery_id)
        with self.engine.connect() as conn:
            return [
                Delivery(r.delivery_id, r.hook, r.alert_key, r.payload, r.attempts, r.status)
                for r in conn.execute(query)
            ]

    def _set(self, delivery_id: str, **values: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(table.update().where(table.c.delivery_id == delivery_id).values(**values))
