"""Which subjects (counters) a limit has now: e.g. each user of a `user="*"` limit that has spent in
the current window, holds a reservation, or was given credit."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmledger.limit.model import Limit
from llmledger.limit.windows import span
from llmledger.storage.rows import to_us
from llmledger.storage.tables import counters, credits, reservations

__all__ = ["subjects"]


def subjects(engine: Engine, limit: Limit, now: datetime, most: int = 1000) -> list[str]:
    """The subjects of `limit` with spend in the window containing `now`, a live reservation or
    credit; sorted, at most `most`."""
    window = span(limit.window, now)
    spent = sa.select(counters.c.subject).where(
        counters.c.limit_id == limit.id, counters.c.bucket.between(window.first, window.last)
    )
    held = sa.select(reservations.c.subject).where(
        reservations.c.limit_id == limit.id, reservations.c.expires_us >= to_us(now)
    )
    granted = sa.select(credits.c.subject).where(credits.c.limit_id == limit.id)
    union = sa.union(spent, held, granted).subquery()
    query = sa.select(union.c.subject).order_by(union.c.subject).limit(most)
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]
