"""Where a moment falls in a limit's window: calendar buckets in a time zone, rolling slots, lifetime.

A counter row is keyed by a bucket number. Calendar windows have one bucket per window (its start,
in Unix seconds). A rolling window of span S is cut into 60 slots of S/60 seconds: the window at
time t is the slot holding t and the 60 before it (61 slots: at least S, at most S + S/60), so it
may count up to one slot (1/60 of the span) of older spend — never less than the true rolling sum,
so a limit can only err on the safe side. (With 60 slots the window spanned 59-60 slots' time and
missed use made up to a slot earlier than S ago: issue 8 part 4.)
Lifetime counters have the single bucket 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from llmledger.limit.model import Window

__all__ = ["ROLLING_SLOTS", "Span", "span"]

ROLLING_SLOTS = 60


@dataclass(frozen=True, slots=True)
class Span:
    """The counter buckets `first..last` that make up the window at a moment; new use goes to `last`."""

    first: int
    last: int
    resets_at: datetime | None
    """When the window starts again; rolling: its next slide (when its oldest slot drops out, which
    frees room only if that slot held use); None for lifetime."""


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _at_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _add_month(day: date) -> date:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, day.day)


def span(window: Window, at: datetime) -> Span:
    """The window of `window` that contains `at` (an aware datetime)."""
    kind = window.kind
    if kind == "lifetime":
        return Span(0, 0, None)
    if kind == "rolling":
        slot = max(1, window.seconds // ROLLING_SLOTS)
        now = int(at.timestamp())
        current = now // slot
        first = current - ROLLING_SLOTS
        return Span(first, current, datetime.fromtimestamp((current + 1) * slot, timezone.utc))
    zone = _zone(window.tz)
    local = at.astimezone(zone).date()
    if kind == "day":
        start = local
        end = start + timedelta(days=1)
    elif kind == "week":
        start = local - timedelta(days=(local.weekday() - window.week_start) % 7)
        end = start + timedelta(days=7)
    else:  # month
        anchor = window.month_anchor
        if local.day >= anchor:
            start = date(local.year, local.month, anchor)
        else:
            prev = (
                date(local.year - 1, 12, anchor)
                if local.month == 1
                else date(local.year, local.month - 1, anchor)
            )
            start = prev
        end = _add_month(start)
    first = int(_at_midnight(start, zone).timestamp())
    return Span(first, first, _at_midnight(end, zone).astimezone(timezone.utc))
