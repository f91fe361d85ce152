"""The ledger: durable, idempotent storage of usage events, and the queries reports are built on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llmledger._urls import redact_url
from llmledger.errors import LedgerError
from llmledger.events.event import UsageEvent
from llmledger.limit.model import Alert
from llmledger.storage import migrate
from llmledger.storage import quarantine as _quarantine
from llmledger.storage import rollups as _rollups
from llmledger.storage import rollups_sql as _rollups_sql
from llmledger.storage.engine import IMMEDIATE, create_ledger_engine, normalize_url
from llmledger.storage.limits import LimitStore
from llmledger.storage.queries import UsageRow, group_expression, same_models, where_clause
from llmledger.storage.rows import SQLITE_COLUMNS, event_to_row, row_to_event, sqlite_tuples
from llmledger.storage.tables import events
from llmledger.storage.usage import model_pairs, usage_rows

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
            raise LedgerError(f"cannot open the ledger at {redact_url(self.url)}: {exc}") from exc
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
        stored: list[UsageEvent] | None = None,
    ) -> list[Alert]:
        """Store events in one transaction; events already stored (same `event_id`) are skipped.

        In the same transaction, the spend-limit counters count the new events, the reservations
        in `releases` (those the events settle) are dropped, so counters always equal the events,
        and `quarantined` rows `(event_id, reason, record JSON)` are kept in the quarantine.
        Returns the threshold alerts the committed spend crossed (each recorded once, across
        processes): announce them (`on_threshold`) once this returns. `stored`: a list the events
        this write newly stored (the first of each id the ledger did not hold) are appended to.
        """
        if not batch and not releases and not quarantined:
            return []
        once = list({e.event_id: e for e in reversed(batch)}.values())  # the first of an id wins
        # PostgreSQL: the rollup rows are summed before taking the write lock (nothing waits for
        # it); SQLite sums the inserted rows itself (`rollups_sql`), much faster than Python
        ready = None if self.dialect == "sqlite" else _rollups.prepare(once)
        with self.engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            _quarantine.insert(conn, quarantined)
            alerts = self.limits.apply(conn, self.limits.active(conn), batch, releases)
            if not batch:
                return alerts
            new = self._new(conn, once)  # under the write lock: exact (the limit counters rely on it too)
            summed = False
            if self.dialect == "sqlite":
                last = _rollups_sql.last_rowid(conn)
                conn.exec_driver_sql(self._sqlite_insert, sqlite_tuples(batch))
                fitting = _rollups_sql.fits(e.cost_usd for e in new)  # else the Python path sums them
                summed = not new or (fitting and _rollups_sql.add_since(conn, last, len(new), fitting))
            else:  # a plain executemany: psycopg pipelines one cached one-row statement (`RETURNING`
                # made one statement of 500 x 41 parameters, re-parsed by psycopg in Python every
                # time: ~400 vs ~65 us CPU per event)
                conn.execute(self._insert, [event_to_row(e) for e in batch])
            if not summed:  # the same transaction: rollups always equal the events
                _rollups.add_events(conn, new, ready if len(new) == len(once) else None)
        if stored is not None:
            stored.extend(new)
        return alerts

    def _new(self, conn: sa.Connection, once: Sequence[UsageEvent]) -> list[UsageEvent]:
        """The events of `once` (distinct ids) the ledger does not hold yet."""
        known = LimitStore._known(conn, [e.event_id for e in once], self.dialect == "sqlite")
        return [e for e in once if e.event_id not in known] if known else list(once)

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
            clauses = where_clause(self._models(conn, filters), since, until)
            if after is not None:
                ts_us, event_id = after
                beyond = events.c.ts_us < ts_us if newest_first else events.c.ts_us > ts_us
                # the bound alone first: a range on the timestamp index (SQLite and PostgreSQL do not
                # use an index for the OR on its own, and scanned every event before the cursor)
                clauses.append(events.c.ts_us <= ts_us if newest_first else events.c.ts_us >= ts_us)
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
        *,
        use_rollups: bool = True,
    ) -> list[UsageRow]:
        """Requests, token sums and exact cost per group, most expensive first.

        Answered from the rollups when the grouping and filters allow (`llmledger.storage.usage`),
        else from the events; `use_rollups=False` always reads the events (same result)."""
        for key in group_by:
            group_expression(key, self.dialect)  # raises InvalidQueryError for an unknown key
        with self.engine.connect() as conn:
            wanted = self._models(conn, filters)
            where_clause(wanted, since, until)  # raises InvalidQueryError for a bad filter
            return usage_rows(conn, group_by, wanted, since, until, use_rollups=use_rollups)[0]

    def _models(self, conn: sa.Connection, filters: Mapping[str, Any]) -> Mapping[str, Any]:
        return same_models(conn, filters, pairs=model_pairs(conn))

    def spend(
        self, filters: Mapping[str, Any], since: datetime | None = None, until: datetime | None = None
    ) -> Decimal:
        """The exact total cost of matching events (unpriced events count as unknown, not $0)."""
        rows = self.usage((), filters, since, until)
        return rows[0].cost_usd if rows else Decimal(0)

    def rebuild_rollups(self) -> int:
        """Recompute every rollup row from the events (one write transaction); returns the row count."""
        with self.engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            return _rollups.rebuild(conn)

    def check_rollups(self) -> list[dict[str, Any]]:
        """Rollup rows that differ from the events' sums (empty: they agree); see `rollups.check`."""
        with self.engine.connect() as conn, conn.begin():
            return _rollups.check(conn)

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
