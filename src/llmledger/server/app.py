"""`create_app(settings)`: the HTTP door onto one engine (FastAPI). No module-level app state."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmledger._version import __version__
from llmledger.engine import EnforcementPolicy, Engine
from llmledger.errors import InvalidQueryError, LedgerError
from llmledger.server.metrics import Metrics
from llmledger.server.routes import (
    dashboard,
    dashboard_pages,
    ingest,
    keys,
    limits,
    ops,
    reports,
    reservations,
)
from llmledger.server.session import Sessions
from llmledger.server.settings import ServerSettings
from llmledger.server.state import ServerState
from llmledger.server.webhooks import WebhookSender
from llmledger.storage.webhooks import DeliveryStore

__all__ = ["create_app", "enforcement_policy"]

log = logging.getLogger("llmledger.server")


def create_app(settings: ServerSettings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """A server app on `settings` (default: `ServerSettings.load()`), opening the ledger now.

    `engine`: an engine to serve instead of opening `settings.ledger` (the caller closes it).
    `settings.webhooks` receive the threshold alerts the engine fires (ingest, reservations).
    `LLMLEDGER_ADMIN_KEY` / `settings.admin_key` is stored as an admin key. Raises `LedgerError` /
    `ConfigError` when the ledger cannot be opened or a setting is wrong.
    """
    settings = settings or ServerSettings.load()
    owned = engine is None
    engine = engine or Engine(settings.ledger, prices=settings.prices, policy=enforcement_policy(settings))
    if settings.admin_key is not None:
        engine.keys.create("admin", name="LLMLEDGER_ADMIN_KEY", secret=settings.admin_key.get_secret_value())
    state = ServerState(settings, engine)
    sender = None
    if settings.webhooks:
        sender = WebhookSender(DeliveryStore(engine.ledger.engine), settings.webhooks)
        engine.enforcer.on_alert = sender.on_alert
    state.webhooks = sender

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if sender is not None:
            sender.start()
        yield
        if sender is not None:
            sender.stop()
        if owned:
            engine.close()

    app = FastAPI(
        title="llmledger",
        version=__version__,
        summary="Self-hosted metering and spend control for LLM apps",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.ledger = state
    app.state.sessions = Sessions()
    for module in (ingest, reservations, limits, reports, keys, ops, dashboard, dashboard_pages):
        app.include_router(module.router)
    _install_error_handlers(app)
    _install_metrics(app, state)

    _document_errors(app)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> JSONResponse:
        return JSONResponse(app.openapi())

    return app


def enforcement_policy(settings: ServerSettings) -> EnforcementPolicy:
    """The limit decision settings of a server process (`limit_timeout`, `on_ledger_fault`, ...), for
    every engine it serves: the API's and the gateway's."""
    return EnforcementPolicy(
        limit_timeout=settings.limit_timeout,
        on_ledger_fault=settings.on_ledger_fault,
        default_output_cap=settings.default_output_cap,
        reservation_ttl=settings.reservation_ttl,
    )


_ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "properties": {"error": {"type": "string", "description": "what is wrong and what to do"}},
    "required": ["error"],
}


def _document_errors(app: FastAPI) -> None:
    """Every error answer is `{"error": "..."}`: say so in the OpenAPI document too (FastAPI's
    default 422 schema describes a body this server never sends)."""
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = build()
            schemas = schema.get("components", {}).get("schemas", {})
            schemas.pop("ValidationError", None)
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = _ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method the path has, not only the first route's
            headers["Allow"] = ", ".join(_allowed(app, request))
        return _error(exc.status_code, str(exc.detail), headers or None)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
        )
        return _error(422, problems or "invalid request")

    @app.exception_handler(InvalidQueryError)
    async def bad_query(_: Request, exc: InvalidQueryError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(LedgerError)
    @app.exception_handler(sa.exc.OperationalError)
    async def ledger_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("ledger unavailable: %s", type(exc).__name__)
        return _error(503, "the ledger is unavailable; retry later", {"Retry-After": "1"})


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed(app: FastAPI, request: Request) -> list[str]:
    """The methods some route of `app` serves at the request's path (Starlette's own matching)."""
    found = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in app.routes):
            found.append(method)
    return found


def _install_metrics(app: FastAPI, state: ServerState) -> None:
    app.add_middleware(_Observe, metrics=state.metrics)


class _Observe:
    """Counts every request and its latency by route, method and status: a plain ASGI middleware
    (Starlette's `BaseHTTPMiddleware` adds a task group and memory streams to every request, about
    as much as the reservation route's own work)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - start)
