"""google-genai SDK: which REST actions are billable, and where their usage is (the patching is in
`instrumentation/genai.py`).

`usageMetadata`: `promptTokenCount` (+ `toolUsePromptTokenCount`) is the input including
`cachedContentTokenCount`; `candidatesTokenCount` EXCLUDES `thoughtsTokenCount`, so output is their
sum. Every stream chunk carries RUNNING totals: the last one counts. Gemini API embeddings report no
usage, so they are estimated from the request text (and marked `estimated`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from llmledger.instrumentation.usage import Usage, n

__all__ = ["endpoint", "read_body", "read_metadata", "requested_model", "stream_reader"]

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
        tokens["cache_read_tokens"] = cached  # more than the prompt would be impossible: normalise() notes it
    if thoughts:
        tokens["reasoning_tokens"] = thoughts
    for key, names in (("promptTokensDetails", _MODALITY_IN), ("candidatesTokensDetails", _MODALITY_OUT)):
        for detail in um.get(key) or ():
            name = names.get(str(detail.get("modality"))) if isinstance(detail, Mapping) else None
            if name is not None:
                tokens[name] = tokens.get(name, 0) + n(detail.get("tokenCount"))
    for detail in um.get("cacheTokensDetails") or ():
        if isinstance(detail, Mapping) and detail.get("modality") == "AUDIO":
            audio = n(detail.get("tokenCount"))
            if audio:
                tokens["cache_audio_read_tokens"] = tokens.get("cache_audio_read_tokens", 0) + audio
    usage = Usage(tokens, total=n(um.get("totalTokenCount")))
    usage.service_tier = _tier(um)
    return usage


_TRAFFIC_TIERS = {"ON_DEMAND_FLEX": "flex", "ON_DEMAND_PRIORITY": "priority"}
"""Vertex pay-as-you-go traffic types that are the service tiers the catalogue prices by name."""


def _tier(um: Mapping[str, Any]) -> str | None:
    """The tier that served the call, as reported (lowercase): Gemini API `serviceTier` (standard,
    flex, priority); Vertex `trafficType` (`ON_DEMAND_FLEX` / `ON_DEMAND_PRIORITY` are the flex /
    priority tiers; `PROVISIONED_THROUGHPUT` is prepaid capacity and other types keep their own
    name; on-demand is the standard and recorded as None)."""
    tier = um.get("serviceTier")
    if isinstance(tier, str) and tier:
        name = tier.lower().removeprefix("service_tier_")
        return None if name == "unspecified" else name
    traffic = um.get("trafficType")
    if not isinstance(traffic, str):
        return None
    upper = traffic.upper()
    if upper in ("ON_DEMAND", "TRAFFIC_TYPE_UNSPECIFIED", ""):
        return None
    return _TRAFFIC_TIERS.get(upper, traffic.lower())


def grounding_searches(data: Mapping[str, Any], model: str | None = None) -> int:
    """Grounding with Google Search, as billed (ai.google.dev/gemini-api/docs/pricing): Gemini 3
    and later bill each search query the model ran (unique, non-empty `webSearchQueries`; a
    grounded answer listing none counts one); Gemini 2.x and older bill once per grounded prompt,
    however many queries it ran. A model whose generation cannot be read is counted per query."""
    grounded = 0
    queries: set[str] = set()
    for candidate in data.get("candidates") or ():
        meta = candidate.get("groundingMetadata") if isinstance(candidate, Mapping) else None
        if isinstance(meta, Mapping):
            grounded += 1
            listed = meta.get("webSearchQueries")
            if isinstance(listed, list):
                queries.update(q for q in listed if isinstance(q, str) and q.strip())
    if not grounded:
        return 0
    generation = _generation(model)
    if generation is not None and generation < 3:
        return 1
    return max(len(queries), 1)


_GENERATION = re.compile(r"gemini-(\d+)")


def _generation(model: str | None) -> int | None:
    """The major version of a Gemini model name (`gemini-2.5-flash` -> 2), None if it has none."""
    found = _GENERATION.search(model or "")
    return int(found.group(1)) if found else None


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
    searches = grounding_searches(data, usage.model)
    if searches:
        usage.units = {"web_searches": searches}
    usage.request_id = rid if isinstance(rid, str) else None
    return usage


class _ChunkStream:
    """SSE chunks as `SdkHttpResponse` bodies; only the last one with usage is parsed, unless the
    stream is cut: then the kept bodies are read for the text they generated (`chars`)."""

    __slots__ = ("bodies", "final", "kept", "last")

    def __init__(self) -> None:
        self.final = False
        self.last: str | None = None
        self.bodies: list[str] = []  # strings are not tracked by the GC; capped at _KEEP characters
        self.kept = 0

    def chunk(self, item: Any) -> bool:
        body = item.body
        if body:
            if '"usageMetadata"' in body:
                self.last = body
                self.final = '"finishReason"' in body
            if self.kept < _KEEP:
                self.bodies.append(body)
                self.kept += len(body)
        return True

    def text(self) -> str:
        """What was generated so far — text and thought parts, function-call arguments — for the
        estimate of a stream cut before its running totals caught up (read only then)."""
        return "".join(generated_text(body) for body in self.bodies)

    @property
    def chars(self) -> int:
        """Characters generated so far (see `text`)."""
        return len(self.text())

    def usage(self) -> Usage | None:
        return read_body(self.last) if self.last is not None else None


_KEEP = 4_000_000


def generated_text(body: str) -> str:
    """The text, thoughts and function-call arguments (as JSON) in one response chunk's JSON."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    out: list[str] = []
    for candidate in (data.get("candidates") or ()) if isinstance(data, Mapping) else ():
        content = candidate.get("content") if isinstance(candidate, Mapping) else None
        for part in (content.get("parts") or ()) if isinstance(content, Mapping) else ():
            if not isinstance(part, Mapping):
                continue
            text = part.get("text")
            if isinstance(text, str):
                out.append(text)
            call = part.get("functionCall")
            if isinstance(call, Mapping) and call.get("args") is not None:
                out.append(json.dumps(call["args"], separators=(",", ":")))
    return "".join(out)


def stream_reader() -> _ChunkStream:
    """A fresh reader for one `streamGenerateContent` stream."""
    return _ChunkStream()
