"""`UsageEvent`: the one record that travels from capture to ledger to report.

Token convention (OpenTelemetry GenAI, the same for every provider):
`input_tokens` INCLUDES cache-read and cache-write tokens; `output_tokens` INCLUDES reasoning tokens.
The breakdown fields are subsets of those totals, never additions to them.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from llmledger.errors import InvalidEventError, InvalidUsageError
from llmledger.events.checks import (
    check_amount,
    check_attribution,
    check_duration,
    check_text,
    check_timestamp,
    check_tokens,
    check_units,
)
from llmledger.events.schema import (
    ATTRIBUTION_FIELDS,
    COST_SOURCES,
    MAX_LABEL,
    SCHEMA_VERSION,
    STATUSES,
    TEXT_LIMITS,
    TOKEN_FIELDS,
    CostSource,
    Status,
)
from llmledger.events.wire_fast import fast_parser

__all__ = ["UsageEvent", "build_event"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageEvent:
    """One metered LLM call (or one manually tracked unit of usage). Immutable.

    Money is `Decimal`. `cost_usd is None` means the call could not be priced; `unpriced_reason` says
    why. `partially_priced` means part of the usage (an audio rate, a tool fee, a service tier...) had
    no price and `cost_usd` covers the rest; `cost_note` says what, and notes usage the host reported
    impossibly (normalised) or a provider-reported cost that differs from llmledger's own price,
    which is `computed_cost_usd` when the provider reported one. No prompt or completion text is ever
    part of an event.
    """

    event_id: str
    timestamp: datetime
    provider: str
    model: str
    requested_model: str | None = None
    endpoint: str | None = None
    service_tier: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    cache_audio_read_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    units: Mapping[str, Decimal] = field(default_factory=dict)
    cost_usd: Decimal | None = None
    cost_source: CostSource | None = None
    unpriced_reason: str | None = None
    partially_priced: bool = False
    cost_note: str | None = None
    computed_cost_usd: Decimal | None = None
    duration_ms: float | None = None
    time_to_first_token_ms: float | None = None
    stream: bool = False
    complete: bool = True
    status: Status = "ok"
    error_type: str | None = None
    request_id: str | None = None
    estimated: bool = False
    tenant: str | None = None
    user: str | None = None
    org: str | None = None
    feature: str | None = None
    agent: str | None = None
    session: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def priced(self) -> bool:
        """True when the event has a cost."""
        return self.cost_usd is not None

    def to_dict(self) -> dict[str, Any]:
        """The event's JSON wire form (schema version 1, see docs/usage-event.schema.json)."""
        out: dict[str, Any] = {}
        for f in _FIELDS:
            out[f] = getattr(self, f)
        out["timestamp"] = _format_ts(self.timestamp)
        out["cost_usd"] = None if self.cost_usd is None else str(self.cost_usd)
        computed = self.computed_cost_usd
        out["computed_cost_usd"] = None if computed is None else str(computed)
        out["units"] = {k: str(v) for k, v in self.units.items()}
        out["tags"] = dict(self.tags)
        return out

    def to_json(self) -> str:
        """The wire form as a compact JSON string."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageEvent:
        """Parse and validate a wire-form dict. Raises `InvalidEventError` naming the bad field."""
        plain = _fast(data)  # the common shape, by type checks alone (`events/wire_fast.py`)
        return _checked(data) if plain is None else build_event(plain)

    @classmethod
    def from_json(cls, text: str | bytes) -> UsageEvent:
        """Parse a JSON string in the wire form."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidEventError(f"usage event is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageEvent))
_SETTERS = tuple(getattr(UsageEvent, name).__set__ for name in _FIELDS)
_new = object.__new__
_in_field_order = operator.itemgetter(*_FIELDS)
_fast = fast_parser(
    _FIELDS,
    {f.name: None if f.default is MISSING else f.default for f in fields(UsageEvent)},
)


def build_event(values: tuple[Any, ...]) -> UsageEvent:
    """Construct an event from values already validated, in field order (`UsageEvent` field
    definition order). The frozen dataclass `__init__` costs about twice as much; `track()` uses this
    on the caller's hot path, and a test checks both build equal events."""
    event: UsageEvent = _new(UsageEvent)
    for setter, value in zip(_SETTERS, values, strict=True):
        setter(event, value)
    return event


