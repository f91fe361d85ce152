"""`Shape`: everything in a request that multiplies its cost, without its text — and its wire form.

A door that holds the request body computes the shape itself (`llmledger.limit.request.shape_of`);
a door that cannot send the body (the remote SDK: prompt text never leaves the host) sends the shape
as JSON (`Shape.to_wire()`), and the engine rebuilds it (`Shape.from_wire()`, validated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from llmledger.errors import InvalidShapeError

__all__ = ["MAX_TOKENS", "TOOL_FEES", "Shape"]

TOOL_FEES = {  # USD per call, the dearest published, used when the price record has no rate
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
"""The server-side tools with a per-call fee, by the kind a `Shape` names."""
MAX_TOKENS = 100_000_000
"""The largest token count a wire shape may carry (far above any context window)."""
_MAX_CHOICES = 1_000
_MAX_TOOL_CALLS = 100_000
_TIER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_FIELDS = frozenset(
    (
        "input_tokens",
        "input_estimate",
        "output_tokens",
        "choices",
        "tier",
        "tool_calls",
        "tool_kinds",
        "cache_write",
        "audio",
    )
)


@dataclass(frozen=True, slots=True)
class Shape:
    """What multiplies a request's cost (token counts are whole tokens)."""

    input_tokens: int
    """An upper bound of the prompt tokens (what strict limits reserve)."""
    output_tokens: int
    """The output cap, per choice."""
    choices: int = 1
    tier: str | None = None
    """The service tier asked for (`priority`, `flex`, `auto`...), None for the default."""
    tool_calls: int = 0
    """Server-side tool calls with a per-call fee the request allows at most."""
    tool_kinds: tuple[str, ...] = ()
    """Which of those tools (keys of `TOOL_FEES`)."""
    cache_write: bool = False
    audio: bool = False
    input_estimate: int | None = None
    """An estimate of the prompt tokens (what estimate-mode limits reserve before they have learned
    an average); None: use `input_tokens`."""

    def to_wire(self) -> dict[str, Any]:
        """The JSON-safe form: `{"input_tokens": 812, "output_tokens": 500, "choices": 1, "tier": null,
        "tool_calls": 0, "tool_kinds": [], "cache_write": false, "audio": false, "input_estimate": 790}`."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "choices": self.choices,
            "tier": self.tier,
            "tool_calls": self.tool_calls,
            "tool_kinds": list(self.tool_kinds),
            "cache_write": self.cache_write,
            "audio": self.audio,
            "input_estimate": self.input_estimate,
        }

    @classmethod
    def from_wire(cls, data: Any, *, default_output_tokens: int | None = None) -> Shape:
        """Rebuild a shape from its wire form, checking every field.

        `input_tokens` is required; `output_tokens` may be left out (or null) when the request sets
        no output cap, and `default_output_tokens` is used then. Raises `InvalidShapeError` naming the
        first bad field and what it must be (unknown fields are refused too)."""
        if not isinstance(data, Mapping):
            raise InvalidShapeError(f"a shape must be a JSON object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if unknown:
            raise InvalidShapeError(f"unknown shape field(s) {unknown}; known: {sorted(_FIELDS)}")
        output = data.get("output_tokens")
        if output is None:
            if default_output_tokens is None:
                raise InvalidShapeError("shape.output_tokens is required (the request's output cap)")
            output = default_output_tokens
        estimate = data.get("input_estimate")
        kinds = data.get("tool_kinds", [])
        if not isinstance(kinds, (list, tuple)) or not all(isinstance(k, str) for k in kinds):
            raise InvalidShapeError(f"shape.tool_kinds must be a list of strings, got {kinds!r:.80}")
        bad = [k for k in kinds if k not in TOOL_FEES]
        if bad:
            raise InvalidShapeError(
                f"shape.tool_kinds: unknown tool {bad[0]!r:.40}; known: {sorted(TOOL_FEES)}"
            )
        tier = data.get("tier")
        if tier is not None and (not isinstance(tier, str) or not _TIER.match(tier)):
            raise InvalidShapeError(
                f"shape.tier must be null or a tier name like 'priority', got {tier!r:.40}"
            )
        return cls(
            input_tokens=_whole("input_tokens", data.get("input_tokens"), 0, MAX_TOKENS),
            output_tokens=_whole("output_tokens", output, 1, MAX_TOKENS),
            choices=_whole("choices", data.get("choices", 1), 1, _MAX_CHOICES),
            tier=tier,
            tool_calls=_whole("tool_calls", data.get("tool_calls", 0), 0, _MAX_TOOL_CALLS),
            tool_kinds=tuple(sorted(set(kinds))),
            cache_write=_flag("cache_write", data.get("cache_write", False)),
            audio=_flag("audio", data.get("audio", False)),
            input_estimate=None if estimate is None else _whole("input_estimate", estimate, 0, MAX_TOKENS),
        )


def _whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidShapeError(
            f"shape.{name} must be a whole number in [{low:,}, {high:,}], got {value!r:.40}"
        )
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidShapeError(f"shape.{name} must be true or false, got {value!r:.40}")
    return value
