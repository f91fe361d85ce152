"""Spend limits in the ledger database: definitions, counters, reservations, credits, alerts.

Every operation that decides or changes what has been used runs in one write transaction
(`BEGIN IMMEDIATE` on SQLite), so threads and processes sharing a ledger see one order of events:
a check and its reservation cannot be split by another caller's. Counters are updated in the same
transaction that inserts the events (`apply`), which keeps them equal to the ledger's sums.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmledger.events.event import UsageEvent
from llmledger.limit.model import Limit, scope_of_call
from llmledger.limit.windows import span
from llmledger.storage.engine import IMMEDIATE
from llmledger.storage.tables import alerts, counters, credits, events, limits, meta, reservations

__all__ = ["Decision", "Held", "LimitStore", "Standing", "event_amount", "event_scope"]

_ZERO = Decimal(0)
_VERSION = "limits_version"
_UPSERT_COUNTER = (
    "INSERT INTO llmledger_counters (limit_id, subject, bucket, used) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (limit_id, subject, bucket) DO UPDATE SET used = dadd(used, excluded.used)"
)
_INSERT_RESERVATION = (
    "INSERT INTO llmledger_reservations (reservation_id, limit_id, subject, bucket, amount, expires_us)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def _dec(value: Any) -> Decimal:
    return _ZERO if value is None else value if isinstance(value, Decimal) else Decimal(str(value))


def _named(params: tuple[Any, ...]) -> dict[str, Any]:
    return {f"p{i}": v for i, v in enumerate(params)}


def _us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def event_amount(limit: Limit, event: UsageEvent) -> Decimal:
    """What an event uses of a limit's metric (an unpriced event uses $0: it is flagged instead)."""
    if limit.metric == "usd":
        return event.cost_usd if event.cost_usd is not None else _ZERO
    if limit.metric == "tokens":
        return Decimal(event.input_tokens + event.output_tokens)
    return Decimal(1)


def event_scope(event: UsageEvent) -> dict[str, str | None]:
    """The dimensions an event counts against (its attribution, model and provider)."""
    return scope_of_call(event, event.model, event.provider)


@dataclass(frozen=True, slots=True)
class Held:
    """One limit's share of a reservation request: the counter (`subject`) and the worst case."""

    limit: Limit
    subject: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of `reserve`: allowed (nothing violated) or refused."""

    standings: list[Standing]
    violated: list[tuple[Standing, Decimal]]
    """(standing, amount this call needed) of each hard limit that refused, tightest first."""
    fired: list[tuple[Standing, Decimal]]
    """(standing, threshold) of each alert this call newly crossed."""


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a limit's counter stands now."""

    limit: Limit
    subject: str
    spent: Decimal
    reserved: Decimal
    allowed: Decimal
    """The limit's amount plus any credit topped up."""
    resets_at: datetime | None

    def refuses(self, amount: Decimal) -> bool:
        """Whether `amount` more would not fit (what a blocking limit refuses)."""
        return self.spent + self.reserved + amount > self.allowed

    @property
    def remaining(self) -> Decimal:
        return max(_ZERO, self.allowed - self.spent - self.reserved)


