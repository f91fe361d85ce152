"""Spend limits in the ledger database: definitions, counters, reservations, credits, alerts.

Every operation that decides or changes what has been used runs in one write transaction
(`BEGIN IMMEDIATE` on SQLite), so threads and processes sharing a ledger see one order of events:
a check and its reservation cannot be split by another caller's. Counters are updated in the same
transaction that inserts the events (`apply`), which keeps them equal to the ledger's sums.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmledger.events.event import UsageEvent
from llmledger.limit.model import Alert, Limit, scope_of_call
from llmledger.limit.windows import span
from llmledger.storage import decide
from llmledger.storage.decide import Decision, Held, Standing
from llmledger.storage.engine import IMMEDIATE
from llmledger.storage.hotpath import Exec, HotPath, now_us
from llmledger.storage.tables import alerts, counters, credits, events, forgotten, limits, meta, reservations

__all__ = [
    "Decision",
    "Held",
    "LimitStore",
    "Standing",
    "add_used",
    "bucket_row",
    "event_amount",
    "event_scope",
]
# Decision, Held and Standing live in storage/decide.py; they are re-exported here.

_ZERO = Decimal(0)
_VERSION = "limits_version"
_SWEEP_US = 1_000_000
"""Expired reservations are deleted by a decision at most once a second per process (no standing
counts them: the delete only keeps the table small)."""
_UPSERT_COUNTER = (
    "INSERT INTO llmledger_counters (limit_id, subject, bucket, used) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (limit_id, subject, bucket) DO UPDATE SET used = dadd(used, excluded.used)"
)


def _dec(value: Any) -> Decimal:
    return _ZERO if value is None else value if isinstance(value, Decimal) else Decimal(str(value))


def _us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def event_amount(limit: Limit, event: UsageEvent) -> Decimal:
    """What an event uses of a limit's metric (an unpriced event uses $0: it is flagged instead)."""
    if limit.metric == "usd":
        if event.cost_usd is not None:
            return event.cost_usd
        if limit.fallback_price is not None:  # `unpriced="fallback"`: counted at the limit's price
            per_in, per_out = limit.fallback_price
            return (event.input_tokens * per_in + event.output_tokens * per_out) / 1_000_000
        return _ZERO
    if limit.metric == "tokens":
        return Decimal(event.input_tokens + event.output_tokens)
    return Decimal(1)


def event_scope(event: UsageEvent) -> dict[str, str | None]:
    """The dimensions an event counts against (its attribution, model and provider)."""
    return scope_of_call(event, event.model, event.provider)


