"""Operations: `/healthz` (the process answers), `/readyz` (the ledger answers), `/metrics`
(Prometheus), and `GET /api/v1/prices/{model}` (the price a model's calls get, and its source)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from llmledger.pricing.catalog import UnknownPrice
from llmledger.server.deps import AUTH_ERRORS, ReadKey, State, requires

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], responses={503: {"description": "the ledger does not answer"}})
async def readyz(state: State) -> Response:
    """200 when the ledger answers a query, else 503."""
    try:
        await run_in_threadpool(state.engine.ping)
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ready", "ledger": state.engine.dialect})


_READ = requires("read")


@router.get("/metrics", tags=["ops"], response_class=Response, responses=AUTH_ERRORS)
async def metrics(request: Request, state: State) -> Response:
    """Prometheus text exposition. Its series name every tenant and its spend, so it needs a read key
    bound to no tenant (Prometheus: `authorization: {credentials: <key>}`), unless the server runs
    with `metrics_public` (`LLMLEDGER_METRICS_PUBLIC=1`)."""
    if not state.settings.metrics_public:
        key = await _READ(request)
        if key.tenant is not None:
            raise HTTPException(403, "/metrics shows every tenant: use a key bound to no tenant")
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get(
    "/api/v1/prices/{model:path}",
    tags=["prices"],
    responses={**AUTH_ERRORS, 404: {"description": "no price is known for this model"}},
)
async def price_of(
    model: str,
    state: State,
    _: ReadKey,
    provider: Annotated[str | None, Query()] = None,
    service_tier: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    """The per-token prices (USD per million tokens) calls of `model` get now, and their source."""
    try:
        quote = await run_in_threadpool(
            state.engine.pricer.quote, provider, model, datetime.now(timezone.utc), service_tier
        )
    except UnknownPrice as exc:
        raise HTTPException(404, str(exc)) from None
    return JSONResponse(
        {
            "provider": quote.provider,
            "model": quote.model,
            "matched": quote.matched,
            "source": quote.source,
            "origin": quote.origin,
            "service_tier": quote.service_tier,
            "prices": dict(quote.price_lines()),
            "multiplier": str(quote.multiplier),
        }
    )
