"""`POST /api/v1/events`: a batch of usage events in their wire form, gzip accepted."""

from __future__ import annotations

import json
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from llmledger.server.deps import AUTH_ERRORS, IngestKey, State

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["events"], responses=AUTH_ERRORS)


class RejectedItem(BaseModel):
    index: int
    error: str


class IngestAnswer(BaseModel):
    """`accepted`: items stored (a retried batch counts again and is stored once); `duplicates`:
    of those, the ones already stored before; `rejected`: each refused item and why."""

    accepted: int
    duplicates: int
    rejected: list[RejectedItem]
    events: list[dict[str, Any]] | None = None
    """With `?return_events=true`: each accepted event as stored (priced), in input order."""


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over {limit} bytes; send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over {limit} bytes; send smaller batches")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise HTTPException(415, f"content-encoding {encoding!r} is not supported; use gzip or none")
    inflater = zlib.decompressobj(wbits=31)
    try:
        plain = inflater.decompress(body, limit + 1)  # never inflate past the limit: no gzip bombs
    except zlib.error as exc:
        raise HTTPException(400, f"the body is not valid gzip: {exc}") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise HTTPException(413, f"decompressed body over {limit} bytes; send smaller batches")
    if not inflater.eof:
        raise HTTPException(400, "the gzip body is truncated")
    return plain


@router.post(
    "/events",
    response_model=IngestAnswer,
    response_model_exclude_none=True,
    responses={
        400: {"description": "the gzip body is not valid or truncated"},
        413: {"description": "body or batch too large"},
        415: {"description": "unsupported content encoding"},
        422: {"description": "not a JSON object with an `events` list"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["events"],
                        "properties": {
                            "events": {
                                "type": "array",
                                "items": {},
                                "description": "usage events (docs/usage-event.schema.json); each"
                                " item is validated on its own and a bad one is listed in `rejected`",
                            }
                        },
                    }
                }
            },
        }
    },
)
async def post_events(request: Request, state: State, key: IngestKey, return_events: bool = False) -> Any:
    """Store a batch `{"events": [...]}` idempotently by `event_id`; valid items are stored even when
    others are refused. Events without a cost are priced here. A key bound to a tenant fills in
    that tenant and refuses events of another."""
    settings = state.settings
    body = await _read_body(request, settings.max_body_bytes)
    payload = _parse(body)
    items = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise HTTPException(422, 'send a JSON object {"events": [...]}')
    if len(items) > settings.max_batch:
        raise HTTPException(413, f"{len(items)} events in one batch; at most {settings.max_batch}")
    result = await run_in_threadpool(
        state.engine.ingest, items, tenant=key.tenant, return_events=return_events
    )
    metrics = state.metrics
    metrics.ingested.inc(len(result.stored))
    metrics.rejected.inc(len(result.rejected))
    metrics.observe_events(result.stored)
    answer: dict[str, Any] = {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": [{"index": r.index, "error": r.error} for r in result.rejected],
    }
    if result.events is not None:
        answer["events"] = [e.to_dict() for e in result.events]
    # the answer is `IngestAnswer` as documented, written without building and checking the model
    return Response(orjson.dumps(answer), media_type="application/json")


_DIGITS = bytes(ord("1") if chr(i).isdigit() and i < 128 else ord("0") for i in range(256))
_LONG_NUMBER = b"1" * 19


def _parse(body: bytes) -> Any:
    """The body's JSON, as the standard library reads it. orjson reads the common body (a third of
    the time); it refuses `NaN`, a lone surrogate escape and the like, and reads integers past 64
    bits as floats: a body with any of those (any run of 19 digits) is read by the standard
    library, so each item is accepted or refused one by one exactly as before."""
    if body.translate(_DIGITS).find(_LONG_NUMBER) < 0:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of > 4,300 digits
        raise HTTPException(422, f"the body is not JSON: {exc}") from None
