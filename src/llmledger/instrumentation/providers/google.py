"""google-genai SDK: what to patch, where usage is.

The SDK sends every call through `BaseApiClient.request` / `request_streamed` and their async
twins, with the REST path (`models/gemini-2.5-flash:generateContent`) and the raw JSON body.
`usageMetadata`: `promptTokenCount` (+ `toolUsePromptTokenCount`) is the input including
`cachedContentTokenCount`; `candidatesTokenCount` EXCLUDES `thoughtsTokenCount`, so output is their
sum. Every stream chunk carries RUNNING totals: the last one counts. Gemini API embeddings report no
usage, so they are estimated from the request text (and marked `estimated`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from llmledger.attribution.context import _current
from llmledger.instrumentation.call import Call, meter_async, meter_sync
from llmledger.instrumentation.hooks import ATTRIBUTION_HEADER, decode_attribution, kwargs_hook, request_hook
from llmledger.instrumentation.patching import PatchSet, Target
from llmledger.instrumentation.usage import Usage, n

__all__ = ["endpoint", "install", "read_body", "read_metadata", "requested_model"]

_ACTIONS = {
    "generateContent": "generate_content",
    "streamGenerateContent": "generate_content",
    "embedContent": "embed_content",
    "batchEmbedContents": "embed_content",
}
_MODALITY_IN = {"AUDIO": "input_audio_tokens", "IMAGE": "input_image_tokens"}
_MODALITY_OUT = {"AUDIO": "output_audio_tokens", "IMAGE": "output_image_tokens"}


def endpoint(path: str) -> str | None:
    """`generate_content` / `embed_content` for the billable REST actions, else None."""
    head = path.split("?", 1)[0]
    action = head.rsplit(":", 1)[1] if ":" in head else ""
    return _ACTIONS.get(action)


def requested_model(path: str) -> str | None:
    """The model id in a REST path (`.../models/gemini-2.5-flash:generateContent` -> `gemini-2.5-flash`)."""
    head = path.split("?", 1)[0].rsplit(":", 1)[0]
    model = head.rsplit("/", 1)[-1]
    return model or None


def read_metadata(um: Mapping[str, Any]) -> Usage:
    """Token counts of one `usageMetadata` object (REST camelCase)."""
    prompt = n(um.get("promptTokenCount")) + n(um.get("toolUsePromptTokenCount"))
    thoughts = n(um.get("thoughtsTokenCount"))
    tokens = {"input_tokens": prompt, "output_tokens": n(um.get("candidatesTokenCount")) + thoughts}
    cached = n(um.get("cachedContentTokenCount"))
    if cached:
        tokens["cache_read_tokens"] = min(cached, prompt)
    if thoughts:
        tokens["reasoning_tokens"] = thoughts
    for key, names in (("promptTokensDetails", _MODALITY_IN), ("candidatesTokensDetails", _MODALITY_OUT)):
        for detail in um.get(key) or ():
            name = names.get(str(detail.get("modality"))) if isinstance(detail, Mapping) else None
            if name is not None:
                tokens[name] = tokens.get(name, 0) + n(detail.get("tokenCount"))
    for detail in um.get("cacheTokensDetails") or ():
        if isinstance(detail, Mapping) and detail.get("modality") == "AUDIO":
            audio = min(n(detail.get("tokenCount")), tokens.get("cache_read_tokens", 0))
            if audio:
                tokens["cache_audio_read_tokens"] = min(audio, tokens.get("input_audio_tokens", 0))
    return Usage(tokens)


def read_body(body: Any) -> Usage | None:
    """Usage of one JSON response body (a string), or None when it has no `usageMetadata`."""
    if not body:
        return None
    data = json.loads(body) if isinstance(body, str) else body
    if not isinstance(data, Mapping):
        return None
    um = data.get("usageMetadata")
    if not isinstance(um, Mapping):
        return None
    usage = read_metadata(um)
    model, rid = data.get("modelVersion"), data.get("responseId")
    usage.model = model if isinstance(model, str) and model else None
    usage.request_id = rid if isinstance(rid, str) else None
    return usage


class _ChunkStream:
    """SSE chunks as `SdkHttpResponse` bodies; only the last one with usage is ever parsed."""

    __slots__ = ("final", "last")

    def __init__(self) -> None:
        self.final = False
        self.last: str | None = None

    def chunk(self, item: Any) -> bool:
        body = item.body
        if body and '"usageMetadata"' in body:
            self.last = body
            self.final = '"finishReason"' in body
        return True

    def usage(self) -> Usage | None:
        return read_body(self.last) if self.last is not None else None

    def text(self) -> str:
        return ""


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
    name = endpoint(path) if isinstance(path, str) else None
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
    call = Call(provider, name, requested_model(path), who, body if isinstance(body, Mapping) else None)
    return call, (client,), bound


def _finish(call: Call, result: Any) -> Any:
    call.ok(read_body(getattr(result, "body", None)))
    return result


def _finish_stream(call: Call, result: Any) -> Any:
    return meter_sync(call, _ChunkStream(), result)


def _finish_async_stream(call: Call, result: Any) -> Any:
    return meter_async(call, _ChunkStream(), result)


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


def _hooked(original: Callable[..., Any], finish: Callable[[Call, Any], Any]) -> Callable[..., Any]:
    return request_hook(original, _begin, finish)


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
    attach = kwargs_hook(_attach_header)
    for cls in ("Models", "AsyncModels"):
        for attr in ("generate_content", "generate_content_stream", "embed_content"):
            patches.add(Target("google.genai.models", cls, attr), attach)
