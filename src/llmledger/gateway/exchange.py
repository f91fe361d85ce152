"""One request through the gateway: authenticate -> attribute -> reserve -> forward -> meter.

`exchange()` serves the metered endpoints, `forward_free()` the free ones (models, count_tokens).
The response goes back as it comes: a JSON body whole (with `X-Ledger-Cost-USD`), a stream event by
event as the upstream sends them. Upstream errors pass through unchanged and are recorded;
timeouts and unreachable upstreams get a 504 / 502 in the provider's format, recorded too.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import orjson

from llmledger._internal import internal_error
from llmledger.errors import AttributionRefused, InvalidUsageError, UpstreamRefused
from llmledger.events.checks import check_text
from llmledger.events.schema import TEXT_LIMITS
from llmledger.gateway.answer import finish, relay_stream, relay_whole
from llmledger.gateway.app import ENDPOINTS, Gateway, Receive, Refusal, Scope, Send, respond
from llmledger.gateway.attribution import SHORT_NAMES, attribution_of
from llmledger.gateway.enforce import admit, release
from llmledger.gateway.meter import Metering
from llmledger.gateway.relay import HOP_BY_HOP, response_headers
from llmledger.gateway.routes import NoUpstream, Target
from llmledger.gateway.upstream import UpstreamResponse
from llmledger.gateway.wire import loads, reader_for
from llmledger.instrumentation.providers.openai import prepare
from llmledger.storage.keys import ApiKey

__all__ = ["exchange", "forward_free"]

_NOT_FORWARDED = (
    HOP_BY_HOP
    | {b"host", b"content-length", b"accept-encoding", b"cookie", b"x-forwarded-for", b"forwarded"}
    | {k.encode() for k in SHORT_NAMES}
)
_AUTH = frozenset((b"authorization", b"x-api-key", b"api-key"))
_RETRY_STATUSES = frozenset((429, 500, 502, 503, 504, 529))
_SUFFIXES = {spec[1]: spec[2] for spec in ENDPOINTS.values() if spec[1] is not None}


async def _read(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refusal(413, f"request body over {limit} bytes", "body_too_large")
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


Headers = list[tuple[bytes, bytes]]


def _refuse_encoded(headers: Headers) -> None:
    """A body that is not JSON because it is compressed: say so (415), not "not a JSON object"."""
    for name, value in headers:
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise Refusal(
                415,
                f"Content-Encoding {value.decode('latin-1')[:40]!r} is not supported: the gateway reads"
                " the request body to meter it; send the JSON uncompressed",
                "unsupported_encoding",
            )


def _client_side(headers: Headers) -> tuple[Headers, str | None, bool]:
    """(headers to forward, `X-Ledger-Upstream`, whether a provider key is among them)."""
    out: Headers = []
    upstream = None
    has_key = False
    for name, value in headers:
        if name in _NOT_FORWARDED:
            continue
        if name[:9] == b"x-ledger-":
            if name == b"x-ledger-upstream":
                upstream = value.decode("latin-1").strip()
            continue
        if name in _AUTH:
            if b"llk_" in value:  # a ledger key never goes upstream
                continue
            has_key = True
        out.append((name, value))
    return out, upstream, has_key


def _for_target(forwarded: Headers, target: Target) -> Headers:
    if target.auth is None:
        return forwarded
    kept = [(k, v) for k, v in forwarded if k not in _AUTH]
    kept.append(target.auth)
    return kept


async def _open(
    gw: Gateway,
    method: bytes,
    targets: list[Target],
    suffix: str,
    query: bytes,
    forwarded: Headers,
    payload: bytes | None,
    on_failure: Any,
) -> tuple[UpstreamResponse, Target]:
    """Send to the first target that answers without a retryable failure (the last one's answer
    is returned whatever it is). `on_failure(target, status, error_type)` records each failure."""
    upstream = gw.upstream
    last = len(targets) - 1
    # `suffix` comes from the ASGI path, already percent-DECODED: encoded again, so a client's
    # `%0D%0A` can never become a line break in the upstream request line (request smuggling)
    path = quote(suffix, safe=_PATH_SAFE).encode() + (b"?" + query if query else b"")
    for i, target in enumerate(targets):
        try:
            response = await upstream.request(
                method, target.base, path, _for_target(forwarded, target), payload
            )
        except OSError as exc:  # refused, timed out (TimeoutError is an OSError), unreachable
            if isinstance(exc, UpstreamRefused):
                on_failure(target, 403, "UpstreamRefused")
                if i == last:
                    raise Refusal(403, str(exc), "upstream_refused") from None
                continue
            timeout = isinstance(exc, TimeoutError)
            on_failure(target, 504 if timeout else 502, "Timeout" if timeout else type(exc).__name__)
            if i == last:
                if timeout:
                    raise Refusal(504, "the upstream did not answer in time", "upstream_timeout") from None
                raise Refusal(
                    502, f"the upstream could not be reached ({type(exc).__name__})", "upstream_unreachable"
                ) from None
            continue
        if i < last and response.status in _RETRY_STATUSES:
            on_failure(target, response.status, f"HTTP {response.status}")
            response.release()
            continue
        return response, target
    raise AssertionError("no target")  # pragma: no cover - targets is never empty


_PATH_SAFE = "/:@!$&'()*+,;=-._~"
"""Characters a path keeps as they are when it is encoded again for the upstream (RFC 3986 pchar)."""


async def exchange(
    gw: Gateway, scope: Scope, receive: Receive, send: Send, key: ApiKey, spec: tuple[str, str | None, str]
) -> None:
    """Serve one metered request."""
    api, endpoint, _ = spec
    assert endpoint is not None
    t0 = time.perf_counter()
    raw = await _read(receive, gw.settings.max_body_bytes)
    try:
        body = loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        _refuse_encoded(scope["headers"])
        raise Refusal(400, "the request body must be a JSON object", "bad_body")
    headers = scope["headers"]
    try:
        who = attribution_of(headers, body, key.tenant)
    except AttributionRefused as exc:
        raise Refusal(403 if exc.forbidden else 400, str(exc), "bad_attribution") from None
    forwarded, upstream, has_key = _client_side(headers)
    model = body.get("model")
    if model is not None:  # a name the ledger could not store is refused here, as by track() and ingest
        try:
            check_text("model", model, TEXT_LIMITS["model"], required=True)
        except InvalidUsageError as exc:
            raise Refusal(400, str(exc), "bad_model") from None
    model = model if isinstance(model, str) and model else None
    try:
        targets = gw.router.targets(api, model, upstream, has_key)
    except UpstreamRefused as exc:
        raise Refusal(403, str(exc), "upstream_refused") from None
    except NoUpstream as exc:
        raise Refusal(400, str(exc), "no_upstream") from None
    stream = body.get("stream") is True
    meter = Metering(targets[0].provider, endpoint, model, who, body, stream)
    swap = await admit(gw, meter, body)  # spend limits: a refusal is answered before anything is sent
    try:
        await _forward(gw, scope, receive, send, meter, targets if swap is None else None, forwarded, raw, t0)
    except BaseException as exc:
        if meter.held is not None or meter.reservation is not None:  # no event recorded yet
            await _abandoned(gw, meter, exc)
        raise


async def _abandoned(gw: Gateway, meter: Metering, exc: BaseException) -> None:
    """Record the call a fault or a disconnected client ended before its answer was relayed: it
    may have reached the provider, so input is billed, estimated; the reservation is settled.
    A refusal of the gateway's own (an upstream not allowed) sent nothing: released only."""
    if isinstance(exc, (Refusal, UpstreamRefused, NoUpstream)):
        await release(gw, meter)
        return
    try:
        loop = asyncio.get_running_loop()
        usage = await loop.run_in_executor(gw.pool, meter.estimate, None, 0, "")
        gone = isinstance(exc, asyncio.CancelledError)
        event = meter.event(
            gw.engine.pricer,
            usage,
            complete=False,
            status="cancelled" if gone else "error",
            error_type="ClientDisconnected" if gone else type(exc).__name__,
        )
        await finish(gw, meter, event)
    except BaseException as again:
        internal_error(again, "recording an abandoned gateway call")
        await release(gw, meter)


