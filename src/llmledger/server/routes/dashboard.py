"""The dashboard's API (`/api/v1/dashboard/...`): one request per page view or refresh.

Read scope; a key (or session) bound to a tenant sees only its tenant. Money is decimal strings.
The events list itself is `GET /api/v1/events` (keyset paging); limits are `/api/v1/limits`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from llmledger.errors import InvalidQueryError
from llmledger.pricing.catalog import UnknownPrice
from llmledger.server import dashboard_data as data
from llmledger.server.deps import AUTH_ERRORS, ReadKey, State
from llmledger.server.routes.reports import (
    Since,
    Tags,
    Until,
    _bounds,
    _csv_cell,
    _cursor,
    _filters,
    _next_cursor,
)
from llmledger.server.session import session_of
from llmledger.storage.keys import ApiKey
from llmledger.storage.queries import FLAG_FILTERS, where_clause
from llmledger.storage.rows import to_us

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"], responses=AUTH_ERRORS)

CSV_MAX_ROWS = 1_000_000
"""The most rows one CSV export streams (say so in a last line when there were more)."""


@router.get("/session")
async def get_session(request: Request, key: ReadKey) -> JSONResponse:
    """Who is asking: scope, tenant, and the CSRF token the page sends with changes."""
    session = session_of(request)
    return JSONResponse(
        {
            "scope": key.scope,
            "tenant": key.tenant,
            "name": key.name,
            "csrf": session.csrf if session is not None else None,
        }
    )


EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)
"""A dashboard range lies in [EARLIEST, LATEST]: its period before and its whole hours stay dates."""


def _range(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    end = until or datetime.now(timezone.utc)
    start = since or end - timedelta(days=30)
    if start < EARLIEST:
        raise InvalidQueryError(f"since must be on or after {EARLIEST:%Y-%m-%d}, got {start:%Y-%m-%d}")
    if end > LATEST:
        raise InvalidQueryError(f"until must be before {LATEST:%Y-%m-%d}, got {end:%Y-%m-%d}")
    return start, end


@router.get("/overview")
async def get_overview(
    request: Request,
    state: State,
    key: ReadKey,
    since: Since = None,
    until: Until = None,
    bucket: Annotated[str | None, Query(description="hour, day or month (default: from the range)")] = None,
    stack: Annotated[str, Query(description="model, provider, tenant, feature or user")] = "model",
    tag: Tags = None,
) -> JSONResponse:
    """Spend today / month to date / last 30 days (with the change against the period before),
    the spend series stacked by `stack`, the top tenants, users, features and models, and totals
    (requests, tokens by kind, errors, unpriced, estimated) for the filters and range (default:
    the last 30 days; widened to whole hours). Filters: `tenant=`, `user=`, `model=`... as `/api/v1/usage`."""
    filters = _filters(request, key, tag)
    start, end = _range(*_bounds(since, until))
    result = await run_in_threadpool(
        lambda: data.overview(state.engine, filters, start, end, bucket=bucket, stack=stack)
    )
    return JSONResponse(result)


def _event_filters(request: Request, key: ApiKey, tag: list[str] | None) -> dict[str, Any]:
    """The filters of the events routes, checked now (InvalidQueryError: 422): the CSV route
    streams, and an error found once its 200 is sent could only cut the download."""
    filters = _filters(request, key, tag)
    for name in FLAG_FILTERS:
        value = request.query_params.get(name)
        if value:
            filters[name] = value
    where_clause(filters, None, None)
    return filters


@router.get("/events")
async def get_events(
    request: Request,
    state: State,
    key: ReadKey,
    since: Since = None,
    until: Until = None,
    tag: Tags = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> JSONResponse:
    """Events newest first, a page of `limit`, keyset-paged (`next_cursor`); the filters of
    `/api/v1/events` plus `unpriced=true|false` and `estimated=true|false`."""
    filters = _event_filters(request, key, tag)
    start, end = _bounds(since, until)
    after = _cursor(cursor)
    found = await run_in_threadpool(state.engine.events, filters, start, end, limit, after)
    nxt = None
    if len(found) == limit:
        nxt = _next_cursor(to_us(found[-1].timestamp), found[-1].event_id)
    return JSONResponse({"events": [e.to_dict() for e in found], "next_cursor": nxt})


@router.get("/alerts")
async def get_alerts(request: Request, state: State, key: ReadKey, since: Since = None) -> JSONResponse:
    """Threshold alerts fired since `since` (default 30d), newest first, at most 200; `tenant=` /
    `user=` keep those of that subject (a tenant-bound key sees only its tenant's)."""
    start = _bounds(since or "30d", None)[0] or datetime.now(timezone.utc) - timedelta(days=30)
    tenant = key.tenant or request.query_params.get("tenant") or None
    user = request.query_params.get("user") or None
    found = await run_in_threadpool(data.alerts_since, state.engine, start, tenant, 200)
    if user is not None:
        found = [a for a in found if data.subject_parts(a["subject"]).get("user") == user]
    return JSONResponse({"alerts": found})


@router.get("/events/{event_id}", responses={404: {"description": "no such event (for this key)"}})
async def get_event(event_id: str, state: State, key: ReadKey) -> JSONResponse:
    """One event's full record (404 when absent, or another tenant's for a tenant-bound key)."""
    found = await run_in_threadpool(state.engine.ledger.by_ids, [event_id[:64]])
    event = found.get(event_id)
    if event is None or (key.tenant is not None and event.tenant != key.tenant):
        raise HTTPException(404, f"no event {event_id[:64]!r}")
    return JSONResponse(event.to_dict())


_CSV_COLUMNS = [
    "event_id",
    "timestamp",
    "provider",
    "model",
    "tenant",
    "user",
    "org",
    "feature",
    "agent",
    "session",
    "status",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_source",
    "estimated",
    "duration_ms",
    "tags",
]


@router.get(
    "/events.csv",
    response_class=StreamingResponse,
    responses={
        200: {"description": "the events as CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def get_events_csv(
    request: Request, state: State, key: ReadKey, since: Since = None, until: Until = None, tag: Tags = None
) -> StreamingResponse:
    """Every event the filters match, newest first, as CSV (streamed in keyset pages; at most
    1,000,000 rows, with a last line saying so when there were more)."""
    filters = _event_filters(request, key, tag)
    start, end = _bounds(since, until)
    engine = state.engine

    def rows() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(_CSV_COLUMNS)
        after: tuple[int, str] | None = None
        sent = 0
        while True:
            page = engine.events(filters, start, end, 5_000, after)
            for event in page:
                record: dict[str, Any] = event.to_dict()
                writer.writerow([_csv_cell(record.get(c)) for c in _CSV_COLUMNS])
            sent += len(page)
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(page) < 5_000:
                return
            if sent >= CSV_MAX_ROWS:
                yield f"# stopped after {sent:,} rows: narrow the filters or the time range\n"
                return
            last = page[-1]
            after = (to_us(last.timestamp), last.event_id)

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="events.csv"'},
    )


@router.get("/prices")
async def get_prices(
    state: State,
    key: ReadKey,
    model: Annotated[str | None, Query(max_length=256, description="a model to look up")] = None,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    service_tier: Annotated[str | None, Query(max_length=32)] = None,
) -> JSONResponse:
    """A model's price now and its source (when `model` is given), and the models seen without a
    price, with how many events each."""
    price: dict[str, Any] | None = None
    if model:
        try:
            quote = state.engine.pricer.quote(
                provider or None, model, datetime.now(timezone.utc), service_tier
            )
            price = {
                "provider": quote.provider,
                "model": quote.model,
                "matched": quote.matched,
                "source": quote.source,
                "origin": quote.origin,
                "service_tier": quote.service_tier,
                "prices": [{"key": k, "value": v} for k, v in quote.price_lines()],
                "multiplier": str(quote.multiplier),
                "adjustments": list(quote.adjustments),
            }
        except UnknownPrice as exc:
            price = {"provider": provider, "model": model, "error": str(exc)}
    unpriced = await run_in_threadpool(data.unpriced_models, state.engine, key.tenant)
    return JSONResponse({"price": price, "unpriced_models": unpriced})


@router.get("/live")
async def get_live(
    request: Request,
    state: State,
    key: ReadKey,
    after: Annotated[str | None, Query(description="`cursor` of the previous answer")] = None,
    tag: Tags = None,
) -> JSONResponse:
    """What is new since the previous refresh, in ONE request: the newest events (at most 20)
    and the alerts fired since, plus a `cursor` for the next call (answers overlap by a few
    seconds, so that events written late are not missed: keep each event once, by its id)."""
    filters = _filters(request, key, tag)
    now = datetime.now(timezone.utc)
    try:
        since = datetime.fromisoformat(after) if after else now - timedelta(minutes=5)
    except ValueError as exc:
        raise InvalidQueryError("after must be the cursor of a previous answer") from exc
    if since.tzinfo is None:
        raise InvalidQueryError("after must be the cursor of a previous answer")

    def read() -> dict[str, Any]:
        events = state.engine.events(filters, since, None, 20)
        fired = data.alerts_since(state.engine, since, key.tenant, 20)
        # Events reach the ledger a moment after they happen: the next refresh looks back 10 s
        # (the page keeps each event once, by id).
        cursor = now - timedelta(seconds=10)
        return {
            "events": [e.to_dict() for e in events],
            "alerts": fired,
            "cursor": cursor.isoformat(),
        }

    return JSONResponse(await run_in_threadpool(read))
