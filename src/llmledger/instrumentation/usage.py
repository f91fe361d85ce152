"""What a provider reader returns: the token counts of one response, in the event convention."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["KEEP_CHARS", "Generated", "Usage", "fields", "get", "n", "normalise"]

KEEP_CHARS = 1_000_000
"""Generated characters a stream reader keeps for a tokenizer to count if the stream is cut."""


@dataclass(slots=True)
class Usage:
    """Usage read from one response (or one finished stream).

    `tokens` maps event token fields (`input_tokens`, `cache_read_tokens`, ...) to counts; input
    INCLUDES cache reads and writes, output INCLUDES reasoning. `model` is the model the response
    names (a dated snapshot), when it names one.
    """

    tokens: dict[str, int] = field(default_factory=dict)
    model: str | None = None
    request_id: str | None = None
    service_tier: str | None = None
    provider_cost: Decimal | None = None
    units: dict[str, int | Decimal] | None = None
    estimated: bool = False
    total: int = 0
    """The host's reported total (`total_tokens`), 0 when absent: it tells how the parts add up."""
    notes: list[str] | None = None
    """What `normalise()` changed or flagged, for the event's `cost_note`."""


class Generated:
    """What a stream generated, for the estimate of a cut one: every character is counted (`chars`),
    the first `KEEP_CHARS` are kept (`text()`) for a tokenizer. Strings only: no chunk is kept."""

    __slots__ = ("chars", "pieces")

    def __init__(self) -> None:
        self.chars = 0
        self.pieces: list[str] = []

    def add(self, piece: str) -> None:
        """Count (and keep, under the cap) one generated piece of text."""
        if self.chars < KEEP_CHARS:
            self.pieces.append(piece)
        self.chars += len(piece)

    def text(self) -> str:
        """The generated text kept so far."""
        return "".join(self.pieces)


def n(value: Any) -> int:
    """A reported count as an int: None (field absent) is 0; a bool or a negative is not a count."""
    if value.__class__ is int:
        return value if value > 0 else 0
    if value is None or isinstance(value, bool):
        return 0
    try:
        count = int(value)
    except (TypeError, ValueError):
        return 0
    return count if count > 0 else 0


def get(obj: Any, name: str) -> Any:
    """`obj.name`, or None when absent — without paying for an AttributeError.

    SDK response objects are pydantic models, whose `__getattr__` builds an error message for every
    missing attribute (~4 µs each); a reader probes many optional fields, so it reads the instance
    dict (declared fields) and `__pydantic_extra__` (undeclared ones, e.g. OpenRouter's `cost`).
    """
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    try:
        fields = obj.__dict__
    except AttributeError:
        return getattr(obj, name, None)
    value = fields.get(name)
    if value is None:
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra:
            value = extra.get(name)
    return value


_EMPTY: dict[str, Any] = {}


def fields(obj: Any) -> Mapping[str, Any]:
    """An object's fields as one mapping, read once (a reader then looks fields up at dict speed).

    Pydantic models: the instance dict plus `__pydantic_extra__` (undeclared fields such as
    OpenRouter's `cost`); dicts as they are; anything else falls back to its attributes via `get`.
    """
    if obj is None:
        return _EMPTY
    if isinstance(obj, dict):
        return obj
    try:
        declared = obj.__dict__
    except AttributeError:
        return _Attributes(obj)
    extra = getattr(obj, "__pydantic_extra__", None)
    return {**declared, **extra} if extra else declared


class _Attributes(Mapping[str, Any]):
    """`fields()` of an object without an instance dict (slots)."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getitem__(self, name: str) -> Any:
        value = getattr(self._obj, name, None)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def normalise(usage: Usage, reasoning_beside: bool, *, thoughts_in_total: bool = False) -> None:
    """Make `usage` a possible event by the host's rule, noting every change in `usage.notes`.

    Reasoning: a host that counts it beside `completion_tokens` (xAI; or any host whose reported
    total equals prompt + completion + reasoning) has it added to the output. A host whose total
    includes thinking it does not itemise (`thoughts_in_total`: Gemini's OpenAI-compatible endpoint)
    has the part of the total above prompt + completion counted as reasoning, in the output. Any
    other breakdown larger than its total (reasoning > output, cache > input, audio/image > its
    side) is clamped and noted; so is a reported total that matches neither reading of the parts.
    """
    tokens = usage.tokens
    get = tokens.get
    inp, out, reasoning, total = (
        get("input_tokens", 0),
        get("output_tokens", 0),
        get("reasoning_tokens", 0),
        usage.total,
    )
    filled = thoughts_in_total and not reasoning and total > inp + out
    if filled:  # unitemised thinking, priced as the output it is (the parts now add up to the total)
        reasoning = tokens["reasoning_tokens"] = total - inp - out
        tokens["output_tokens"] = out = total - inp
    beside = not filled and (total == inp + out + reasoning if total else reasoning_beside)
    if reasoning and beside:  # the host's own rule (xAI) is no news; a total that shows it is
        tokens["output_tokens"] = out = out + reasoning
        if not reasoning_beside:
            _note(usage, f"usage normalised: reasoning ({reasoning}) counted beside completion, added")
    elif reasoning > out:
        tokens["reasoning_tokens"] = out
        _note(usage, f"usage impossible: reasoning ({reasoning}) > output ({out}); reasoning clamped")
    cache = get("cache_read_tokens", 0) + get("cache_write_tokens", 0)
    if cache > inp:
        if total and total == inp + cache + out:
            tokens["input_tokens"] = inp = inp + cache
            _note(usage, f"usage normalised: cached ({cache}) counted beside input, added to input")
        else:
            for name in ("cache_read_tokens", "cache_write_tokens"):
                if get(name, 0) > inp:
                    tokens[name] = inp
            if get("cache_read_tokens", 0) + get("cache_write_tokens", 0) > inp:
                tokens["cache_write_tokens"] = inp - get("cache_read_tokens", 0)
            _note(usage, f"usage impossible: cached ({cache}) > input ({inp}); cache clamped")
    for parts, whole in _SIDES:
        have = tokens.get(whole, 0)
        if sum(get(p, 0) for p in parts) > have:
            for p in parts:
                if p in tokens:
                    tokens[p] = min(tokens[p], have)
                    have -= tokens[p]
            _note(usage, f"usage impossible: {' + '.join(parts)} > {whole}; clamped")
    if get("cache_write_1h_tokens", 0) > get("cache_write_tokens", 0):
        _note(
            usage,
            f"usage impossible: 1-hour cache writes ({get('cache_write_1h_tokens')}) > cache writes; clamped",
        )
        tokens["cache_write_1h_tokens"] = get("cache_write_tokens", 0)
    audio_cap = min(get("cache_read_tokens", 0), get("input_audio_tokens", 0))
    if get("cache_audio_read_tokens", 0) > audio_cap:
        _note(
            usage, f"usage impossible: cached audio ({get('cache_audio_read_tokens')}) > {audio_cap}; clamped"
        )
        tokens["cache_audio_read_tokens"] = audio_cap
    if (
        total
        and not usage.estimated
        and total not in (inp + out, inp + out - reasoning, inp + out + get("cache_read_tokens", 0))
    ):
        _note(usage, f"usage inconsistent: total_tokens ({total}) != input ({inp}) + output ({out})")


_SIDES = (
    (("input_audio_tokens", "input_image_tokens"), "input_tokens"),
    (("output_audio_tokens", "output_image_tokens"), "output_tokens"),
)


def _note(usage: Usage, text: str) -> None:
    if usage.notes is None:
        usage.notes = []
    usage.notes.append(text)
