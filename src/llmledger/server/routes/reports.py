"""Reading the ledger: `GET /api/v1/usage`, `/events` (keyset-paged), `/spend`. JSON, or CSV with
`Accept: text/csv`. Money is a decimal string, never a float. A key bound to a tenant reads only
that tenant (another tenant's filter gets 403)."""

from __future__ import annotations

import base64
import csv
import io
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from llmledger._csv import safe_cell
from llmledger._time import parse_time_bound
from llmledger.errors import InvalidQueryError
from llmledger.server.deps import AUTH_ERRORS, ReadKey, State
from llmledger.storage.keys import ApiKey
from llmledger.storage.queries import FILTER_COLUMNS, SUM_COLUMNS, text_filters
from llmledger.storage.rows import to_us

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["reports"], responses=AUTH_ERRORS)

Since = Annotated[str | None, Query(description="ISO time or duration ago (30d, 24h)")]
Until = Annotated[str | None, Query(description="ISO time or duration ago; exclusive")]
GroupBy = Annotated[str, Query(description="comma-separated: tenant, model, day, tag:<name>...")]
Tags = Annotated[list[str] | None, Query(description="tag filters, `name:value`, repeatable")]


def _filters(request: Request, key: ApiKey, tags: list[str] | None) -> dict[str, Any]:
    labels = {name: request.query_params.getlist(name) for name in FILTER_COLUMNS}
    filters = text_filters(labels, tags)  # the command line's parser too
    if key.tenant is not None:
        asked = filters.get("tenant")
        if asked is not None and asked != key.tenant:
            raise HTTPException(403, "this key may only read its own tenant")
        filters["tenant"] = key.tenant
    return filters


def _bounds(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = parse_time_bound(since or None), parse_time_bound(until or None)  # "" is unset
    if start is not None and end is not None and start >= end:
        raise InvalidQueryError("since must be earlier than until")
    return start, end


def _wants_csv(request: Request) -> bool:
    return "text/csv" in request.headers.get("accept", "")


def _csv(rows: list[dict[str, Any]], columns: list[str], name: str) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict):
        value = ";".join(f"{k}={v}" for k, v in value.items())
    return safe_cell(value)  # never a formula when opened in a spreadsheet


@router.get("/usage")
async def get_usage(
    request: Request,
    state: State,
    key: ReadKey,
    group_by: Annotated[
        str, Query(description="comma-separated: tenant, model, day, tag:<name>...")
    ] = "tenant,model",
    since: Since = None,
    until: Until = None,
    tag: Tags = None,
) -> Response:
    """Requests, token sums and exact cost per group, most expensive first."""
    keys = [k.strip() for k in group_by.split(",") if k.strip()]
    filters = _filters(request, key, tag)
    start, end = _bounds(since, until)
    rows = await run_in_threadpool(state.engine.usage, keys, filters, start, end)
    out = [
        {
            **{k: row.group.get(k) for k in keys},
            "requests": row.requests,
            **{c: getattr(row, c) for c in SUM_COLUMNS},
            "cost_usd": str(row.cost_usd),
            "unpriced_requests": row.unpriced_requests,
            "errors": row.errors,
        }
        for row in rows
    ]
    columns = [*keys, "requests", *SUM_COLUMNS, "cost_usd", "unpriced_requests", "errors"]
    if _wants_csv(request):
        return _csv(out, columns, "usage")
    return JSONResponse({"group_by": keys, "rows": out})


def _cursor(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    try:
        ts, _, event_id = base64.urlsafe_b64decode(text.encode("ascii") + b"==").decode().partition("|")
        return int(ts), event_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidQueryError("cursor is not one this server gave") from exc


def _next_cursor(ts_us: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{ts_us}|{event_id}".encode()).decode().rstrip("=")


@router.get("/events")
async def get_events(
    request: Request,
    state: State,
    key: ReadKey,
    since: Since = None,
    until: Until = None,
    tag: Tags = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> Response:
    """Events newest first, `limit` a page; `next_cursor` continues (keyset paging, never OFFSET)."""
    filters = _filters(request, key, tag)
    start, end = _bounds(since, until)
    after = _cursor(cursor)
    found = await run_in_threadpool(state.engine.events, filters, start, end, limit, after)
    rows = [e.to_dict() for e in found]
    if _wants_csv(request):
        columns = list(rows[0]) if rows else ["event_id"]
        return _csv(rows, columns, "events")
    nxt = None
    if len(found) == limit:
        last = found[-1]
        nxt = _next_cursor(to_us(last.timestamp), last.event_id)
    return JSONResponse({"events": rows, "next_cursor": nxt})


@router.get("/spend")
async def get_spend(
    request: Request, state: State, key: ReadKey, since: Since = None, until: Until = None, tag: Tags = None
) -> Response:
    """The exact USD spent by the matching events (unpriced events are not included)."""
    filters = _filters(request, key, tag)
    start, end = _bounds(since, until)
    total = await run_in_threadpool(state.engine.spend, filters, start, end)
    if _wants_csv(request):
        return _csv([{"cost_usd": str(total)}], ["cost_usd"], "spend")
    return JSONResponse({"cost_usd": str(total), "currency": "USD"})
