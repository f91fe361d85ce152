"""The request hook for Stainless-generated SDKs (openai, anthropic): one method per client class.

Both SDKs send every call through `SyncAPIClient.request(cast_to, options, *, stream, stream_cls)`
(and the async twin). The hook reads the endpoint from `options.url`, strips the `ledger_*`
header, lets the provider rewrite the body (OpenAI's `include_usage`), and swaps `stream_cls` for a
subclass of the SDK's own stream class, so callers keep the exact type and helpers they expect.
`with_raw_response` / `with_streaming_response` results are metered when `.parse()` is called
(or, if never parsed, recorded as unread when they are garbage-collected).
"""

from __future__ import annotations

import copy
import functools
import inspect
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmledger._internal import internal_error
from llmledger.attribution.context import _current
from llmledger.instrumentation.call import Call, StreamReader, gate, meter_async, meter_sync
from llmledger.instrumentation.hooks import ATTRIBUTION_HEADER, decode_attribution, kwargs_hook, request_hook
from llmledger.instrumentation.hosts import asks_usage, provider_for_url
from llmledger.instrumentation.patching import PatchSet, Target, resolve
from llmledger.instrumentation.usage import Usage

__all__ = ["StainlessSpec", "install", "install_labels"]

_CALL = "_llmledger_call"
_wrappers: tuple[type, ...] = ()  # the SDKs' raw-response classes, whose `parse` delivers later
_PROVIDER = "_llmledger_provider"
_UNREAD = "the raw response was never parsed, so its usage is unknown"


@dataclass(frozen=True)
class StainlessSpec:
    """What a Stainless SDK provider module declares: where to patch, and how to read usage."""

    family: str
    """The SDK's provider id, used when the base URL is not a known host."""
    module: str
    endpoint: Callable[[str], str | None]
    """URL path -> endpoint name, or None when the call is not billable."""
    read: Callable[[str, Any], Usage | None]
    """(endpoint, parsed response) -> usage, or None when the response carries none."""
    stream_reader: Callable[[str, bool], StreamReader]
    """(endpoint, hide the injected usage chunk) -> a fresh reader for one stream."""
    prepare: Callable[[str, Mapping[str, Any], bool], Mapping[str, Any] | None] = lambda e, b, a: None
    """(endpoint, streaming body, the host accepts the usage option) -> a rewritten body that asks
    for usage, or None to keep the caller's body as it is."""
    client_providers: Mapping[str, str] = field(default_factory=dict)
    """Client class name -> provider id, for clients the base URL does not identify (Azure, Bedrock)."""
    clients: tuple[str, str] = ("SyncAPIClient", "AsyncAPIClient")
    responses: tuple[str, ...] = ()
    """`module.Class` of the raw-response wrappers whose `parse` delivers a deferred result."""
    closers: tuple[Target, ...] = ()
    """Stream helpers whose `close()` bypasses the raw stream's `close()`."""
    methods: tuple[Target, ...] = ()
    """The billable SDK methods that accept `ledger_*` keyword arguments."""


def install(spec: StainlessSpec, patches: PatchSet) -> None:
    """Patch the SDK `spec` describes (raises LookupError if this SDK version lacks a target)."""
    sync_cls, async_cls = spec.clients
    for cls in (sync_cls, async_cls):
        patches.add(Target(f"{spec.module}._base_client", cls, "request"), lambda orig: _hook(spec, orig))
    global _wrappers
    for path in spec.responses:
        module, cls = path.rsplit(".", 1)
        target = Target(module, cls, "parse")
        patches.add(target, _parse_hook)
        owner, _ = resolve(target)
        if owner not in _wrappers:
            _wrappers = (*_wrappers, owner)
    for target in spec.closers:
        patches.add(target, _closer_hook)


def install_labels(spec: StainlessSpec, patches: PatchSet, active: Callable[[], bool]) -> None:
    """Patch the billable methods to take `ledger_*` keywords (kept while llmledger is off)."""
    attach = kwargs_hook(_attach_header, _strip_header, active)
    for target in spec.methods:
        patches.add(target, attach)


def _attach_header(kwargs: dict[str, Any], value: str) -> None:
    headers = kwargs.get("extra_headers")
    kwargs["extra_headers"] = {**(headers or {}), ATTRIBUTION_HEADER: value}


def _strip_header(kwargs: dict[str, Any]) -> None:
    headers = kwargs.get("extra_headers")
    if isinstance(headers, Mapping) and ATTRIBUTION_HEADER in headers:
        kwargs["extra_headers"] = {k: v for k, v in headers.items() if k != ATTRIBUTION_HEADER}


def _hook(spec: StainlessSpec, original: Callable[..., Any]) -> Callable[..., Any]:
    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        positional = len(args) > 2
        options = args[2] if positional else kwargs.get("options")
        if options is None or options.method != "post":
            return None
        endpoint = spec.endpoint(options.url)
        if endpoint is None:
            return None
        data = options.json_data
        body = data if data.__class__ is dict or isinstance(data, Mapping) else None
        who = _current.get()
        headers = options.headers
        sent = options
        if headers and isinstance(headers, Mapping) and ATTRIBUTION_HEADER in headers:
            options = copy.copy(options)
            options.headers = {k: v for k, v in headers.items() if k != ATTRIBUTION_HEADER}
            who = who.merged(decode_attribution(headers[ATTRIBUTION_HEADER]))
        reader = None
        provider, asks = _provider(spec, args[0])
        if kwargs.get("stream") and kwargs.get("stream_cls") is not None:
            rewritten = spec.prepare(endpoint, body, asks) if body is not None else None
            if rewritten is not None:
                options = copy.copy(options)
                options.json_data = rewritten
            reader = spec.stream_reader(endpoint, rewritten is not None)
            kwargs = {**kwargs, "stream_cls": _stream_class(kwargs["stream_cls"])}
        model = body.get("model") if body is not None else None
        call = Call(provider, endpoint, model if isinstance(model, str) else None, who, body)
        call.reader = reader
        swap = gate(call)  # spend limits: raises LimitExceeded before anything is sent
        if swap is not None and body is not None:  # a soft limit's downgrade: send the cheaper model
            options = copy.copy(options)
            options.json_data = {**options.json_data, "model": swap}  # keeps an injected include_usage
        if options is not sent:  # the request as rewritten (else the caller's own arguments)
            if positional:
                args = (*args[:2], options, *args[3:])
            else:
                kwargs = {**kwargs, "options": options}
        return call, args, kwargs

    def finish(call: Call, result: Any) -> Any:
        _deliver(spec, call, result, deferred=True)
        return result

    return request_hook(original, begin, finish, _scrub)


