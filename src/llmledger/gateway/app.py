"""The gateway as a raw ASGI application: `create_gateway(settings, engine)`.

Raw ASGI rather than framework routes: the gateway's work per request is a few dictionary look-ups
around one upstream call, and a framework's request objects, dependency injection and middleware
cost more CPU than all of it (measured: docs/performance.md). Paths it serves:

| path | method | upstream path | metered |
|---|---|---|---|
| `/v1/chat/completions`, `/v1/responses`, `/v1/completions`, `/v1/embeddings` | POST | the same | yes |
| `/v1/models`, `/v1/models/{id}` | GET | the same | no |
| `/anthropic/v1/messages` | POST | `/v1/messages` | yes |
| `/anthropic/v1/messages/count_tokens` | POST | `/v1/messages/count_tokens` | no (free) |
| `/anthropic/v1/models`, `/anthropic/v1/models/{id}` | GET | `/v1/models...` | no |
| `/healthz` | GET | – | – |
| `/metrics` | GET | – (Prometheus; `llmledger serve` shows the gateway's in its own) | – |

Any other path is 404: nothing is relayed that is not metered or free (no side door around the
limits, such as batch or file APIs).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry

from llmledger.engine import Engine
from llmledger.gateway.metrics import GatewayMetrics
from llmledger.gateway.provider_errors import error_body
from llmledger.gateway.recorder import Recorder, journal_dir
from llmledger.gateway.routes import Router
from llmledger.gateway.settings import GatewaySettings
from llmledger.gateway.upstream import UpstreamPool
from llmledger.server.state import RateLimiter
from llmledger.storage.keys import ApiKey

__all__ = ["ENDPOINTS", "Gateway", "Refusal", "create_gateway", "freeze_heap"]

log = logging.getLogger("llmledger.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ENDPOINTS: dict[str, tuple[str, str | None, str]] = {
    "/v1/chat/completions": ("openai", "chat.completions", "/chat/completions"),
    "/v1/responses": ("openai", "responses", "/responses"),
    "/v1/completions": ("openai", "completions", "/completions"),
    "/v1/embeddings": ("openai", "embeddings", "/embeddings"),
    "/anthropic/v1/messages": ("anthropic", "messages", "/v1/messages"),
    "/anthropic/v1/messages/count_tokens": ("anthropic", None, "/v1/messages/count_tokens"),
}
"""Gateway path -> (API, billable endpoint or None for a free one, upstream path after the base)."""

KEY_CACHE_SECONDS = 5.0
"""How long a verified llmledger key is trusted without asking the ledger again: a key revoked
elsewhere (another process, `llmledger keys revoke`) stops working within this many seconds; one
revoked through the server that mounts this gateway stops at once (`forget_key`)."""
DEFAULT_RATE_LIMIT = 200.0
"""Requests per second per llmledger key (bursts of twice that), as the server's default."""


