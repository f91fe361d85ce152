"""The request hook for google-genai: `BaseApiClient.request` / `request_streamed` and async twins.

They receive the REST path (`models/gemini-2.5-flash:generateContent`), the JSON body and the
per-call `http_options`; `ledger_*` keywords ride in `config.http_options.headers` and are taken out
here. Non-stream bodies are JSON strings; streams are generators of chunks, metered as they are read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from llmledger.attribution.context import _current
from llmledger.instrumentation.call import Call, gate, meter_async, meter_sync
from llmledger.instrumentation.hooks import ATTRIBUTION_HEADER, decode_attribution, kwargs_hook, request_hook
from llmledger.instrumentation.patching import PatchSet, Target
from llmledger.instrumentation.providers import google

__all__ = ["install", "install_labels"]


def _split_header(http_options: Any) -> tuple[Any, str | None]:
    if http_options is None:
        return None, None
    is_map = isinstance(http_options, Mapping)
    headers = http_options.get("headers") if is_map else getattr(http_options, "headers", None)
    if not headers or ATTRIBUTION_HEADER not in headers:
        return http_options, None
    rest = {k: v for k, v in headers.items() if k != ATTRIBUTION_HEADER}
    if is_map:
        return {**http_options, "headers": rest}, headers[ATTRIBUTION_HEADER]
    return http_options.model_copy(update={"headers": rest}), headers[ATTRIBUTION_HEADER]


def _begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    names = ("self", "http_method", "path", "request_dict", "http_options")
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    if str(bound.get("http_method", "")).lower() != "post":
        return None
    path = bound.get("path")
    name = google.endpoint(path) if isinstance(path, str) else None
    if name is None or not isinstance(path, str):
        return None
    who = _current.get()
    http_options, header = _split_header(bound.get("http_options"))
    if header is not None:
        who = who.merged(decode_attribution(header))
        bound["http_options"] = http_options
    client = bound.pop("self")
    body = bound.get("request_dict")
    provider = "google-vertex" if getattr(client, "vertexai", False) else "gemini"
    call = Call(
        provider, name, google.requested_model(path), who, body if isinstance(body, Mapping) else None
    )
    swap = gate(call)
    if swap is not None and call.requested_model:  # a soft limit's downgrade: ask the cheaper model
        bound["path"] = path.replace(f"models/{call.requested_model}:", f"models/{swap}:", 1)
    return call, (client,), bound


def _finish(call: Call, result: Any) -> Any:
    call.ok(google.read_body(getattr(result, "body", None)))
    return result


def _finish_stream(call: Call, result: Any) -> Any:
    return meter_sync(call, google.stream_reader(), result)


def _finish_async_stream(call: Call, result: Any) -> Any:
    return meter_async(call, google.stream_reader(), result)


def _attach_header(kwargs: dict[str, Any], value: str) -> None:
    from google.genai import types

    def with_header(http_options: Any) -> Any:
        if http_options is None:
            return types.HttpOptions(headers={ATTRIBUTION_HEADER: value})
        if isinstance(http_options, Mapping):
            return {
                **http_options,
                "headers": {**(http_options.get("headers") or {}), ATTRIBUTION_HEADER: value},
            }
        headers = {**(http_options.headers or {}), ATTRIBUTION_HEADER: value}
        return http_options.model_copy(update={"headers": headers})

    config = kwargs.get("config")
    if config is None:
        kwargs["config"] = {"http_options": with_header(None)}
    elif isinstance(config, Mapping):
        kwargs["config"] = {**config, "http_options": with_header(config.get("http_options"))}
    else:
        kwargs["config"] = config.model_copy(update={"http_options": with_header(config.http_options)})


def _scrub(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The request without llmledger's header (the path of a request `_begin` did not rewrite)."""
    if len(args) > 4:
        http_options, header = _split_header(args[4])
        if header is not None:
            return (*args[:4], http_options, *args[5:]), kwargs
        return args, kwargs
    if "http_options" in kwargs:
        http_options, header = _split_header(kwargs["http_options"])
        if header is not None:
            return args, {**kwargs, "http_options": http_options}
    return args, kwargs


def _hooked(original: Callable[..., Any], finish: Callable[[Call, Any], Any]) -> Callable[..., Any]:
    return request_hook(original, _begin, finish, _scrub)


def install(patches: PatchSet) -> None:
    """Patch google-genai (raises LookupError if this SDK version lacks a target)."""
    client = "google.genai._api_client"
    hooks = (
        ("request", _finish),
        ("async_request", _finish),
        ("request_streamed", _finish_stream),
        ("async_request_streamed", _finish_async_stream),
    )
    for attr, finish in hooks:
        patches.add(Target(client, "BaseApiClient", attr), functools.partial(_hooked, finish=finish))


def _strip_header(kwargs: dict[str, Any]) -> None:
    config = kwargs.get("config")
    if config is None:
        return
    is_map = isinstance(config, Mapping)
    http_options = config.get("http_options") if is_map else getattr(config, "http_options", None)
    rest, header = _split_header(http_options)
    if header is None:
        return
    if is_map:
        kwargs["config"] = {**config, "http_options": rest}
    else:
        kwargs["config"] = config.model_copy(update={"http_options": rest})


def install_labels(patches: PatchSet, active: Callable[[], bool]) -> None:
    """Patch the billable methods to take `ledger_*` keywords (kept while llmledger is off)."""
    attach = kwargs_hook(_attach_header, _strip_header, active)
    for cls in ("Models", "AsyncModels"):
        for attr in ("generate_content", "generate_content_stream", "embed_content"):
            patches.add(Target("google.genai.models", cls, attr), attach)
