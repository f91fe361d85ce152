"""The statements of a limit decision, run inside one write transaction (`hotpath.HotPath.run`).

- `reserve`: read the clock (inside the lock), drop expired reservations, compute each limit's
  standing, and either hold every worst case or refuse (recording the 100 % alert of the tightest
  refusing limit, once per window).
- `settle`: a finished call's reservation now holds its actual use (until its event is written).
- `release`: drop reservations.
- `commit_alerts`: called while a batch's events are added to the counters: the thresholds the
  COMMITTED spend crosses, each recorded once per limit, subject and window across processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from llmledger.limit.model import Alert, Limit, Window
from llmledger.limit.windows import ROLLING_SLOTS, Span, span
from llmledger.storage.hotpath import Exec
from llmledger.storage.rows import from_us, to_us

__all__ = [
    "STANDING_SQL",
    "Decision",
    "Held",
    "Standing",
    "alert_key",
    "commit_alerts",
    "level_key",
    "release",
    "reserve",
    "settle",
    "span_at",
    "standing",
]

_ZERO = Decimal(0)
ONE = Decimal(1)
STANDING_SQL = (
    "SELECT (SELECT dsum(used) FROM llmledger_counters"
    " WHERE limit_id = ? AND subject = ? AND bucket BETWEEN ? AND ?),"
    " (SELECT dsum(amount) FROM llmledger_reservations"
    " WHERE limit_id = ? AND subject = ? AND expires_us >= ?),"
    " (SELECT granted FROM llmledger_credits WHERE limit_id = ? AND subject = ?)"
)
_SPENT_SQL = (
    "SELECT (SELECT dsum(used) FROM llmledger_counters"
    " WHERE limit_id = ? AND subject = ? AND bucket BETWEEN ? AND ?),"
    " (SELECT granted FROM llmledger_credits WHERE limit_id = ? AND subject = ?)"
)
_INSERT_RESERVATION = (
    "INSERT INTO llmledger_reservations (reservation_id, limit_id, subject, bucket, amount, expires_us)"
    " VALUES "
)
_INSERT_ALERT = (
    "INSERT OR IGNORE INTO llmledger_alerts (limit_id, subject, bucket, threshold, fired_us)"
    " VALUES (?, ?, ?, ?, ?) /*IGNORE*/"
)
_STANDINGS: dict[int, str] = {}
_INSERTS: dict[int, str] = {}


def _standings_sql(n: int) -> str:
    """`STANDING_SQL` for `n` limits at once: one statement, 3 x `n` columns."""
    sql = _STANDINGS.get(n)
    if sql is None:
        sql = _STANDINGS[n] = "SELECT " + ", ".join([STANDING_SQL[len("SELECT ") :]] * n)
    return sql


def _insert_sql(n: int) -> str:
    """One INSERT of `n` reservation rows."""
    sql = _INSERTS.get(n)
    if sql is None:
        sql = _INSERTS[n] = _INSERT_RESERVATION + ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)
    return sql


def _dec(value: Any) -> Decimal:
    return _ZERO if value is None else value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class Held:
    """One limit's share of a reservation request: the counter (`subject`) and the worst case."""

    limit: Limit
    subject: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a limit's counter stands now."""

    limit: Limit
    subject: str
    spent: Decimal
    reserved: Decimal
    allowed: Decimal
    """The limit's amount plus any credit topped up."""
    resets_at: Any
    """When the window starts again (a UTC datetime), None for lifetime."""

    def refuses(self, amount: Decimal) -> bool:
        """Whether `amount` more would not fit (what a blocking limit refuses)."""
        return self.spent + self.reserved + amount > self.allowed

    @property
    def remaining(self) -> Decimal:
        return max(_ZERO, self.allowed - self.spent - self.reserved)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of `reserve`: allowed (nothing violated) or refused."""

    standings: list[Standing]
    violated: list[tuple[Standing, Decimal]]
    """(standing, amount this call needed) of each blocking limit that refused, tightest first."""
    fired: list[Alert]
    """The refusal alert this decision recorded (first refusal of its limit, subject and window)."""
    at_us: int
    """The clock, read inside the write lock, the decision was made at."""


def level_key(level: Decimal) -> str:
    """How a threshold is keyed in the alerts table (`0.5`, `1`)."""
    return f"{level.normalize():f}"


def alert_key(limit: Limit, at_us: int) -> int:
    """The window an alert belongs to: a calendar window's start, the rolling span's period, or 0."""
    window = limit.window
    if window.kind == "rolling":
        return (at_us // 1_000_000) // window.seconds
    return span_at(window, at_us).first


_spans: dict[Window, tuple[int, int, Span]] = {}


def span_at(window: Window, now_us: int) -> Span:
    """`span(window, now_us)`, cached while `now_us` stays in the same window (or rolling slot): a
    decision needs it once per limit, and working it out (time zones, calendars) costs more than the
    decision's statements."""
    cached = _spans.get(window)
    if cached is not None and cached[0] <= now_us < cached[1]:
        return cached[2]
    found = span(window, from_us(now_us))
    kind = window.kind
    if kind == "lifetime":
        low, high = -(1 << 62), 1 << 62
    elif kind == "rolling":
        slot_us = max(1, window.seconds // ROLLING_SLOTS) * 1_000_000
        low = now_us // slot_us * slot_us
        high = low + slot_us
    else:  # a calendar window: from its start to its reset
        assert found.resets_at is not None
        low, high = found.first * 1_000_000, to_us(found.resets_at)
    if low <= now_us < high:
        if len(_spans) > 1024:
            _spans.clear()
        _spans[window] = (low, high, found)
    return found


def standing(run: Exec, limit: Limit, subject: str, now_us: int, window: Span | None = None) -> Standing:
    """Where `limit`'s counter for `subject` stands at `now_us` (one statement)."""
    window = window or span_at(limit.window, now_us)
    params = (limit.id, subject, window.first, window.last, limit.id, subject, now_us)
    used, held, granted = run(STANDING_SQL, (*params, limit.id, subject))[0]
    return Standing(limit, subject, _dec(used), _dec(held), limit.amount + _dec(granted), window.resets_at)


def reserve(
    run: Exec, held: Sequence[Held], reservation_id: str, ttl_us: int, now_us: int, *, sweep: bool = True
) -> Decision:
    """Check every blocking limit at `now_us` and hold each worst case, or refuse holding nothing.

    `sweep`: also delete expired reservations (a standing never counts them, so the caller may do it
    only now and then)."""
    if sweep:
        run("DELETE FROM llmledger_reservations WHERE expires_us < ?", (now_us,))
    if not held:
        return Decision([], [], [], now_us)
    spans = [span_at(h.limit.window, now_us) for h in held]
    params: list[Any] = []
    for h, w in zip(held, spans, strict=True):  # every limit's standing in one statement
        lid, subject = h.limit.id, h.subject
        params += (lid, subject, w.first, w.last, lid, subject, now_us, lid, subject)
    row = run(_standings_sql(len(held)), params)[0]
    standings = []
    violated = []
    for i, (h, w) in enumerate(zip(held, spans, strict=True)):
        used, reserved, granted = row[3 * i : 3 * i + 3]
        limit = h.limit
        allowed = limit.amount if granted is None else limit.amount + _dec(granted)
        found = Standing(limit, h.subject, _dec(used), _dec(reserved), allowed, w.resets_at)
        standings.append(found)
        if limit.blocks and found.refuses(h.amount):
            violated.append((found, h.amount))
    if violated:
        violated.sort(key=lambda pair: pair[0].remaining - pair[1])
        tight = violated[0][0]
        fired = []
        if _record(run, tight.limit, tight.subject, ONE, now_us):
            fired.append(Alert(tight.limit, tight.subject, ONE, tight.spent, tight.allowed, "refused"))
        return Decision(standings, violated, fired, now_us)
    expires = now_us + ttl_us
    rows: list[Any] = []
    for h, w in zip(held, spans, strict=True):
        rows += (reservation_id, h.limit.id, h.subject, w.last, str(h.amount), expires)
    run(_insert_sql(len(held)), rows)
    return Decision(standings, [], [], now_us)


def settle(run: Exec, reservation_id: str, amounts: Mapping[str, Decimal]) -> None:
    """Set each limit's share of a reservation to the call's actual use (limit id -> amount)."""
    for limit_id, amount in amounts.items():
        run(
            "UPDATE llmledger_reservations SET amount = ? WHERE reservation_id = ? AND limit_id = ?",
            (str(amount), reservation_id, limit_id),
        )


def release(run: Exec, reservation_ids: Iterable[str], live_at_us: int | None = None) -> int:
    """Drop reservations by id. With `live_at_us`: returns how many of the ids were held then (not
    expired), counted in the same transaction (0 otherwise)."""
    ids = list(reservation_ids)
    live = 0
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        if live_at_us is not None:
            live += run(
                "SELECT count(DISTINCT reservation_id) FROM llmledger_reservations"
                f" WHERE reservation_id IN ({marks}) AND expires_us >= ?",
                (*chunk, live_at_us),
            )[0][0]
        run(f"DELETE FROM llmledger_reservations WHERE reservation_id IN ({marks})", tuple(chunk))
    return live


def _record(run: Exec, limit: Limit, subject: str, level: Decimal, at_us: int) -> bool:
    """Record an alert; True if this call recorded it first (once per limit, subject and window)."""
    run(_INSERT_ALERT, (limit.id, subject, alert_key(limit, at_us), level_key(level), at_us))
    return run.rowcount == 1


def commit_alerts(
    run: Exec, limits_by_id: Mapping[str, Limit], key: tuple[str, str, int], amount: Decimal, now_us: int
) -> list[Alert]:
    """Before `amount` is added to counter `key` (limit id, subject, bucket): the thresholds the
    committed spend of that bucket's window crosses, each recorded once. Call it BEFORE the upsert."""
    limit = limits_by_id.get(key[0])
    if limit is None or amount <= 0:
        return []
    subject, bucket = key[1], key[2]
    window = limit.window
    if window.kind == "rolling":
        slot = max(1, window.seconds // ROLLING_SLOTS)
        first, last, at_us = bucket - ROLLING_SLOTS, bucket, bucket * slot * 1_000_000
    else:
        first = last = bucket
        at_us = bucket * 1_000_000 if window.kind != "lifetime" else now_us
    used, granted = run(_SPENT_SQL, (limit.id, subject, first, last, limit.id, subject))[0]
    before = _dec(used)
    after = before + amount
    allowed = limit.amount + _dec(granted)
    fired = []
    for level in limit.thresholds:
        mark = allowed * level
        if before < mark <= after and _record(run, limit, subject, level, at_us):
            fired.append(Alert(limit, subject, level, after, allowed, "threshold"))
    return fired
