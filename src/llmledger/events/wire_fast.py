"""A cheap parse of the common wire-form event, for server ingest (tens of thousands a second).

`fast_parser(...)` returns a function that reads a wire-form dict whose every value has the plain
shape a well-behaved sender produces (ASCII strings within their limits, exact ints, decimal
strings, booleans, string tags, no billed units) by type checks alone, and gives up (None) on
anything else. `UsageEvent.from_dict` then runs the full checker, which accepts or refuses the item
and says why. So the fast path never decides a refusal, and everything it accepts the full checker
accepts as the same event: `tests/test_ingest.py` checks both with hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from llmledger.events.schema import (
    ATTRIBUTION_FIELDS,
    COST_SOURCES,
    MAX_AMOUNT,
    MAX_DURATION_MS,
    MAX_LABEL,
    MAX_TAGS,
    MAX_TOKENS,
    MIN_EXPONENT,
    STATUSES,
    TEXT_LIMITS,
    TOKEN_FIELDS,
    TS_MAX,
    TS_MIN,
)

__all__ = ["fast_parser"]

_UTC = timezone.utc
_fromisoformat = datetime.fromisoformat

# What each wire key holds (the kind of check it takes).
_TEXT, _LABEL, _TOKEN, _COST, _COMPUTED, _DURATION, _FLAG = range(7)
_ENUM, _NOTE, _TAGS, _UNITS, _TS, _VERSION = range(7, 13)


def _kinds() -> dict[str, tuple[int, Any]]:
    kinds: dict[str, tuple[int, Any]] = {name: (_TEXT, limit) for name, limit in TEXT_LIMITS.items()}
    kinds["event_id"] = (_TEXT, 36)
    kinds["cost_source"] = (_ENUM, COST_SOURCES)
    kinds["status"] = (_ENUM, STATUSES)
    kinds.update(dict.fromkeys(ATTRIBUTION_FIELDS, (_LABEL, None)))
    kinds.update(dict.fromkeys(TOKEN_FIELDS, (_TOKEN, None)))
    kinds.update(dict.fromkeys(("partially_priced", "stream", "complete", "estimated"), (_FLAG, None)))
    kinds.update(dict.fromkeys(("duration_ms", "time_to_first_token_ms"), (_DURATION, None)))
    kinds["cost_usd"] = (_COST, None)
    kinds["computed_cost_usd"] = (_COMPUTED, None)
    kinds["cost_note"] = (_NOTE, None)
    kinds["tags"] = (_TAGS, None)
    kinds["units"] = (_UNITS, None)
    kinds["timestamp"] = (_TS, None)
    kinds["schema_version"] = (_VERSION, None)
    return kinds


def _plain_tags(tags: Any) -> bool:
    if tags.__class__ is not dict or len(tags) > MAX_TAGS:
        return False
    for key, value in tags.items():
        if not (
            key.__class__ is str
            and 0 < len(key) <= MAX_LABEL
            and key.isascii()
            and "\x00" not in key
            and value.__class__ is str
            and len(value) <= MAX_LABEL
            and value.isascii()
            and "\x00" not in value
        ):
            return False
    return True


def fast_parser(
    fields: tuple[str, ...], defaults: Mapping[str, Any]
) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | None]:
    """A function from a wire-form dict to its event's values in `fields` order (the event's field
    definition order), or None when the dict is anything but the plain common shape (the caller
    then runs the full checker). `defaults`: each field's default, None for those without one."""
    kinds = _kinds()
    if set(kinds) != set(fields):
        raise AssertionError(f"the fast wire parser does not know {set(fields) ^ set(kinds)}")
    base = dict(defaults)
    in_order = itemgetter(*fields)

    def parse(data: Mapping[str, Any]) -> tuple[Any, ...] | None:
        if data.__class__ is not dict:
            return None
        values = base.copy()
        for key, value in data.items():
            kind = kinds.get(key)
            if kind is None:
                return None
            code, arg = kind
            if code == _TOKEN:
                if value.__class__ is not int or not 0 <= value <= MAX_TOKENS:
                    return None
            elif code == _TEXT:
                if value is not None and not (
                    value.__class__ is str
                    and 0 < len(value) <= arg
                    and value.isascii()
                    and not value.isspace()
                    and "\x00" not in value
                ):
                    return None
            elif code == _LABEL:
                if value is not None and not (
                    value.__class__ is str
                    and 0 < len(value) <= MAX_LABEL
                    and value.isascii()
                    and "\x00" not in value
                ):
                    return None
            elif code == _TS:
                if value.__class__ is not str or not value:
                    return None
                try:
                    ts = _fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    return None
                if ts.tzinfo is None:
                    return None
                if ts.tzinfo is not _UTC:
                    ts = ts.astimezone(_UTC)
                if not TS_MIN <= ts < TS_MAX:
                    return None
                value = ts
            elif code in (_COST, _COMPUTED):
                if value is not None:
                    if value.__class__ is not str:
                        return None
                    try:
                        value = Decimal(value)
                    except InvalidOperation:
                        return None
                    if not value.is_finite() or value < 0:
                        return None
                    if code == _COST and (value > MAX_AMOUNT or (value and value.adjusted() < MIN_EXPONENT)):
                        return None
            elif code == _DURATION:
                if value is not None:
                    if (value.__class__ is not float and value.__class__ is not int) or not (
                        0 <= value <= MAX_DURATION_MS
                    ):
                        return None
                    value = float(value)
            elif code == _FLAG:
                if value.__class__ is not bool:
                    return None
            elif code == _ENUM:
                if (key == "status" or value is not None) and (
                    value.__class__ is not str or value not in arg
                ):
                    return None
            elif code == _TAGS:
                if value is None:
                    value = {}
                elif not _plain_tags(value):
                    return None
                else:
                    value = dict(value)
            elif code == _UNITS:
                if value is not None and (value.__class__ is not dict or value):
                    return None
                value = {}
            elif code == _NOTE:
                if value is not None and value.__class__ is not str:
                    return None
            elif code == _VERSION:
                if value.__class__ is not int or value != 1:
                    return None
                continue
            values[key] = value
        v = values
        if v["event_id"] is None or v["timestamp"] is None or v["provider"] is None or v["model"] is None:
            return None
        if v["tags"] is None:
            v["tags"] = {}
        if v["units"] is None:
            v["units"] = {}
        if not _subsets_hold(v):
            return None
        return in_order(v)  # type: ignore[no-any-return]

    return parse


def _subsets_hold(v: Mapping[str, int]) -> bool:
    """The token convention (`schema.SUBSETS`): each breakdown within its total."""
    inp = v["input_tokens"]
    out = v["output_tokens"]
    cache_read = v["cache_read_tokens"]
    cache_write = v["cache_write_tokens"]
    audio_in = v["input_audio_tokens"]
    audio_cached = v["cache_audio_read_tokens"]
    return (
        cache_read + cache_write <= inp
        and v["cache_write_1h_tokens"] <= cache_write
        and v["reasoning_tokens"] <= out
        and audio_in + v["input_image_tokens"] <= inp
        and audio_cached <= cache_read
        and audio_cached <= audio_in
        and v["output_audio_tokens"] + v["output_image_tokens"] <= out
    )
