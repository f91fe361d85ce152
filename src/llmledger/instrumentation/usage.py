"""What a provider reader returns: the token counts of one response, in the event convention."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["Usage", "fields", "get", "n"]


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
