"""The most a request can cost: everything in its shape that multiplies cost, at the dearest price.

A strict limit reserves `worst_cost(...)` of a `Shape` read from the request body:

- **input**: a bound of the prompt tokens (`llmledger.tokens.prompt_tokens_bound`: the real tokenizer
  for OpenAI models, UTF-8 bytes for others), plus `TOOL_INPUT_TOKENS` per possible server-side tool
  call (search results are billed as input);
- **output**: the request's cap (`max_tokens`, `max_completion_tokens`, `max_output_tokens`,
  Gemini `maxOutputTokens`; else `default_output_cap`) times the number of choices (OpenAI `n`,
  completions `best_of`, Gemini `candidateCount`);
- **price**: the dearest per-token rate of the model's price record among every input kind (text,
  audio, image; cache writes when the request marks `cache_control`) and every output kind (text,
  audio, image), at the long-context tier the input bound reaches (a tier re-prices the whole
  request), for the service tier requested — `auto` may be served at any tier, so the dearest one
  (`priority`, or 2x the standard price when the catalogue has no priority price);
- **fees**: the per-request fee, and per-call tool fees (web search, file search, code interpreter,
  image generation, grounding) times the calls the request allows (`max_tool_calls`, `max_uses`,
  else `DEFAULT_TOOL_CALLS` per tool).

Pure functions of the request body and a price record; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from genai_prices.types import ModelPrice, TieredPrices

__all__ = [
    "DEFAULT_TOOL_CALLS",
    "PRIORITY_FACTOR",
    "TOOL_INPUT_TOKENS",
    "Shape",
    "choices",
    "output_cap",
    "rates_cost",
    "requested_tier",
    "tool_calls",
]

DEFAULT_TOOL_CALLS = 8
"""Server-side tool calls a request is assumed to make at most when it sets no `max_tool_calls`."""
TOOL_INPUT_TOKENS = 8_000
"""Input tokens a server-side tool call may add (OpenAI bills web search results as a fixed block of
8,000 input tokens for its mini models)."""
PRIORITY_FACTOR = Decimal(2)
"""Priority processing's price over standard when the catalogue has no priority price (OpenAI: 1.7x-1.8x)."""
AUDIO_OUTPUT_FACTOR = Decimal(8)
"""Audio output over text output when a price record lacks an audio rate (gpt-4o-audio: $80 vs $10)."""
_CAP_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens", "max_tokens_to_sample")
_CHOICE_KEYS = ("n", "best_of")
_TOOL_FEES = {  # USD per call, the dearest published, used when the price record has no rate
    "web_search": Decimal("0.025"),
    "web_search_preview": Decimal("0.025"),
    "file_search": Decimal("0.0025"),
    "code_interpreter": Decimal("0.03"),
    "image_generation": Decimal("0.25"),
    "google_search": Decimal("0.035"),
    "google_search_retrieval": Decimal("0.035"),
    "url_context": Decimal(0),
    "code_execution": Decimal("0.05"),
}
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Shape:
    """What multiplies a request's cost."""

    input_tokens: int
    output_tokens: int
    """Per choice."""
    choices: int = 1
    tier: str | None = None
    tool_calls: int = 0
    tool_kinds: tuple[str, ...] = ()
    cache_write: bool = False
    audio: bool = False


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
            base = next((k for k in _TOOL_FEES if name == k or name.startswith(f"{k}_")), None)
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


def _rate(price: Decimal | TieredPrices, total_input: int) -> Decimal:
    if isinstance(price, TieredPrices):
        rate = price.base
        for tier in reversed(price.tiers):
            if total_input > tier.start:
                return tier.price
        return rate
    return price


def rates_cost(prices: ModelPrice, shape: Shape, multiplier: Decimal = Decimal(1)) -> Decimal:
    """The worst cost of `shape` under one price record: the dearest input and output rates at the
    tier the input reaches, per-request and per-call tool fees."""
    total_input = shape.input_tokens + shape.tool_calls * TOOL_INPUT_TOKENS
    max_in = max_out = Decimal(0)
    audio_out = False
    fees = Decimal(0)
    for key, value in prices.__dict__.items():
        if value is None or key.startswith("_"):
            continue
        if key.endswith("_mtok"):
            if "cache_read" in key:
                continue
            if "cache_write" in key and not shape.cache_write:
                continue
            rate = _rate(value, total_input)
            if "output" in key:
                max_out = max(max_out, rate)
                audio_out = audio_out or "audio" in key
            else:
                max_in = max(max_in, rate)
        elif key == "requests_kcount":
            fees += _rate(value, total_input) / 1000
    if shape.audio and not audio_out:
        max_out *= AUDIO_OUTPUT_FACTOR
    for kind in shape.tool_kinds:
        listed = prices.__dict__.get(f"{kind}es_kcount") or prices.__dict__.get(f"{kind}s_kcount")
        per_call = _rate(listed, total_input) / 1000 if listed is not None else _TOOL_FEES[kind]
        fees += per_call * shape.tool_calls
    tokens = total_input * max_in + shape.choices * shape.output_tokens * max_out
    return (tokens / _MILLION + fees) * multiplier