class LimitStore:
    """The limit tables of one ledger database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cached: tuple[int, list[Limit]] = (-1, [])
        self.decision_timeout = 0.5
        """Seconds a limit decision may wait for the ledger's write lock (`init(limit_timeout=)`)."""
        self._hot: HotPath | None = None
        self._swept = 0  # when this process last deleted expired reservations (µs)

    # -- definitions ----------------------------------------------------------------------------

    @staticmethod
    def _version(conn: Connection) -> int:
        if conn.dialect.name == "sqlite":
            value = conn.exec_driver_sql(
                "SELECT value FROM llmledger_meta WHERE key = ?", (_VERSION,)
            ).scalar()
        else:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.key == _VERSION)).scalar()
        return int(value or 0)

    @staticmethod
    def _bump(conn: Connection) -> None:
        current = conn.execute(sa.select(meta.c.value).where(meta.c.key == _VERSION)).scalar()
        if current is None:
            conn.execute(sa.insert(meta).values(key=_VERSION, value=1))
        else:
            conn.execute(sa.update(meta).where(meta.c.key == _VERSION).values(value=int(current) + 1))

    def load(self) -> tuple[int, list[Limit]]:
        """(version, every limit), read together (re-decoded only when the version changed)."""
        with self.engine.connect() as conn:
            active = self.active(conn)
            return self._cached[0], list(active)

    def put(self, limit: Limit, now: datetime) -> None:
        """Create or replace a limit, and count what the ledger already holds in its current window."""
        with self._write() as conn:
            conn.execute(sa.delete(limits).where(limits.c.limit_id == limit.id))
            conn.execute(sa.delete(counters).where(counters.c.limit_id == limit.id))
            conn.execute(
                sa.insert(limits).values(limit_id=limit.id, spec=limit.to_dict(), created_us=_us(now))
            )
            for (subject, bucket), used in self._recount(conn, limit, now).items():
                conn.execute(
                    sa.insert(counters).values(limit_id=limit.id, subject=subject, bucket=bucket, used=used)
                )
            self._bump(conn)

    def delete(self, limit_id: str) -> bool:
        """Remove a limit and everything kept for it; False if there was none."""
        with self._write() as conn:
            gone = conn.execute(sa.delete(limits).where(limits.c.limit_id == limit_id)).rowcount
            for table in (counters, forgotten, reservations, credits, alerts):
                conn.execute(sa.delete(table).where(table.c.limit_id == limit_id))
            self._bump(conn)
        return bool(gone)

    def top_up(self, limit: Limit, subject: str, amount: Decimal) -> Decimal:
        """Add credit to a limit's subject; returns the total granted so far."""
        with self._write() as conn:
            where = (credits.c.limit_id == limit.id) & (credits.c.subject == subject)
            granted = conn.execute(sa.select(credits.c.granted).where(where)).scalar()
            if granted is None:
                total = amount
                conn.execute(sa.insert(credits).values(limit_id=limit.id, subject=subject, granted=total))
            else:
                total = granted + amount
                conn.execute(sa.update(credits).where(where).values(granted=total))
        return total

    # -- the hot path (storage/hotpath.py, storage/decide.py) --------------------------------------

    @property
    def hot(self) -> HotPath:
        """The short write transactions of limit decisions (bounded by `decision_timeout`)."""
        hot = self._hot
        if hot is None or hot.timeout != self.decision_timeout:
            hot = self._hot = HotPath(self.engine, self.decision_timeout)
        return hot

    def close(self) -> None:
        """Close the decision connection."""
        if self._hot is not None:
            self._hot.close()

    def reserve(self, held: Sequence[Held], reservation_id: str, ttl_seconds: float) -> Decision:
        """Check every blocking limit and hold each worst case, atomically, at the clock read inside
        the write lock.

        If a blocking limit would be exceeded, nothing is held and `violated` lists the limits that
        refuse, tightest first (and `fired` the refusal alert, once per window). Expired reservations
        are dropped. Raises `LedgerBusy` if the write lock is not had within `decision_timeout`.
        """
        return self.hot.run(self._reserve, held, reservation_id, int(ttl_seconds * 1_000_000))

    def _reserve(self, run: Exec, held: Sequence[Held], reservation_id: str, ttl_us: int) -> Decision:
        now = now_us()  # inside the write lock
        sweep = now - self._swept >= _SWEEP_US or now < self._swept
        decision = decide.reserve(run, held, reservation_id, ttl_us, now, sweep=sweep)
        if sweep:
            self._swept = now
        return decision

    def settle(self, reservation_id: str, amounts: Mapping[str, Decimal]) -> None:
        """A finished call's reservation now holds its actual use (limit id -> amount), until its
        event is written. Raises `LedgerBusy` past `decision_timeout` (the worst case then stays
        held until the event is written: safe)."""
        if amounts:
            self.hot.run(decide.settle, reservation_id, amounts)

    def release(self, reservation_ids: Iterable[str]) -> int:
        """Drop reservations (a call that ended without an event, or a guard left unused); returns
        how many of them were held (not expired), read in the same transaction."""
        ids = list(reservation_ids)
        return self.hot.run(decide.release, ids, now_us()) if ids else 0

    def standing(self, limit: Limit, subject: str, now: datetime) -> Standing:
        """Where `limit` stands for `subject` at `now` (a read; reserves nothing)."""
        with self.engine.connect() as conn:
            return decide.standing(Exec.on(conn), limit, subject, _us(now))

    # -- called by the ledger, inside the transaction that inserts the events ---------------------

    def apply(
        self, conn: Connection, active: Sequence[Limit], batch: Sequence[UsageEvent], releases: Sequence[str]
    ) -> list[Alert]:
        """Add the batch's events to the counters and drop the reservations they settle.

        Returns the threshold alerts the committed spend crossed (recorded once per limit, subject
        and window: the caller announces them after the transaction commits).
        """
        sqlite = conn.dialect.name == "sqlite"
        fired: list[Alert] = []
        if active and batch:
            known = self._known(conn, [e.event_id for e in batch], sqlite)
            totals: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
            for event in batch:
                if event.event_id in known:  # already counted when first written, or earlier here
                    continue
                known.add(event.event_id)  # an id twice in one batch is stored once: counted once
                scope = event_scope(event)
                for limit in active:
                    subject = limit.subject(scope)
                    if subject is not None:
                        bucket = span(limit.window, event.timestamp).last
                        totals[(limit.id, subject, bucket)] += event_amount(limit, event)
            run = Exec.on(conn)
            by_id = {limit.id: limit for limit in active}
            at = now_us()
            for key in sorted(totals):  # each counter: its alerts (spend before), then the addition
                fired += decide.commit_alerts(run, by_id, key, totals[key], at)
                if sqlite:  # an exact upsert (`dadd`: decimal addition in SQLite)
                    run(_UPSERT_COUNTER, (*key, str(totals[key])))
                else:
                    self._add(conn, *key, totals[key])
        if releases:
            decide.release(Exec.on(conn), releases)
        return fired

    @staticmethod
    def _known(conn: Connection, ids: list[str], sqlite: bool) -> set[str]:
        if not sqlite:
            return set(conn.execute(sa.select(events.c.event_id).where(events.c.event_id.in_(ids))).scalars())
        known: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = conn.exec_driver_sql(
                f"SELECT event_id FROM llmledger_events WHERE event_id IN ({marks})", tuple(chunk)
            )
            known.update(r[0] for r in rows)
        return known

    @staticmethod
    def _add(conn: Connection, limit_id: str, subject: str, bucket: int, amount: Decimal) -> None:
        add_used(conn, counters, limit_id, subject, bucket, amount)

    def _recount(self, conn: Connection, limit: Limit, now: datetime) -> dict[tuple[str, int], Decimal]:
        from llmledger.storage.reconcile import recount

        return recount(conn, limit, now)

    def reconcile(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Compare every limit's counters for its current window with the ledger's events.

        Returns one row per (limit, subject, bucket) that differs; an empty list proves they agree.
        """
        from llmledger.storage.reconcile import reconcile

        return reconcile(self, now or datetime.now(timezone.utc))

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            yield conn

    def active(self, conn: Connection) -> list[Limit]:
        """The limits, reloaded only when another writer changed them (one small query otherwise)."""
        version = self._version(conn)
        if version != self._cached[0]:
            rows = conn.execute(sa.select(limits.c.spec).order_by(limits.c.created_us)).scalars()
            self._cached = (version, [Limit.from_dict(spec) for spec in rows])
        return self._cached[1]


def bucket_row(table: sa.Table, limit_id: str, subject: str, bucket: int) -> sa.ColumnElement[bool]:
    """The row of (limit, subject, bucket) in `counters` or `forgotten`."""
    return (table.c.limit_id == limit_id) & (table.c.subject == subject) & (table.c.bucket == bucket)


def add_used(
    conn: Connection, table: sa.Table, limit_id: str, subject: str, bucket: int, amount: Decimal
) -> None:
    """Add `amount` to the `used` of (limit, subject, bucket) in `table` (`counters` or `forgotten`),
    creating the row at `amount`."""
    key = bucket_row(table, limit_id, subject, bucket)
    used = conn.execute(sa.select(table.c.used).where(key)).scalar()
    if used is None:
        conn.execute(sa.insert(table).values(limit_id=limit_id, subject=subject, bucket=bucket, used=amount))
    else:
        conn.execute(sa.update(table).where(key).values(used=used + amount))
