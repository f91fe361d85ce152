"""Reading a provider request body for what multiplies its cost: its output cap, choices, service tier,
server-side tools, cache marks and audio — and `shape_of`, the whole `Shape` in one pass.

Pure functions of the JSON body (OpenAI Chat Completions / Responses, Anthropic Messages, Gemini);
no I/O. The prompt text is read only to bound or estimate its token count; it is never kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmledger.limit.shape import TOOL_FEES, Shape
from llmledger.limit.worst import DEFAULT_TOOL_CALLS
from llmledger.tokens.estimate import estimate_tokens, request_text
from llmledger.tokens.prompt import prompt_tokens_bound

__all__ = [
    "asks_audio",
    "choices",
    "marks_cache",
    "output_cap",
    "requested_tier",
    "shape_of",
    "tool_calls",
]

_CAP_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens", "max_tokens_to_sample")
_CHOICE_KEYS = ("n", "best_of")


def shape_of(
    body: Mapping[str, Any] | None,
    model: str | None,
    provider: str | None = None,
    *,
    default_output_cap: int = 4096,
    max_output_tokens: int | None = None,
    input_tokens: int | None = None,
    bound: bool = True,
    estimate: bool = True,
) -> Shape:
    """The `Shape` of a request body for `model` (`provider` is informative: the readers accept every
    provider's keys).

    `input_tokens`, when given, is the prompt size (no body is read for it). Otherwise `bound` computes
    the strict upper bound (`llmledger.tokens.prompt_tokens_bound`: the model's tokenizer where it is
    public, else UTF-8 bytes) and `estimate` the ~4-characters-a-token estimate; a door that needs only
    one can skip the other (an unneeded bound is the estimate). The output cap is
    `max_output_tokens`, else the body's cap, else `default_output_cap`. Never raises on odd bodies.
    """
    del provider
    if input_tokens is not None:
        bound_tokens, guess = input_tokens, None
    else:
        guess = estimate_tokens(request_text(body)) if estimate or not bound else None
        bound_tokens = prompt_tokens_bound(body, model) if bound else guess or 0
    calls, kinds = tool_calls(body)
    return Shape(
        input_tokens=bound_tokens,
        output_tokens=max_output_tokens or output_cap(body) or default_output_cap,
        choices=choices(body),
        tier=requested_tier(body),
        tool_calls=calls,
        tool_kinds=kinds,
        cache_write=marks_cache(body),
        audio=asks_audio(body, model),
        input_estimate=guess,
    )


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value) or None
    return None


def _config(body: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("generationConfig", "generation_config", "config"):
        value = body.get(key)
        if isinstance(value, Mapping):
            return value
    return {}


def output_cap(body: Mapping[str, Any] | None) -> int | None:
    """The output token cap a request sets, if any (OpenAI, Anthropic, Responses, Gemini)."""
    if not body:
        return None
    for key in _CAP_KEYS:
        value = _positive_int(body.get(key))
        if value is not None:
            return value
    config = _config(body)
    for key in ("maxOutputTokens", "max_output_tokens"):
        value = _positive_int(config.get(key))
        if value is not None:
            return value
    return None


def choices(body: Mapping[str, Any] | None) -> int:
    """How many completions a request asks for (OpenAI `n` / `best_of`, Gemini `candidateCount`)."""
    if not body:
        return 1
    found = [_positive_int(body.get(key)) for key in _CHOICE_KEYS]
    config = _config(body)
    found += [_positive_int(config.get(key)) for key in ("candidateCount", "candidate_count")]
    return max([1, *(n for n in found if n is not None)])


def requested_tier(body: Mapping[str, Any] | None) -> str | None:
    """The service tier a request asks for (`priority`, `flex`, `auto`...), None for the default."""
    if not body:
        return None
    value = body.get("service_tier") or _config(body).get("service_tier") or _config(body).get("serviceTier")
    if not isinstance(value, str) or not value.strip():
        return None
    tier = value.strip().lower()
    return None if tier in ("default", "standard", "standard_only") else tier


def tool_calls(body: Mapping[str, Any] | None) -> tuple[int, tuple[str, ...]]:
    """(calls, kinds) of server-side tools with a per-call fee the request enables."""
    if not body:
        return 0, ()
    tools = body.get("tools")
    if not isinstance(tools, (list, tuple)):
        return 0, ()
    kinds: list[str] = []
    per_tool: list[int] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        kind = tool.get("type")
        names = [kind] if isinstance(kind, str) else [k for k in tool if isinstance(k, str)]
        for name in names:
            base = next((k for k in TOOL_FEES if name == k or name.startswith(f"{k}_")), None)
            if base is None:
                continue
            kinds.append(base)
            per_tool.append(_positive_int(tool.get("max_uses")) or DEFAULT_TOOL_CALLS)
    if not kinds:
        return 0, ()
    limit = _positive_int(body.get("max_tool_calls"))
    calls = sum(per_tool) if limit is None else min(limit, sum(per_tool))
    return calls, tuple(sorted(set(kinds)))


def marks_cache(body: Mapping[str, Any] | None) -> bool:
    """Whether the request marks anything for caching (Anthropic `cache_control`): cache writes."""
    if not body:
        return False
    try:
        return "cache_control" in json.dumps(body, default=str)
    except (TypeError, ValueError):
        return True


def asks_audio(body: Mapping[str, Any] | None, model: str | None) -> bool:
    """Whether the request may produce audio (OpenAI `modalities`/`audio`, or an audio model)."""
    name = (model or "").lower()
    if any(part in name for part in ("audio", "realtime", "tts")):
        return True
    if not body:
        return False
    modalities = body.get("modalities") or _config(body).get("responseModalities") or ()
    return bool(body.get("audio")) or any(str(m).lower() == "audio" for m in modalities)
