"""Parsing time bounds: datetimes, timedeltas, durations such as `30d`, `24h`, `1y`, and `mtd` / `ytd`."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from llmledger.errors import InvalidQueryError

__all__ = ["TimeBound", "parse_duration", "parse_time_bound"]

TimeBound = datetime | date | timedelta | str | None

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|y)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TO_DATE = ("mtd", "ytd")


def parse_duration(text: str) -> timedelta:
    """`'30d'`, `'24h'`, `'15m'`, `'90s'`, `'2w'`, `'1y'` (365 days) as a timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidQueryError(f"not a duration: {text!r}; use e.g. 30d, 24h, 15m, 2w, 1y")
    count, unit = int(match.group(1)), match.group(2)
    try:
        if unit == "y":
            return timedelta(days=365 * count)
        return timedelta(**{_UNITS[unit]: count})
    except OverflowError:
        raise InvalidQueryError(f"duration too long: {text!r}; the longest is 999999999 days") from None


def _ago(now: datetime, span: timedelta, value: object) -> datetime:
    """`now - span`, or a typed error when that is before year 1."""
    try:
        return now - span
    except OverflowError:
        raise InvalidQueryError(f"time bound too far in the past: {value!r}") from None


def parse_time_bound(value: TimeBound, *, now: datetime | None = None) -> datetime | None:
    """A UTC datetime from a datetime, a date (midnight UTC), a timedelta or duration string (that
    long ago), `mtd` / `ytd` (the start of this month / year, UTC), or an ISO 8601 string. Naive
    datetimes are taken as UTC."""
    if value is None:
        return None
    now = now or datetime.now(timezone.utc)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        try:
            return value.astimezone(timezone.utc)
        except OverflowError:
            raise InvalidQueryError(f"time bound out of range: {value!r}") from None
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=timezone.utc)
    if isinstance(value, timedelta):
        return _ago(now, value, value)
    if isinstance(value, str):
        keyword = value.strip().lower()
        if keyword in _TO_DATE:
            start = now.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            return start.replace(month=1) if keyword == "ytd" else start
        if _DURATION.match(value):
            return _ago(now, parse_duration(value), value)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidQueryError(
                f"not a time: {value!r}; use an ISO date/time (2026-01-31), a duration (30d, 24h, 1y), "
                "mtd or ytd"
            ) from exc
        return parse_time_bound(parsed)
    raise InvalidQueryError(f"not a time bound: {value!r}")