def _checked(data: Mapping[str, Any]) -> UsageEvent:
    """`UsageEvent.from_dict` by the full checker (every shape; says what is wrong)."""
    if not isinstance(data, Mapping):
        raise InvalidEventError(f"a usage event must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - set(_FIELDS)
    if unknown:
        raise InvalidEventError(f"unknown usage event field(s): {', '.join(sorted(unknown))}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise InvalidEventError(f"unsupported schema_version {version!r}; this llmledger reads 1")
    try:
        return _event_from_wire(data)
    except InvalidEventError:
        raise
    except (InvalidUsageError, TypeError, ValueError, InvalidOperation) as exc:
        raise InvalidEventError(f"invalid usage event: {exc}") from exc


def _format_ts(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _req_str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEventError(f"field {name!r} must be a non-empty string")
    return value


def _opt_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidEventError(f"field {name!r} must be a string or null")
    return value


def _opt_float(data: Mapping[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidEventError(f"field {name!r} must be a non-negative number or null")
    check_duration(name, value)  # before float(): a huge int would overflow it
    return float(value)


def _bool(data: Mapping[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise InvalidEventError(f"field {name!r} must be true or false")
    return value


def _event_from_wire(data: Mapping[str, Any]) -> UsageEvent:
    # One pass, each check once: the checks of `event_problem` (what every store holds) and of the
    # wire form (types, enums), then the event built without the frozen dataclass `__init__`
    # (server ingest parses tens of thousands of these per second).
    get = data.get
    ts_raw = _req_str(data, "timestamp")
    ts = datetime.fromisoformat(ts_raw.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise InvalidEventError("field 'timestamp' must carry a UTC offset (e.g. '...Z')")
    ts = ts.astimezone(timezone.utc)
    check_timestamp("timestamp", ts)
    event_id = _req_str(data, "event_id")
    check_text("event_id", event_id, 36, required=True)
    values: dict[str, Any] = {"event_id": event_id, "timestamp": ts}
    for name, limit, required in _WIRE_TEXTS:
        value = get(name)
        if value is None and not required:
            values[name] = None
            continue
        # The common case in one expression: a short, printable ASCII string.
        if not (
            value.__class__ is str
            and 0 < len(value) <= limit
            and value.isascii()
            and not value.isspace()
            and "\x00" not in value
        ):
            value = _req_str(data, name) if required else value
            if value is not None and not isinstance(value, str):
                raise InvalidEventError(f"field {name!r} must be a string or null")
            check_text(name, value, limit, required=required)
        values[name] = value
    tokens = {name: get(name, 0) for name in TOKEN_FIELDS}
    check_tokens(tokens)
    values.update(tokens)
    labels: dict[str, Any] = {name: get(name) for name in ATTRIBUTION_FIELDS}
    tags = get("tags") or {}
    if all(
        v is None or (v.__class__ is str and 0 < len(v) <= MAX_LABEL and v.isascii() and "\x00" not in v)
        for v in labels.values()
    ):
        check_attribution({}, tags)  # the labels are fine: check the tags only
    else:
        for name in ATTRIBUTION_FIELDS:
            _opt_str(data, name)
        check_attribution(labels, tags)
    values.update(labels)
    values["tags"] = dict(tags)
    units_raw = get("units") or {}
    if not isinstance(units_raw, Mapping):
        raise InvalidEventError("field 'units' must be an object of unit name to decimal string")
    values["units"] = check_units({k: Decimal(str(v)) for k, v in units_raw.items()}) if units_raw else {}
    cost_raw = get("cost_usd")
    cost = None if cost_raw is None else Decimal(str(cost_raw))
    if cost is not None:
        if not cost.is_finite() or cost < 0:
            raise InvalidEventError("field 'cost_usd' must be a non-negative decimal string or null")
        check_amount("cost_usd", cost)
    values["cost_usd"] = cost
    computed_raw = get("computed_cost_usd")
    computed = None if computed_raw is None else Decimal(str(computed_raw))
    if computed is not None and (not computed.is_finite() or computed < 0):
        raise InvalidEventError("field 'computed_cost_usd' must be a non-negative decimal string or null")
    values["computed_cost_usd"] = computed
    cost_source = _opt_str(data, "cost_source")
    if cost_source is not None and cost_source not in COST_SOURCES:
        raise InvalidEventError(f"field 'cost_source' must be one of {sorted(COST_SOURCES)}")
    values["cost_source"] = cost_source
    status = get("status", "ok")
    if status not in STATUSES:
        raise InvalidEventError(f"field 'status' must be one of {sorted(STATUSES)}")
    values["status"] = status
    for name in ("duration_ms", "time_to_first_token_ms"):
        values[name] = _opt_float(data, name)
    values["cost_note"] = _opt_str(data, "cost_note")
    values["partially_priced"] = _bool(data, "partially_priced", False)
    values["stream"] = _bool(data, "stream", False)
    values["complete"] = _bool(data, "complete", True)
    values["estimated"] = _bool(data, "estimated", False)
    values["schema_version"] = SCHEMA_VERSION
    return build_event(_in_field_order(values))


_WIRE_TEXTS: tuple[tuple[str, int, bool], ...] = tuple(
    (name, limit, name in ("provider", "model"))
    for name, limit in TEXT_LIMITS.items()
    if name != "cost_source"
)
