"""The most a request can cost: everything in its shape that multiplies cost, at the dearest price.

A strict limit reserves `rates_cost(...)` of a `Shape` (`limit/shape.py`) read from the request body
(`limit/request.py: shape_of`):

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

Pure functions of a shape and a price record; no I/O.
"""

from __future__ import annotations

from decimal import Decimal

from genai_prices.types import ModelPrice, TieredPrices

from llmledger.limit.shape import TOOL_FEES, Shape

__all__ = [
    "DEFAULT_TOOL_CALLS",
    "PRIORITY_FACTOR",
    "TOOL_INPUT_TOKENS",
    "Shape",
    "rates_cost",
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
_MILLION = Decimal(1_000_000)


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
        per_call = _rate(listed, total_input) / 1000 if listed is not None else TOOL_FEES[kind]
        fees += per_call * shape.tool_calls
    tokens = total_input * max_in + shape.choices * shape.output_tokens * max_out
    return (tokens / _MILLION + fees) * multiplier
