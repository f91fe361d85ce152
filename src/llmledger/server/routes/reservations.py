"""`/api/v1/reservations`: remote enforcement — reserve a call's worst case before it is sent, settle
it to the actual use when it ends, release it when it was not made.

A door that holds the prompt sends the provider `request` body; one that must not (the remote SDK:
prompt text never leaves its host) sends the request's `shape` (`llmledger.limit.shape.Shape`
wire form). Refusals are typed JSON errors (`docs/server.md`, "Reservations").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt
from starlette.concurrency import run_in_threadpool

from llmledger.engine.decisions import owned_reservation_id
from llmledger.engine.engine import Engine
from llmledger.engine.limits import Reservation
from llmledger.engine.recording import read_event
from llmledger.errors import (
    InvalidEventError,
    InvalidShapeError,
    InvalidUsageError,
    LimitExceeded,
    LimitUndecided,
    RateLimited,
    UnpricedRefused,
)
from llmledger.events.ids import uuid7
from llmledger.limit.shape import MAX_TOKENS, Shape
from llmledger.server.deps import AUTH_ERRORS, IngestKey, State
from llmledger.storage.hotpath import TRY_ONLY, WouldWait

__all__ = ["router"]

T = TypeVar("T")
router = APIRouter(prefix="/api/v1/reservations", tags=["limits"], responses=AUTH_ERRORS)

Label = Annotated[str | None, Field(min_length=1, max_length=256)]


class WireAttribution(BaseModel):
    """Who the call is for; a key bound to a tenant fills in its tenant and refuses another."""

    tenant: Label = None
    user: Label = None
    org: Label = None
    feature: Label = None
    agent: Label = None
    session: Label = None
    tags: dict[str, str] | None = None


class ReserveBody(BaseModel):
    """Exactly one of `shape` (preferred over HTTP: no prompt text) and `request` (a provider
    request body)."""

    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=256)
    attribution: WireAttribution = WireAttribution()
    shape: dict[str, Any] | None = Field(
        None, description="the request's Shape wire form: input_tokens, output_tokens, choices, tier, ..."
    )
    request: dict[str, Any] | None = Field(
        None, description="a provider request body (its shape is read here)"
    )
    max_output_tokens: StrictInt | None = Field(None, ge=1, le=MAX_TOKENS)
    reservation_id: str | None = Field(
        None,
        min_length=1,
        max_length=36,
        pattern="^[A-Za-z0-9_-]+$",
        description="an id the caller chose (and journaled) before asking: the same id twice is one"
        " reservation; a new UUIDv7 when left out",
    )


class ReservationAnswer(BaseModel):
    reservation_id: str | None = Field(description="null when no limit applies (or unchecked)")
    model: str | None = Field(description="the model to send instead (a soft limit's downgrade), else null")
    expires_at: str | None = Field(description="when an unsettled reservation is dropped (UTC, ISO 8601)")
    unchecked: bool = Field(
        False, description="a limit applied but the ledger could not decide (on_ledger_fault=open)"
    )


class SettleBody(BaseModel):
    """Exactly one of `event` (the call's usage event, wire form) and `amounts` (limit id -> the
    call's actual use in that limit's metric, decimal strings)."""

    event: dict[str, Any] | None = None
    amounts: dict[str, Decimal] | None = None


class Settled(BaseModel):
    reservation_id: str
    settled: bool = True


class RefusalDetail(BaseModel):
    type: str = Field(
        description="limit_exceeded, rate_limited, unpriced_refused, credit_exhausted or limit_undecided"
    )
    message: str
    limit_id: str | None = None
    scope: str | None = None
    subject: str | None = None
    metric: str | None = None
    limit: str | None = None
    spent: str | None = None
    reserved: str | None = None
    requested: str | None = None
    remaining: str | None = None
    resets_at: str | None = None
    retry_after: float | None = None


class Refusal(BaseModel):
    error: RefusalDetail | str


_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "unreadable body"},
    402: {"model": Refusal, "description": "a lifetime (prepaid credit) limit is exhausted: top it up"},
    422: {"description": "bad attribution, shape, request, event or amounts"},
    429: {"model": Refusal, "description": "a limit refuses (or a throttle has no room): see `Retry-After`"},
    503: {"model": Refusal, "description": "the ledger could not decide (on_ledger_fault=closed): retry"},
}


_GONE: dict[str, Any] = {
    "description": "no such reservation is held for this key's tenant (released, settled by its event,"
    " expired, or never made)"
}


def _refusal(exc: LimitExceeded) -> JSONResponse:
    kind = (
        "rate_limited"
        if isinstance(exc, RateLimited)
        else "unpriced_refused"
        if isinstance(exc, UnpricedRefused)
        else "credit_exhausted"
        if exc.resets_at is None
        else "limit_exceeded"
    )
    status = 402 if kind == "credit_exhausted" else 429
    detail = RefusalDetail(
        type=kind,
        message=str(exc),
        limit_id=exc.limit_id,
        scope=exc.scope,
        subject=exc.subject,
        metric=exc.metric,
        limit=str(exc.limit),
        spent=str(exc.spent),
        reserved=str(exc.reserved),
        requested=str(exc.requested),
        remaining=str(exc.remaining),
        resets_at=None if exc.resets_at is None else exc.resets_at.isoformat(),
        retry_after=exc.retry_after,
    )
    headers = {} if exc.retry_after is None else {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse({"error": detail.model_dump()}, status_code=status, headers=headers)


def _undecided(exc: LimitUndecided) -> JSONResponse:
    detail = RefusalDetail(type="limit_undecided", message=str(exc), retry_after=1.0)
    return JSONResponse(
        {"error": detail.model_dump(exclude_none=True)}, status_code=503, headers={"Retry-After": "1"}
    )


def _bound(attribution: WireAttribution, tenant: str | None) -> dict[str, Any]:
    who = attribution.model_dump()
    if tenant is not None:
        if who["tenant"] not in (None, tenant):
            raise HTTPException(403, f"this key is bound to tenant {tenant!r}; it cannot reserve for another")
        who["tenant"] = tenant
    return who


@router.post("", status_code=201, response_model=ReservationAnswer, responses=_REFUSALS)
async def reserve(body: ReserveBody, state: State, key: IngestKey) -> Any:
    """Reserve the call's worst case against every limit that applies, before it is sent. A
    `reservation_id` chosen by the caller makes the request idempotent (asked twice, it is one
    reservation, answered twice)."""
    who = _bound(body.attribution, key.tenant)
    if (body.shape is None) == (body.request is None):
        raise HTTPException(422, "send exactly one of `shape` (preferred: no prompt text) and `request`")
    engine = state.engine
    rid = body.reservation_id or uuid7()
    stored = owned_reservation_id(rid, key.tenant)
    try:
        shape = (
            None
            if body.shape is None
            else Shape.from_wire(body.shape, default_output_tokens=engine.enforcer.policy.default_output_cap)
        )
        call = {
            "provider": body.provider,
            "model": body.model,
            "body": body.request,
            "shape": shape,
            "max_output_tokens": body.max_output_tokens,
            "reservation_id": stored,
        }
        got: Reservation = await _now_or_in_thread(
            shape is not None and _local(engine), engine.reserve, who, **call
        )
    except (InvalidShapeError, InvalidUsageError) as exc:
        raise HTTPException(422, str(exc)) from None
    except LimitExceeded as exc:
        again = await _again(engine, body, rid, stored)
        if again is not None:
            return again
        state.metrics.refused.inc()
        return _refusal(exc)
    except LimitUndecided as exc:
        again = await _again(engine, body, rid, stored)
        if again is not None:
            return again
        state.metrics.refused.inc()
        return _undecided(exc)
    if got.unchecked or got.repeated:
        again = await _again(engine, body, rid, stored)
        if again is not None:
            return again
    expires = None if got.expires_at is None else got.expires_at.isoformat()
    return _answer(None if got.id is None else rid, got.model, expires, got.unchecked)


def _answer(rid: str | None, model: str | None, expires_at: str | None, unchecked: bool) -> Response:
    """A `ReservationAnswer` (201), written without building and checking the model."""
    answer = {"reservation_id": rid, "model": model, "expires_at": expires_at, "unchecked": unchecked}
    return Response(orjson.dumps(answer), status_code=201, media_type="application/json")


async def _again(engine: Engine, body: ReserveBody, rid: str, stored: str) -> Response | None:
    """A caller-chosen id asked for again (a retry, or two requests racing): the reservation made
    the first time, if it is held — the second insert under its id failed, or its own worst case,
    counted twice, looked over the limit. None otherwise (the refusal stands)."""
    if body.reservation_id is None:
        return None
    expires = await run_in_threadpool(engine.held_until, stored)
    if expires is None:
        return None
    return _answer(rid, None, expires.isoformat(), False)


@router.post(
    "/{reservation_id}/settle",
    response_model=Settled,
    responses={404: _GONE, **{code: _REFUSALS[code] for code in (400, 422)}},
)
async def settle(reservation_id: str, body: SettleBody, state: State, key: IngestKey) -> Settled:
    """The call ended: its reservation holds the actual use (not its worst case) until the event is
    ingested (an event naming its `reservation_id` drops it). 404 when no such reservation is held
    for this key's tenant (never made, released, dropped by its event, or expired)."""
    _check_id(reservation_id)
    if (body.event is None) == (body.amounts is None):
        raise HTTPException(422, "send exactly one of `event` and `amounts`")
    engine = state.engine
    if body.event is not None:
        try:
            settled: Any = read_event(engine.pricer, body.event, key.tenant)
        except InvalidEventError as exc:
            raise HTTPException(422, f"event: {exc}") from None
    else:
        assert body.amounts is not None
        bad = [k for k, v in body.amounts.items() if not v.is_finite() or v < 0 or len(k) > 64]
        if bad:
            raise HTTPException(422, f"amounts: {bad[0]!r:.80} must map a limit id to a non-negative decimal")
        settled = body.amounts
    stored = owned_reservation_id(reservation_id, key.tenant)
    if not await run_in_threadpool(_if_held, engine, stored, engine.settle, settled):
        raise _gone(reservation_id)
    return Settled(reservation_id=reservation_id)


