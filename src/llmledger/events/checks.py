"""Validation of usage event values: the checks every entry point runs (`track`, the wire form,
the server's ingest) and `event_problem`, which tells whether a store can hold an event built from
provider data. Each check raises `InvalidUsageError` naming the field and what to fix."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger.errors import InvalidUsageError
from llmledger.events.schema import (
    ATTRIBUTION_FIELDS,
    MAX_AMOUNT,
    MAX_DURATION_MS,
    MAX_LABEL,
    MAX_TAGS,
    MAX_TEXT,
    MAX_TOKENS,
    MIN_EXPONENT,
    NON_TOKEN_UNITS,
    STATUSES,
    SUBSETS,
    TEXT_LIMITS,
    TOKEN_FIELDS,
    TS_MAX,
    TS_MIN,
)

if TYPE_CHECKING:
    from llmledger.events.event import UsageEvent

__all__ = [
    "check_amount",
    "check_attribution",
    "check_duration",
    "check_text",
    "check_timestamp",
    "check_tokens",
    "check_units",
    "event_problem",
]


def check_tokens(tokens: Mapping[str, Any]) -> None:
    """Validate token counts: ints in [0, MAX_TOKENS], and each breakdown no larger than its total."""
    for name, value in tokens.items():
        if value.__class__ is not int or not 0 <= value <= MAX_TOKENS:  # fast path: one check
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidUsageError(f"{name} must be an int, got {type(value).__name__} {value!r:.80}")
            if value < 0:
                raise InvalidUsageError(f"{name} must be >= 0, got {value}")
            if value > MAX_TOKENS:  # (a float cannot show an int past 1e308: say its size)
                shown = f"{value:.3g}" if value < 10**300 else f"about 2**{value.bit_length()}"
                raise InvalidUsageError(f"{name} must be at most {MAX_TOKENS:,} tokens, got {shown}")
    get = tokens.get
    for parts, whole in SUBSETS:
        total = 0
        for p in parts:
            total += get(p, 0)
        if total and total > get(whole, 0):
            raise InvalidUsageError(
                f"{' + '.join(parts)} ({total}) exceeds {whole} ({get(whole, 0)}); "
                f"{whole} must INCLUDE {' and '.join(parts)} (OpenTelemetry GenAI convention)"
            )


def check_units(units: Mapping[str, Any]) -> dict[str, Decimal]:
    """Validate non-token billed units; returns them as Decimals."""
    if not isinstance(units, Mapping):
        raise InvalidUsageError(f"units must be a dict of unit name to amount, got {type(units).__name__}")
    out: dict[str, Decimal] = {}
    for name, value in units.items():
        if name not in NON_TOKEN_UNITS:
            raise InvalidUsageError(
                f"unknown unit {name!r}; billed units are: {', '.join(sorted(NON_TOKEN_UNITS))}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
            raise InvalidUsageError(f"unit {name!r} must be a number, got {type(value).__name__}")
        out[name] = check_amount(f"unit {name!r}", value)
    return out


def check_amount(name: str, value: int | float | str | Decimal) -> Decimal:
    """A finite, bounded, non-negative amount as a Decimal (raises `InvalidUsageError` naming `name`)."""
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value))
    except (ArithmeticError, ValueError) as exc:
        raise InvalidUsageError(f"{name} must be a decimal amount, got {value!r:.80}") from exc
    if not dec.is_finite() or dec < 0:
        raise InvalidUsageError(f"{name} must be a finite amount >= 0, got {value!r:.80}")
    if dec > MAX_AMOUNT:
        raise InvalidUsageError(f"{name} must be at most {MAX_AMOUNT}, got {value!r:.80}")
    exponent = dec.as_tuple().exponent
    if dec and isinstance(exponent, int) and exponent < MIN_EXPONENT and dec.adjusted() < MIN_EXPONENT:
        raise InvalidUsageError(f"{name} must not be finer than 1e{MIN_EXPONENT}, got {value!r:.80}")
    return dec


def check_text(name: str, value: Any, limit: int = MAX_TEXT, *, required: bool = False) -> None:
    """A string a store can hold: non-empty, at most `limit` characters, valid Unicode (no lone
    surrogates), no NUL. None passes unless `required`. Raises `InvalidUsageError` naming `name`."""
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise InvalidUsageError(f"{name} must be a non-empty string, got {value!r:.80}")
    if len(value) > limit:
        raise InvalidUsageError(f"{name} must be at most {limit} characters, got {len(value):,}")
    _check_chars(name, value)


def _check_chars(name: str, value: str) -> None:
    if "\x00" in value:
        raise InvalidUsageError(f"{name} must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidUsageError(
                f"{name} is not valid Unicode (a lone surrogate?): {value!r:.80}"
            ) from exc


def check_timestamp(name: str, ts: datetime) -> None:
    """A timestamp inside [TS_MIN, TS_MAX) (raises `InvalidUsageError` naming `name`)."""
    if not TS_MIN <= ts < TS_MAX:
        raise InvalidUsageError(f"{name} must be between {TS_MIN:%Y-%m-%d} and {TS_MAX:%Y-%m-%d}, got {ts}")


def check_duration(name: str, value: Any) -> None:
    """A duration in milliseconds: a finite number in [0, MAX_DURATION_MS], or None."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DURATION_MS:
        raise InvalidUsageError(
            f"{name} must be a number of milliseconds in [0, {MAX_DURATION_MS:.0e}], got {value!r:.80}"
        )