async def _forward(
    gw: Gateway,
    scope: Scope,
    receive: Receive,
    send: Send,
    meter: Metering,
    targets: list[Target] | None,
    forwarded: Headers,
    raw: bytes,
    t0: float,
) -> None:
    """Send the request (the downgraded model's when `targets` is None) and relay the answer."""
    body = meter.body
    assert body is not None
    endpoint, stream, api = (
        meter.endpoint,
        meter.stream,
        "anthropic" if meter.endpoint == "messages" else "openai",
    )
    if targets is None:  # a soft limit's downgrade: the cheaper model, by its own routes
        body = {**body, "model": meter.sent_model}
        targets = gw.router.targets(api, meter.sent_model, _upstream_of(scope), _has_key(forwarded))
    payload = raw if body is meter.body else _dumps(body)
    hide = False
    if stream and endpoint in ("chat.completions", "completions") and targets[0].asks_usage:
        rewritten = prepare(endpoint, body, True)
        if rewritten is not None:
            payload, hide = _dumps(rewritten), True
    pricer = gw.engine.pricer

    def failed(target: Target, status: int, error_type: str) -> None:
        attempt = Metering(target.provider, endpoint, meter.requested_model, meter.who, None, stream)
        attempt.t0, attempt.wall, attempt.sent_model = meter.t0, meter.wall, meter.sent_model
        gw.recorder.record(attempt.event(pricer, None, complete=False, status="error", error_type=error_type))
        gw.metrics.upstream_error(error_type)

    try:
        response, target = await _open(
            gw,
            b"POST",
            targets,
            _SUFFIXES[endpoint],
            scope.get("query_string", b""),
            forwarded,
            payload,
            failed if len(targets) > 1 else lambda *a: None,
        )
    except Refusal as refusal:
        if refusal.code != "upstream_refused":
            event = meter.event(pricer, None, complete=False, status="error", error_type=refusal.code)
            await finish(gw, meter, event)
        raise
    meter.provider = target.provider
    t_up = time.perf_counter()
    try:
        if stream and response.status == 200 and response.content_type == "text/event-stream":
            await relay_stream(gw, meter, response, send, receive, reader_for(endpoint, hide), t0, t_up)
        else:
            await relay_whole(gw, meter, response, send, t0, t_up)
    finally:
        response.release()


