"""What a provider reader returns: the token counts of one response, in the event convention."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["Usage", "get", "n"]


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
