"""Reading the ledger: `events()`, `usage()` and `spend()` (they flush pending events first)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger._time import TimeBound, parse_time_bound
from llmledger.errors import InvalidQueryError
from llmledger.events.event import UsageEvent
from llmledger.sdk import runtime as _rt

if TYPE_CHECKING:
    from llmledger.storage.ledger import Ledger
    from llmledger.storage.queries import UsageRow

__all__ = ["events", "flush", "spend", "usage"]


def flush(timeout: float | None = 30.0) -> bool:
    """Write every pending event now. Returns False if `timeout` ran out first."""
    return _rt.current().writer.flush(timeout)


def _read_ledger() -> Ledger:
    runtime = _rt.current()
    runtime.writer.flush(30.0)
    return runtime.ledger


def events(
    *, since: TimeBound = None, until: TimeBound = None, limit: int | None = 100, **filters: Any
) -> list[UsageEvent]:
    """Recorded events, newest first. Filters: provider, model, tenant, user, org, feature, agent,
    session, status, ... (a value or a list of values) and `tags={"plan": "free"}`.
    `since` / `until`: a datetime, a date, a timedelta or a duration such as `"30d"`."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidQueryError(f"limit must be a positive int or None, got {limit!r}")
    return list(_read_ledger().events(filters, *_window(since, until), limit))


def usage(
    group_by: str | Iterable[str] = ("tenant", "model"),
    *,
    since: TimeBound = None,
    until: TimeBound = None,
    **filters: Any,
) -> list[UsageRow]:
    """Requests, token sums and exact cost per group (e.g. `group_by=("tenant", "model")`;
    also `day`, `month`, `tag:<name>`), most expensive first; grouped by `day` or `month`, the rows
    come in date order (most expensive first within a date)."""
    keys = [k.strip() for k in group_by.split(",")] if isinstance(group_by, str) else list(group_by)
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise InvalidQueryError(f"group_by needs one or more keys such as 'tenant,model', got {group_by!r}")
    rows = list(_read_ledger().usage(keys, filters, *_window(since, until)))
    dates = [k for k in keys if k in ("day", "month")]
    if dates:  # stable: keeps the most expensive first within a date
        rows.sort(key=lambda row: tuple(str(row.group[k] or "") for k in dates))
    return rows


def spend(*, since: TimeBound = None, until: TimeBound = None, **filters: Any) -> Decimal:
    """The exact USD spent by the matching calls, e.g. `spend(tenant="acme", since="30d")`.
    Unpriced calls are not included (see `stats().events_unpriced`)."""
    return _read_ledger().spend(filters, *_window(since, until))


def _window(since: TimeBound, until: TimeBound) -> tuple[datetime | None, datetime | None]:
    start, end = parse_time_bound(since), parse_time_bound(until)
    if start is not None and end is not None and start > end:
        raise InvalidQueryError(
            f"since ({start:%Y-%m-%d %H:%M}) is after until ({end:%Y-%m-%d %H:%M}): swapped? "
            "since is the start of the window, until its end"
        )
    return start, end
