"""The ledger: durable, idempotent storage of usage events, and the queries reports are built on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llmledger.errors import LedgerError
from llmledger.events.event import UsageEvent
from llmledger.limit.model import Alert
from llmledger.storage import migrate
from llmledger.storage import quarantine as _quarantine
from llmledger.storage.engine import IMMEDIATE, create_ledger_engine, normalize_url
from llmledger.storage.limits import LimitStore
from llmledger.storage.queries import (
    SUM_COLUMNS,
    UsageRow,
    cost_sum,
    group_expression,
    same_models,
    where_clause,
)
from llmledger.storage.rows import SQLITE_COLUMNS, event_to_row, row_to_event, sqlite_tuples
from llmledger.storage.tables import events

__all__ = ["Ledger"]


class Ledger:
    """Usage events in a SQL database (SQLite file by default, PostgreSQL at scale).

    Opening a ledger applies pending schema migrations. Writes are idempotent by `event_id`.
    """

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = create_ledger_engine(self.url)
        self.dialect = self.engine.dialect.name
        try:
            migrate.upgrade(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            raise LedgerError(f"cannot open the ledger at {self.url}: {exc}") from exc
        self.limits = LimitStore(self.engine)
        insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        self._insert = insert(events).on_conflict_do_nothing(index_elements=["event_id"])
        # SQLite fast path: the same Core statement, compiled once, fed driver-ready tuples.
        columns = ", ".join(f'"{c}"' for c in SQLITE_COLUMNS)
        marks = ", ".join("?" for _ in SQLITE_COLUMNS)
        self._sqlite_insert = (
            f"INSERT INTO {events.name} ({columns}) VALUES ({marks}) ON CONFLICT (event_id) DO NOTHING"
        )

    def write(
        self,
        batch: Sequence[UsageEvent],
        releases: Sequence[str] = (),
        quarantined: Sequence[tuple[str | None, str, str]] = (),
    ) -> list[Alert]:
        """Store events in one transaction; events already stored (same `event_id`) are skipped.

        In the same transaction, the spend-limit counters count the new events, the reservations
        in `releases` (those the events settle) are dropped, so counters always equal the events,
        and `quarantined` rows `(event_id, reason, record JSON)` are kept in the quarantine.
        Returns the threshold alerts the committed spend crossed (each recorded once, across
        processes): announce them (`on_threshold`) once this returns.
        """
        if not batch and not releases and not quarantined:
            return []
        with self.engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            _quarantine.insert(conn, quarantined)
            alerts = self.limits.apply(conn, self.limits.active(conn), batch, releases)
            if not batch:
                return alerts
            if self.dialect == "sqlite":
                conn.exec_driver_sql(self._sqlite_insert, sqlite_tuples(batch))
            else:
                conn.execute(self._insert, [event_to_row(e) for e in batch])
        return alerts

    def events(
        self,
        filters: Mapping[str, Any],
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = True,
        after: tuple[int, str] | None = None,
    ) -> list[UsageEvent]:
        """Events matching the filters, newest first by default.

        `after`: a keyset cursor, the (timestamp in microseconds, event_id) of the last event of the
        previous page: the page goes on from there without counting the rows before it (no OFFSET).
        """
        order = events.c.ts_us.desc() if newest_first else events.c.ts_us.asc()
        with self.engine.connect() as conn:
            clauses = where_clause(same_models(conn, filters), since, until)
            if after is not None:
                ts_us, event_id = after
                beyond = events.c.ts_us < ts_us if newest_first else events.c.ts_us > ts_us
                clauses.append(sa.or_(beyond, sa.and_(events.c.ts_us == ts_us, events.c.event_id > event_id)))
            query = sa.select(events).where(*clauses).order_by(order, events.c.event_id)
            if limit is not None:
                query = query.limit(limit)
            return [row_to_event(row) for row in conn.execute(query).mappings()]

    def usage(
        self,
        group_by: Sequence[str],
        filters: Mapping[str, Any],
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """Requests, token sums and exact cost per group, most expensive first."""
        keys = [group_expression(key, self.dialect).label(f"g{i}") for i, key in enumerate(group_by)]

        def run(token_sum: Any) -> list[Any]:
            aggregates = [
                sa.func.count().label("requests"),
                *[sa.func.coalesce(token_sum(events.c[c]), 0).label(c) for c in SUM_COLUMNS],
                cost_sum(self.dialect).label("cost_usd"),
                sa.func.sum(sa.case((events.c.cost_usd.is_(None), 1), else_=0)).label("unpriced"),
                sa.func.sum(sa.case((events.c.status != "ok", 1), else_=0)).label("errors"),
            ]
            with self.engine.connect() as conn:
                query = sa.select(*keys, *aggregates).where(
                    *where_clause(same_models(conn, filters), since, until)
                )
                if keys:
                    query = query.group_by(*keys)
                return list(conn.execute(query).mappings())

        try:
            result = run(sa.func.sum)
        except sa.exc.OperationalError as exc:
            # Counts are bounded (`MAX_TOKENS`), so sums fit 64 bits; a ledger written by an older
            # version may hold larger ones: sum those exactly in Python rather than fail.
            if self.dialect != "sqlite" or "integer overflow" not in str(exc):
                raise
            result = run(sa.func.isum)
        rows = [
            UsageRow(
                group={key: r[f"g{i}"] for i, key in enumerate(group_by)},
                requests=int(r["requests"]),
                **{c: int(r[c] or 0) for c in SUM_COLUMNS},
                cost_usd=Decimal(str(r["cost_usd"])) if r["cost_usd"] is not None else Decimal(0),
                unpriced_requests=int(r["unpriced"] or 0),
                errors=int(r["errors"] or 0),
            )
            for r in result
            if r["requests"]
        ]
        rows.sort(key=lambda row: (-row.cost_usd, -row.requests, tuple(str(v) for v in row.group.values())))
        return rows

    def spend(
        self, filters: Mapping[str, Any], since: datetime | None = None, until: datetime | None = None
    ) -> Decimal:
        """The exact total cost of matching events (unpriced events count as unknown, not $0)."""
        with self.engine.connect() as conn:
            query = sa.select(cost_sum(self.dialect)).where(
                *where_clause(same_models(conn, filters), since, until)
            )
            value = conn.execute(query).scalar()
        return Decimal(str(value)) if value is not None else Decimal(0)

    def by_ids(self, event_ids: Sequence[str]) -> dict[str, UsageEvent]:
        """The stored events among `event_ids`, by id."""
        found: dict[str, UsageEvent] = {}
        ids = list(event_ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                query = sa.select(events).where(events.c.event_id.in_(ids[i : i + 500]))
                for row in conn.execute(query).mappings():
                    event = row_to_event(row)
                    found[event.event_id] = event
        return found

    def existing(self, event_ids: Sequence[str]) -> set[str]:
        """Which of `event_ids` the ledger already holds."""
        with self.engine.connect() as conn:
            return LimitStore._known(conn, list(event_ids), self.dialect == "sqlite")

    def count(self) -> int:
        """How many events the ledger holds."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())

    def checkpoint(self) -> None:
        """SQLite: copy the WAL into the database file and truncate it (a no-op elsewhere).

        The WAL is only reset by a checkpoint, and SQLite checkpoints on its own past 1,000 pages
        (4 MB): on a nearly full disk the WAL fills it first and every later write fails. The
        writer calls this after a "disk full" error, so that freed space is used again."""
        if self.dialect == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Release database connections."""
        self.limits.close()
        self.engine.dispose()