def _dumps(body: Any) -> bytes:
    """A rewritten request body (orjson; the standard library for what orjson cannot write)."""
    try:
        return orjson.dumps(body)
    except TypeError:  # orjson.JSONEncodeError: an integer over 64 bits, say
        return json.dumps(body, separators=(",", ":")).encode()


def _upstream_of(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-ledger-upstream":
            return str(value.decode("latin-1").strip())
    return None


def _has_key(forwarded: Headers) -> bool:
    return any(k in _AUTH for k, _ in forwarded)


async def forward_free(
    gw: Gateway, scope: Scope, receive: Receive, send: Send, key: ApiKey, spec: tuple[str, str | None, str]
) -> None:
    """Relay a request that costs nothing (models, count_tokens) unmetered."""
    api, _, suffix = spec
    method = scope["method"]
    raw = await _read(receive, gw.settings.max_body_bytes) if method == "POST" else None
    forwarded, upstream, has_key = _client_side(scope["headers"])
    model = None
    if raw:
        try:
            body = json.loads(raw)
            model = body.get("model") if isinstance(body, dict) else None
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to read: relayed as is
            pass
    if method == "GET" and upstream is None and not has_key and gw.router.routes:
        names = gw.router.models(api)
        if suffix == "/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "llmledger"} for m in names]
            await respond(send, 200, json.dumps({"object": "list", "data": data}).encode())
            return
        name = suffix.rsplit("/", 1)[-1]
        if name in names:
            await respond(
                send,
                200,
                json.dumps({"id": name, "object": "model", "created": 0, "owned_by": "llmledger"}).encode(),
            )
            return
        raise Refusal(404, f"no route serves model {name!r}", "model_not_found")
    try:
        targets = gw.router.targets(api, model if isinstance(model, str) else None, upstream, has_key)
    except UpstreamRefused as exc:
        raise Refusal(403, str(exc), "upstream_refused") from None
    except NoUpstream as exc:
        raise Refusal(400, str(exc), "no_upstream") from None
    response, _ = await _open(
        gw, method.encode(), targets, suffix, scope.get("query_string", b""), forwarded, raw, lambda *a: None
    )
    try:
        body = await response.read()
    finally:
        response.release()
    head = response_headers(response, [(b"content-length", str(len(body)).encode())])
    await send({"type": "http.response.start", "status": response.status, "headers": head})
    await send({"type": "http.response.body", "body": body})