def check_attribution(labels: Mapping[str, Any], tags: Any) -> None:
    """Validate attribution labels (non-empty strings up to 256 chars) and tags (str -> str)."""
    for name, value in labels.items():
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_LABEL:
            raise InvalidUsageError(f"{name} must be a non-empty string of at most {MAX_LABEL} chars")
        _check_chars(name, value)
    if not isinstance(tags, Mapping):
        raise InvalidUsageError(f"tags must be a dict of str to str, got {type(tags).__name__}")
    if len(tags) > MAX_TAGS:
        raise InvalidUsageError(f"tags: at most {MAX_TAGS} tags per call, got {len(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > MAX_LABEL:
            raise InvalidUsageError(
                f"tags: tag names must be non-empty strings of at most {MAX_LABEL} chars, got {key!r:.80}"
            )
        _check_chars("tags: tag name", key)
        if not isinstance(value, str) or len(value) > MAX_LABEL:
            raise InvalidUsageError(
                f"tags: tag {key!r:.80} must have a string value of at most {MAX_LABEL} chars"
            )
        _check_chars(f"tags: tag {key!r:.80}", value)


def event_problem(e: UsageEvent) -> str | None:
    """Why a store could not hold this event (None: it can). Checks everything the entry points
    check, for events built from provider data on the writer thread; never raises."""
    try:
        for name, limit in TEXT_LIMITS.items():
            check_text(name, getattr(e, name), limit, required=name in ("provider", "model"))
        check_text("event_id", e.event_id, 36, required=True)
        check_tokens({name: getattr(e, name) for name in TOKEN_FIELDS})
        check_units(e.units)
        if e.cost_usd is not None:
            check_amount("cost_usd", e.cost_usd)
        check_duration("duration_ms", e.duration_ms)
        check_duration("time_to_first_token_ms", e.time_to_first_token_ms)
        if not isinstance(e.timestamp, datetime) or e.timestamp.tzinfo is None:
            return "timestamp must be a timezone-aware datetime"
        check_timestamp("timestamp", e.timestamp)
        check_attribution({name: getattr(e, name) for name in ATTRIBUTION_FIELDS}, e.tags)
        if e.status not in STATUSES:
            return f"status must be one of {sorted(STATUSES)}"
    except InvalidUsageError as exc:
        return str(exc)
    except Exception as exc:  # a value of the wrong type altogether
        return f"{type(exc).__name__}: {exc!s:.200}"
    return None