class Refusal(Exception):
    """An answer the gateway gives itself (in the provider's error format)."""

    def __init__(
        self, status: int, message: str, code: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or []


def _ledger_key(value: bytes) -> str | None:
    text = value.decode("latin-1").strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    return text if text.startswith("llk_") else None


class Gateway:
    """One gateway: its settings, router, engine, recorder and upstream connections (opened in the
    event loop on first use). Serve it with any ASGI server; `aclose()` when done."""

    def __init__(
        self,
        settings: GatewaySettings,
        engine: Engine,
        *,
        ledger_url: str | None = None,
        limiter: RateLimiter | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.router = Router(settings)
        journal = journal_dir(ledger_url) if settings.journal and ledger_url else None
        self.recorder = Recorder(engine, journal)
        self.limiter = limiter if limiter is not None else RateLimiter(DEFAULT_RATE_LIMIT)
        """Each llmledger key's rate (the server's limiter when mounted: one budget per key)."""
        self.metrics = GatewayMetrics(registry, lambda: float(self.recorder.quarantined))
        self.key_cache_seconds = KEY_CACHE_SECONDS
        self._upstream: UpstreamPool | None = None
        self._keys: dict[str, tuple[ApiKey, float]] = {}
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="llmledger-gateway")
        """Where blocking ledger work runs (limit decisions, key look-ups), off the event loop."""
        self.warm = False
        """Whether a metered call has been recorded (the heap is frozen again after the first:
        see `freeze_heap`)."""

    @property
    def upstream(self) -> UpstreamPool:
        """The upstream connections (opened in the running event loop on first use)."""
        if self._upstream is None or self._upstream.closed:
            s = self.settings
            self._upstream = UpstreamPool(self.router.allow, s.connect_timeout, s.read_timeout)
        return self._upstream

    async def aclose(self) -> None:
        """Close the upstream connections and flush the events (the engine stays open)."""
        if self._upstream is not None:
            await self._upstream.close()
            self._upstream = None
        await asyncio.get_running_loop().run_in_executor(self.pool, self.recorder.close)
        self.pool.shutdown(wait=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                freeze_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (a gateway path, or 404 in the OpenAI format)."""
        exchange, forward_free = _EXCHANGE or _exchange()
        path: str = scope["path"]
        spec = ENDPOINTS.get(path)
        api = "anthropic" if path.startswith("/anthropic/") else "openai"
        try:
            if spec is not None:
                if scope["method"] != "POST":
                    raise Refusal(405, f"{path} takes POST", "method_not_allowed", [(b"allow", b"POST")])
                key = await self.authenticate(scope["headers"])
                if spec[1] is None:
                    await forward_free(self, scope, receive, send, key, spec)
                else:
                    await exchange(self, scope, receive, send, key, spec)
                return
            models = "/anthropic/v1/models" if api == "anthropic" else "/v1/models"
            if path == models or path.startswith(models + "/"):
                if scope["method"] != "GET":
                    raise Refusal(405, f"{path} takes GET", "method_not_allowed", [(b"allow", b"GET")])
                key = await self.authenticate(scope["headers"])
                suffix = path[len("/anthropic") :] if api == "anthropic" else path[len("/v1") :]
                await forward_free(self, scope, receive, send, key, (api, None, suffix))
                return
            if path == "/healthz":
                await respond(send, 200, b'{"status":"ok"}')
                return
            if path == "/metrics":
                await respond(send, 200, self.metrics.render(), [], _PROMETHEUS)
                return
            raise Refusal(404, f"the gateway does not serve {path}", "not_found")
        except Refusal as refusal:
            self.metrics.refusal(refusal.code)
            await refuse(send, api, refusal)

    async def authenticate(self, headers: list[tuple[bytes, bytes]]) -> ApiKey:
        """The calling llmledger key (`X-Ledger-Key`, else `Authorization: Bearer llk_...`, else
        `x-api-key: llk_...`) with the `ingest` scope; raises `Refusal` 401 / 403."""
        presented = None
        for name, value in headers:
            if name == b"x-ledger-key":
                presented = value.decode("latin-1").strip()
                break
            if name in (b"authorization", b"x-api-key") and presented is None:
                presented = _ledger_key(value)
        if not presented:
            raise Refusal(
                401,
                "missing llmledger key: send it in X-Ledger-Key (or as the API key when the "
                "gateway's routes hold the provider keys)",
                "missing_ledger_key",
            )
        key = await self._verify(presented)
        if key is None:
            raise Refusal(401, "invalid llmledger key", "invalid_ledger_key")
        if not key.allows("ingest"):
            raise Refusal(403, f"this llmledger key's scope ({key.scope}) cannot make calls", "forbidden")
        wait = self.limiter.take(key.key_id)
        if wait:
            raise Refusal(
                429,
                f"rate limit of this llmledger key exceeded ({self.limiter.rate:g} requests per second)",
                "key_rate_limited",
                [(b"retry-after", str(max(1, math.ceil(wait))).encode()), (b"x-should-retry", b"true")],
            )
        return key

    def forget_key(self, key_id: str) -> None:
        """Drop a revoked key from the cache: its next request is refused."""
        for digest in [d for d, (k, _) in self._keys.items() if k.key_id == key_id]:
            self._keys.pop(digest, None)

    async def _verify(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).hexdigest()
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        if not presented.startswith("llk_") or len(presented) > 128:
            return None
        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(self.pool, self.engine.keys.verify, presented)
        if key is None:
            self._keys.pop(digest, None)
        else:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[digest] = (key, now + self.key_cache_seconds)
        return key


def freeze_heap() -> None:
    """Put every object alive now out of the cyclic garbage collector's reach (`gc.freeze`): the
    modules, settings and price catalogue a server holds for its whole life. Called once started
    and again after the first metered call (which loads the price catalogue). Without it each full
    collection walked the ~135k objects a gateway holds: 100-300 ms with the event loop stopped
    (measured, docs/performance.md), every 1,000-2,000 calls. Frozen objects are still freed by
    reference counting; only cycles among them stay (a few start-up leftovers)."""
    gc.freeze()


_EXCHANGE: list[Any] = []


def _exchange() -> list[Any]:
    from llmledger.gateway.exchange import exchange, forward_free  # it imports this module

    _EXCHANGE[:] = [exchange, forward_free]
    return _EXCHANGE


_JSON = (b"content-type", b"application/json")
_PROMETHEUS = (b"content-type", b"text/plain; version=0.0.4; charset=utf-8")


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: tuple[bytes, bytes] = _JSON,
) -> None:
    """Send a whole answer (JSON unless `content_type` says otherwise)."""
    head = [content_type, (b"content-length", str(len(body)).encode()), *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def refuse(send: Send, api: str, refusal: Refusal) -> None:
    """Answer a refusal in the API's error format, marked `X-Ledger-Error`."""
    headers = [(b"x-ledger-error", refusal.code.encode()), *refusal.headers]
    await respond(
        send, refusal.status, error_body(api, refusal.status, refusal.message, refusal.code), headers
    )


def create_gateway(
    settings: GatewaySettings | None = None,
    engine: Engine | None = None,
    *,
    ledger: str | None = None,
    limiter: RateLimiter | None = None,
    registry: CollectorRegistry | None = None,
) -> Gateway:
    """A gateway on `settings` (default: `GatewaySettings.load()`) recording into `engine`, or into a
    new engine on `ledger` (a database URL). `limiter`: each key's rate (default: 200 requests/s
    per key); `registry`: where its metrics go (default: its own, served at `/metrics`). Raises
    `ConfigError` for bad settings or routes."""
    settings = settings or GatewaySettings.load()
    if engine is None:
        if ledger is None:
            raise ValueError("create_gateway needs an engine or a ledger URL")
        engine = Engine(ledger)
    return Gateway(settings, engine, ledger_url=ledger, limiter=limiter, registry=registry)


def dumps(payload: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(payload, separators=(",", ":")).encode()
