"""Reading the ledger: `events()`, `usage()` and `spend()` (they flush pending events first). In
remote mode they read the server's `GET /api/v1/...` endpoints, with the same arguments and results."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger._time import TimeBound, parse_time_bound
from llmledger.errors import InvalidQueryError, StaleReadError
from llmledger.events.event import UsageEvent
from llmledger.sdk import runtime as _rt

if TYPE_CHECKING:
    from llmledger.sdk.remote import Remote
    from llmledger.storage.ledger import Ledger
    from llmledger.storage.queries import UsageRow

__all__ = ["MAX_LIMIT", "events", "flush", "spend", "usage"]

MAX_LIMIT = 2**62
"""The largest `limit` a query takes (the stores hold 64-bit integers)."""


def flush(timeout: float | None = 30.0) -> bool:
    """Write every pending event now. Returns False if `timeout` ran out first."""
    return _rt.current().writer.flush(timeout)


def _read_ledger(flush: bool = True, flush_timeout: float = 10.0) -> Ledger | Remote:
    """The ledger (or the server, in remote mode), once every event recorded before this read is
    written (`flush`), or `StaleReadError` when they cannot be within `flush_timeout` seconds (the
    ledger locked or down): a read never returns stale figures silently."""
    runtime = _rt.current()
    if not isinstance(flush, bool):
        raise InvalidQueryError(f"flush must be True or False, got {flush!r}")
    if (
        isinstance(flush_timeout, bool)
        or not isinstance(flush_timeout, (int, float))
        or not 0 <= flush_timeout <= 3600
    ):
        raise InvalidQueryError(f"flush_timeout must be seconds between 0 and 3600, got {flush_timeout!r}")
    if flush and not runtime.writer.flush(float(flush_timeout)):
        counters = runtime.writer.counters
        raise StaleReadError(
            f"{runtime.writer.pending} event(s) recorded before this read are not written yet "
            f"(waited {flush_timeout} s; last write error: {counters.last_error or 'none'}): the ledger "
            "is locked or unreachable. Retry, or pass flush=False to read what it holds now."
        )
    return runtime.ledger if runtime.remote is None else runtime.remote


def events(
    *,
    since: TimeBound = None,
    until: TimeBound = None,
    limit: int | None = 100,
    flush: bool = True,
    flush_timeout: float = 10.0,
    **filters: Any,
) -> list[UsageEvent]:
    """Recorded events, newest first. Filters: provider, model, tenant, user, org, feature, agent,
    session, status, ... (a value or a list of values) and `tags={"plan": "free"}`.
    `since` / `until`: a datetime, a date, a timedelta or a duration such as `"30d"`. Pending events
    are written first (`flush`); `StaleReadError` if they cannot be within `flush_timeout` seconds."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
    ):
        raise InvalidQueryError(f"limit must be an int from 1 to {MAX_LIMIT} or None, got {limit!r}")
    return list(_read_ledger(flush, flush_timeout).events(filters, *_window(since, until), limit))


def usage(
    group_by: str | Iterable[str] = ("tenant", "model"),
    *,
    since: TimeBound = None,
    until: TimeBound = None,
    flush: bool = True,
    flush_timeout: float = 10.0,
    **filters: Any,
) -> list[UsageRow]:
    """Requests, token sums and exact cost per group (e.g. `group_by=("tenant", "model")`;
    also `day`, `month`, `tag:<name>`), most expensive first; grouped by `day` or `month`, the rows
    come in date order (most expensive first within a date). `flush` / `flush_timeout` as `events()`."""
    keys = [k.strip() for k in group_by.split(",")] if isinstance(group_by, str) else list(group_by)
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise InvalidQueryError(f"group_by needs one or more keys such as 'tenant,model', got {group_by!r}")
    rows = list(_read_ledger(flush, flush_timeout).usage(keys, filters, *_window(since, until)))
    dates = [k for k in keys if k in ("day", "month")]
    if dates:  # stable: keeps the most expensive first within a date
        rows.sort(key=lambda row: tuple(str(row.group[k] or "") for k in dates))
    return rows


def spend(
    *,
    since: TimeBound = None,
    until: TimeBound = None,
    flush: bool = True,
    flush_timeout: float = 10.0,
    **filters: Any,
) -> Decimal:
    """The exact USD spent by the matching calls, e.g. `spend(tenant="acme", since="30d")`.
    Unpriced calls are not included (see `stats().events_unpriced`). `flush` / `flush_timeout` as
    `events()`: `StaleReadError` rather than a figure that misses calls already made."""
    return _read_ledger(flush, flush_timeout).spend(filters, *_window(since, until))


def _window(since: TimeBound, until: TimeBound) -> tuple[datetime | None, datetime | None]:
    start, end = parse_time_bound(since), parse_time_bound(until)
    if start is not None and end is not None and start > end:
        raise InvalidQueryError(
            f"since ({start:%Y-%m-%d %H:%M}) is after until ({end:%Y-%m-%d %H:%M}): swapped? "
            "since is the start of the window, until its end"
        )
    return start, end