def _scrub(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The request without llmledger's header (the path of a request `begin` did not rewrite)."""
    positional = len(args) > 2
    options: Any = args[2] if positional else kwargs.get("options")
    headers = getattr(options, "headers", None)
    if not isinstance(headers, Mapping) or ATTRIBUTION_HEADER not in headers:
        return args, kwargs
    clean = copy.copy(options)
    clean.headers = {k: v for k, v in headers.items() if k != ATTRIBUTION_HEADER}
    if positional:
        return (*args[:2], clean, *args[3:]), kwargs
    return args, {**kwargs, "options": clean}


def _provider(spec: StainlessSpec, client: Any) -> tuple[str, bool]:
    """(provider id, whether llmledger may ask this host for stream usage): only a host llmledger
    knows (by client class or base URL) and whose convention accepts the option."""
    base = client._base_url
    cached = client.__dict__.get(_PROVIDER)
    if cached is not None and cached[0] is base:
        return cached[1], cached[2]
    provider = None
    for cls in type(client).__mro__:
        provider = spec.client_providers.get(cls.__name__)
        if provider is not None:
            break
    if provider is None:
        provider = provider_for_url(base, "")
    query = getattr(client, "_custom_query", None)
    asks = asks_usage(provider, query.get("api-version") if isinstance(query, Mapping) else None)
    provider = provider or spec.family
    client.__dict__[_PROVIDER] = (base, provider, asks)
    return provider, asks


def _deliver(spec: StainlessSpec, call: Call, result: Any, *, deferred: bool) -> None:
    if isinstance(result, _Metered):
        result.__dict__[_CALL] = call
        weakref.finalize(result, call.close_stream)
    elif deferred and isinstance(result, _wrappers):
        result.__dict__[_CALL] = (spec, call)
        weakref.finalize(result, call.unknown, _UNREAD)
    else:
        call.ok(spec.read(call.endpoint, result))


def _parse_hook(original: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def async_parse(self: Any, *args: Any, **kwargs: Any) -> Any:
            pending = self.__dict__.pop(_CALL, None)
            result = await original(self, *args, **kwargs)
            if pending is not None:
                _deliver_parsed(pending, result)
            return result

        return async_parse

    @functools.wraps(original)
    def parse(self: Any, *args: Any, **kwargs: Any) -> Any:
        pending = self.__dict__.pop(_CALL, None)
        result = original(self, *args, **kwargs)
        if pending is not None:
            _deliver_parsed(pending, result)
        return result

    return parse


def _deliver_parsed(pending: tuple[StainlessSpec, Call], result: Any) -> None:
    spec, call = pending
    try:
        _deliver(spec, call, result, deferred=False)
    except Exception as exc:
        internal_error(exc, "reading a parsed response")


def _closer_hook(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def close(self: Any, *args: Any, **kwargs: Any) -> Any:
        raw = getattr(self, "_raw_stream", None)
        call = getattr(raw, "__dict__", {}).get(_CALL)
        if call is not None:
            call.close_stream()
        return original(self, *args, **kwargs)

    return close


class _Metered:
    """Marker base of the metered stream subclasses."""


_classes: dict[Any, type] = {}


def _stream_class(stream_cls: Any) -> Any:
    """A subclass of the SDK's stream class (cached) whose `__stream__` is metered."""
    cls = _classes.get(stream_cls)
    if cls is not None:
        return cls
    origin = getattr(stream_cls, "__origin__", stream_cls)
    if inspect.isasyncgenfunction(origin.__stream__):

        class MeteredAsyncStream(stream_cls, _Metered):  # type: ignore[misc]
            async def __stream__(self) -> AsyncIterator[Any]:
                inner = super().__stream__()
                call = self.__dict__.get(_CALL)
                if call is None or call.reader is None:
                    async for item in inner:
                        yield item
                    return
                async for item in meter_async(call, call.reader, inner):
                    yield item

            async def close(self) -> None:
                call = self.__dict__.get(_CALL)
                if call is not None:
                    call.close_stream()
                await super().close()

        cls = MeteredAsyncStream
    else:

        class MeteredStream(stream_cls, _Metered):  # type: ignore[misc]
            def __stream__(self) -> Iterator[Any]:
                inner = super().__stream__()
                call = self.__dict__.get(_CALL)
                if call is None or call.reader is None:
                    yield from inner
                    return
                yield from meter_sync(call, call.reader, inner)

            def close(self) -> None:
                call = self.__dict__.get(_CALL)
                if call is not None:
                    call.close_stream()
                super().close()

        cls = MeteredStream
    cls.__name__ = cls.__qualname__ = origin.__name__
    cls.__module__ = origin.__module__
    if len(_classes) < 256:
        _classes[stream_cls] = cls
    return cls