@router.delete("/{reservation_id}", status_code=204, response_class=Response, responses={404: _GONE})
async def release(reservation_id: str, state: State, key: IngestKey) -> Response:
    """Drop a reservation (the call was not made). 404 when no such reservation is held for this
    key's tenant (never made, released already, dropped by its event, or expired)."""
    _check_id(reservation_id)
    engine = state.engine
    stored = owned_reservation_id(reservation_id, key.tenant)
    # one write transaction: whether it was held, and its drop (no read before it)
    if len(stored) > 36 or not await _now_or_in_thread(_local(engine), engine.enforcer.release, stored):
        raise _gone(reservation_id)
    return Response(status_code=204)


def _local(engine: Engine) -> bool:
    """Whether the ledger is a local SQLite file (a server database is always asked from a thread)."""
    return engine.enforcer.store.hot.sqlite


async def _now_or_in_thread(quick: bool, act: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`act(...)` right here on the event loop when it needs no wait (the ledger's write lock is free
    at once: a decision takes ~0.1 ms, less than handing it to a worker thread and back), in a worker
    thread otherwise: a decision that must wait for the lock, read the ledger or tokenize a request
    body (`quick` False) never blocks the loop (`TRY_ONLY`)."""
    if quick:
        token = TRY_ONLY.set(True)
        try:
            return act(*args, **kwargs)
        except WouldWait:
            pass
        finally:
            TRY_ONLY.reset(token)
    return await run_in_threadpool(act, *args, **kwargs)


def _if_held(engine: Engine, stored: str, act: Callable[..., None], *args: Any) -> bool:
    """`act(stored, *args)` when a reservation is held under the stored id `stored`, in one trip to
    the worker thread; False when none is (never made, released, dropped by its event, expired).
    A key bound to a tenant reaches only its tenant's reservations (`owned_reservation_id`): another
    tenant's id names nothing for it."""
    if len(stored) > 36 or engine.held_until(stored) is None:
        return False
    act(stored, *args)
    return True


def _gone(reservation_id: str) -> HTTPException:
    return HTTPException(404, f"no reservation {reservation_id!r:.80} is held for this key")


def _check_id(reservation_id: str) -> None:
    if not 0 < len(reservation_id) <= 64:
        raise HTTPException(422, "a reservation id is at most 64 characters")
