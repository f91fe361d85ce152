"""Manual tracking: `track()` records one call's usage; `track_usage()` measures a block.

Both are the base the automatic instrumentation builds on: validate, attribute, price, record.
Pricing happens on the caller's thread (a cached, compiled price: a few microseconds) so that the
returned event carries `cost_usd` at once; writing happens on the background writer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from types import TracebackType
from typing import Any

from llmledger._internal import internal_error
from llmledger.attribution.context import (  # the ContextVar itself: hot path
    _current,
    make_attribution,
)
from llmledger.errors import InvalidUsageError
from llmledger.events.checks import (
    check_amount,
    check_attribution,
    check_duration,
    check_text,
    check_timestamp,
    check_tokens,
    check_units,
)
from llmledger.events.event import UsageEvent
from llmledger.events.schema import MAX_TEXT, STATUSES, TEXT_LIMITS, TOKEN_FIELDS, Status
from llmledger.pricing.call import PRICE_KEYS
from llmledger.sdk import runtime as _rt
from llmledger.sdk.event_builder import build_usage_event

__all__ = ["UsageTracker", "build_usage_event", "track", "track_usage"]

_TRACK_FIELDS = [
    "provider",
    "model",
    "requested_model",
    "endpoint",
    "service_tier",
    "units",
    "cost_usd",
    "provider_cost_usd",
    "duration_ms",
    "time_to_first_token_ms",
    "stream",
    "complete",
    "status",
    "error_type",
    "request_id",
    "estimated",
    "timestamp",
    "tenant",
    "user",
    "org",
    "feature",
    "agent",
    "session",
    "tags",
    *TOKEN_FIELDS,
]

_PRICE_KEYS = PRICE_KEYS


def _unknown(kind: str, names: Mapping[str, Any]) -> InvalidUsageError:
    return InvalidUsageError(
        f"unknown {kind} argument(s): {', '.join(sorted(names))}; valid: {', '.join(sorted(_TRACK_FIELDS))}"
    )


def _check_name(name: str, value: Any, required: bool) -> None:
    check_text(name, value, TEXT_LIMITS.get(name, MAX_TEXT), required=required)


def _money(name: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str, float)):
        raise InvalidUsageError(f"{name} must be a Decimal (or a decimal string), got {type(value).__name__}")
    if isinstance(value, str) and len(value) > 100:
        raise InvalidUsageError(f"{name} must be a decimal amount, got a {len(value):,}-character string")
    return check_amount(name, value)


def _flag(name: str, value: Any) -> bool:
    if value is not True and value is not False:
        raise InvalidUsageError(f"{name} must be True or False, got {value!r:.80}")
    return value


def track(
    *,
    provider: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    reasoning_tokens: int = 0,
    input_audio_tokens: int = 0,
    output_audio_tokens: int = 0,
    cache_audio_read_tokens: int = 0,
    input_image_tokens: int = 0,
    output_image_tokens: int = 0,
    units: Mapping[str, int | float | Decimal] | None = None,
    cost_usd: Decimal | str | None = None,
    provider_cost_usd: Decimal | str | None = None,
    requested_model: str | None = None,
    endpoint: str | None = None,
    service_tier: str | None = None,
    duration_ms: float | None = None,
    time_to_first_token_ms: float | None = None,
    stream: bool = False,
    complete: bool = True,
    status: Status = "ok",
    error_type: str | None = None,
    request_id: str | None = None,
    estimated: bool = False,
    timestamp: datetime | None = None,
    tenant: str | None = None,
    user: str | None = None,
    org: str | None = None,
    feature: str | None = None,
    agent: str | None = None,
    session: str | None = None,
    tags: Mapping[str, str] | None = None,
    **unknown: Any,
) -> UsageEvent:
    """Record one LLM call's usage; returns the priced, recorded `UsageEvent`.

    Tokens follow one convention: `input_tokens` INCLUDES cache reads/writes, `output_tokens`
    INCLUDES reasoning. `cost_usd=` records a cost you computed (`cost_source="manual"`);
    `provider_cost_usd=` one the provider billed (`"provider"`); otherwise the price comes from
    overrides, then the catalogue. Attribution: explicit arguments, over `attribute()` blocks, over
    `init()` defaults. Bad input raises `InvalidUsageError` (a `ValueError`).
    """
    if unknown:
        raise _unknown("track()", unknown)
    _check_name("provider", provider, True)
    _check_name("model", model, True)
    tokens = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read_tokens,
        "cache_write_tokens": cache_write_tokens,
        "cache_write_1h_tokens": cache_write_1h_tokens,
        "reasoning_tokens": reasoning_tokens,
        "input_audio_tokens": input_audio_tokens,
        "output_audio_tokens": output_audio_tokens,
        "cache_audio_read_tokens": cache_audio_read_tokens,
        "input_image_tokens": input_image_tokens,
        "output_image_tokens": output_image_tokens,
    }
    check_tokens(tokens)
    unit_values = check_units(units) if units else {}
    manual = _money("cost_usd", cost_usd)
    billed = _money("provider_cost_usd", provider_cost_usd)
    if not isinstance(status, str) or status not in STATUSES:
        raise InvalidUsageError(f"status must be one of {sorted(STATUSES)}, got {status!r}")
    check_duration("duration_ms", duration_ms)
    check_duration("time_to_first_token_ms", time_to_first_token_ms)
    stream, complete, estimated = (
        _flag("stream", stream),
        _flag("complete", complete),
        _flag("estimated", estimated),
    )
    for name, text in (
        ("requested_model", requested_model),
        ("endpoint", endpoint),
        ("service_tier", service_tier),
        ("error_type", error_type),
        ("request_id", request_id),
    ):
        _check_name(name, text, False)
    if timestamp is None:
        timestamp = datetime.now(timezone.utc)
    elif not isinstance(timestamp, datetime) or timestamp.tzinfo is None:
        raise InvalidUsageError(
            "timestamp must be a timezone-aware datetime (e.g. datetime.now(timezone.utc))"
        )
    else:
        check_timestamp("timestamp", timestamp)
        timestamp = timestamp.astimezone(timezone.utc)

    who = _current.get()
    if (
        tenant is not None
        or user is not None
        or org is not None
        or feature is not None
        or agent is not None
        or session is not None
        or tags is not None
    ):
        explicit = make_attribution(
            tenant=tenant, user=user, org=org, feature=feature, agent=agent, session=session, tags=tags
        )
        who = who.merged(explicit)
    runtime = _rt.current()
    event = build_usage_event(
        runtime,
        provider,
        model,
        tokens,
        who,
        timestamp,
        units=unit_values,
        provider_cost=billed,
        manual_cost=manual,
        requested_model=requested_model,
        endpoint=endpoint,
        service_tier=service_tier,
        duration_ms=None if duration_ms is None else float(duration_ms),
        time_to_first_token_ms=None if time_to_first_token_ms is None else float(time_to_first_token_ms),
        stream=bool(stream),
        complete=bool(complete),
        status=status,
        error_type=error_type,
        request_id=request_id,
        estimated=bool(estimated),
    )
    try:
        from llmledger.sdk.limits import settles

        runtime.record(event, settles())
    except Exception as exc:
        internal_error(exc, "recording")
    return event


class UsageTracker:
    """Measures a block of code and records it as one event when the block ends.

    Call `set_usage(...)` inside the block with what the provider reported. If the block raises, the
    event is recorded with `status="error"` (or `"cancelled"`) and the exception propagates.
    """

    def __init__(self, *, provider: str, model: str, **fields: Any) -> None:
        unknown = {k: v for k, v in fields.items() if k not in _TRACK_FIELDS}
        if unknown:
            raise _unknown("track_usage()", unknown)
        _check_name("provider", provider, True)
        _check_name("model", model, True)
        check_attribution(
            {k: fields.get(k) for k in ("tenant", "user", "org", "feature", "agent")},
            fields.get("tags") or {},
        )
        self._fields: dict[str, Any] = {"provider": provider, "model": model, **fields}
        self._start = 0.0
        self._wall: datetime | None = None
        self._attribution = _current.get()  # replaced at __enter__; kept if never entered
        self.event: UsageEvent | None = None
        """The recorded event, once the block has ended."""

    def set_usage(self, **usage: Any) -> None:
        """Set token counts (and any other `track()` field) reported for this call."""
        unknown = {k: v for k, v in usage.items() if k not in _TRACK_FIELDS}
        if unknown:
            raise _unknown("set_usage()", unknown)
        check_tokens({k: v for k, v in {**self._fields, **usage}.items() if k in _PRICE_KEYS})
        self._fields.update(usage)

    def __enter__(self) -> UsageTracker:
        self._attribution = _current.get()
        self._wall = datetime.now(timezone.utc)
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fields = dict(self._fields)
        fields["duration_ms"] = (time.perf_counter() - self._start) * 1000.0
        fields["timestamp"] = self._wall
        if exc_type is not None:
            cancelled = exc_type.__name__ in ("CancelledError", "KeyboardInterrupt", "GeneratorExit")
            fields["status"] = "cancelled" if cancelled else "error"
            fields["error_type"] = exc_type.__name__
        token = _current.set(self._attribution)
        try:
            self.event = track(**fields)
        finally:
            _current.reset(token)

    async def __aenter__(self) -> UsageTracker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def track_usage(*, provider: str, model: str, **fields: Any) -> UsageTracker:
    """`with track_usage(provider=..., model=...) as t: ...; t.set_usage(input_tokens=...)`.

    Measures duration; records `status="error"` and re-raises if the block raises; `t.event` after.
    """
    return UsageTracker(provider=provider, model=model, **fields)