class LimitStore:
    """The limit tables of one ledger database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cached: tuple[int, list[Limit]] = (-1, [])

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
            for table in (counters, reservations, credits, alerts):
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

    # -- the hot path ---------------------------------------------------------------------------

    def reserve(
        self, held: Sequence[Held], reservation_id: str, now: datetime, ttl_seconds: float
    ) -> Decision:
        """Check every hard limit and hold each worst case, atomically.

        If a hard limit would be exceeded, nothing is held and `violated` lists the limits that
        refuse, tightest first. Otherwise every share is held under `reservation_id` and `fired`
        lists the thresholds this call newly crosses. Expired reservations are ignored (and removed).
        """
        now_us = _us(now)
        with self._write() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("DELETE FROM llmledger_reservations WHERE expires_us < ?", (now_us,))
            else:
                conn.execute(sa.delete(reservations).where(reservations.c.expires_us < now_us))
            standings = [self._standing(conn, h.limit, h.subject, now, now_us) for h in held]
            violated = [
                (s, h) for s, h in zip(standings, held, strict=True) if h.limit.blocks and s.refuses(h.amount)
            ]
            if violated:  # hold nothing (only the expired reservations above are dropped)
                violated.sort(key=lambda pair: pair[0].remaining - pair[1].amount)
                return Decision(standings, [(s, h.amount) for s, h in violated], [])
            expires = now_us + int(ttl_seconds * 1_000_000)
            fired: list[tuple[Standing, Decimal]] = []
            for standing, h in zip(standings, held, strict=True):
                bucket = span(h.limit.window, now).last
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql(
                        _INSERT_RESERVATION,
                        (reservation_id, h.limit.id, h.subject, bucket, str(h.amount), expires),
                    )
                else:
                    conn.execute(
                        sa.insert(reservations).values(
                            reservation_id=reservation_id,
                            limit_id=h.limit.id,
                            subject=h.subject,
                            bucket=bucket,
                            amount=h.amount,
                            expires_us=expires,
                        )
                    )
                fired += self._cross(conn, standing, h.amount, bucket, now_us)
        return Decision(standings, [], fired)

    def _cross(
        self, conn: Connection, s: Standing, amount: Decimal, bucket: int, now_us: int
    ) -> list[tuple[Standing, Decimal]]:
        if not s.allowed:
            return []
        before = (s.spent + s.reserved) / s.allowed
        after = (s.spent + s.reserved + amount) / s.allowed
        out = []
        for level in s.limit.thresholds:
            if before < level <= after:
                values = {"limit_id": s.limit.id, "subject": s.subject, "bucket": bucket}
                exists = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(alerts)
                    .where(*(alerts.c[k] == v for k, v in values.items()), alerts.c.threshold == str(level))
                ).scalar()
                if not exists:
                    conn.execute(sa.insert(alerts).values(**values, threshold=str(level), fired_us=now_us))
                    out.append((s, level))
        return out

    def release(self, reservation_ids: Iterable[str]) -> None:
        """Drop reservations (a call that ended without an event, or a guard left unused)."""
        ids = list(reservation_ids)
        if ids:
            with self._write() as conn:
                conn.execute(sa.delete(reservations).where(reservations.c.reservation_id.in_(ids)))

    def standing(self, limit: Limit, subject: str, now: datetime) -> Standing:
        with self.engine.connect() as conn:
            return self._standing(conn, limit, subject, now, _us(now))

    def _standing(self, conn: Connection, limit: Limit, subject: str, now: datetime, now_us: int) -> Standing:
        # One round trip; sums are exact (`dsum` on SQLite), and the statement is plain SQL so the
        # hot path pays no SQL compilation.
        window = span(limit.window, now)
        sql = self._standing_sql(conn)
        params = (
            limit.id,
            subject,
            window.first,
            window.last,
            limit.id,
            subject,
            now_us,
            window.first,
            limit.id,
            subject,
        )
        used, held, granted = conn.exec_driver_sql(sql, params if "?" in sql else _named(params)).one()
        return Standing(
            limit,
            subject,
            _dec(used),
            _dec(held),
            limit.amount + _dec(granted),
            window.resets_at,
        )

    @staticmethod
    def _standing_sql(conn: Connection) -> str:
        if conn.dialect.name == "sqlite":
            total, mark = "dsum", ["?"] * 10
        else:
            total, mark = "sum", [f"%(p{i})s" for i in range(10)]
        return (
            f"SELECT (SELECT {total}(used) FROM llmledger_counters"
            f" WHERE limit_id = {mark[0]} AND subject = {mark[1]}"
            f" AND bucket BETWEEN {mark[2]} AND {mark[3]}),"
            f" (SELECT {total}(amount) FROM llmledger_reservations"
            f" WHERE limit_id = {mark[4]} AND subject = {mark[5]}"
            f" AND expires_us >= {mark[6]} AND bucket >= {mark[7]}),"
            f" (SELECT granted FROM llmledger_credits WHERE limit_id = {mark[8]} AND subject = {mark[9]})"
        )

    # -- called by the ledger, inside the transaction that inserts the events ---------------------

    def apply(
        self, conn: Connection, active: Sequence[Limit], batch: Sequence[UsageEvent], releases: Sequence[str]
    ) -> None:
        """Add the batch's events to the counters and drop the reservations they settle."""
        sqlite = conn.dialect.name == "sqlite"
        if active and batch:
            known = self._known(conn, [e.event_id for e in batch], sqlite)
            totals: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
            for event in batch:
                if event.event_id in known:  # already counted when first written
                    continue
                scope = event_scope(event)
                for limit in active:
                    subject = limit.subject(scope)
                    if subject is not None:
                        bucket = span(limit.window, event.timestamp).last
                        totals[(limit.id, subject, bucket)] += event_amount(limit, event)
            if sqlite and totals:  # one exact upsert per counter (`dadd`: decimal addition in SQLite)
                conn.exec_driver_sql(_UPSERT_COUNTER, [(*key, str(amount)) for key, amount in totals.items()])
            else:
                for (limit_id, subject, bucket), amount in totals.items():
                    self._add(conn, limit_id, subject, bucket, amount)
        if releases:
            ids = list(releases)
            if sqlite:
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    marks = ", ".join("?" * len(chunk))
                    conn.exec_driver_sql(
                        f"DELETE FROM llmledger_reservations WHERE reservation_id IN ({marks})", tuple(chunk)
                    )
            else:
                conn.execute(sa.delete(reservations).where(reservations.c.reservation_id.in_(ids)))

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
        key = (
            (counters.c.limit_id == limit_id)
            & (counters.c.subject == subject)
            & (counters.c.bucket == bucket)
        )
        used = conn.execute(sa.select(counters.c.used).where(key)).scalar()
        if used is None:
            conn.execute(
                sa.insert(counters).values(limit_id=limit_id, subject=subject, bucket=bucket, used=amount)
            )
        else:
            conn.execute(sa.update(counters).where(key).values(used=used + amount))

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
