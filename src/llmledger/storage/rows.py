"""Conversion between `UsageEvent` and ledger rows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from llmledger.events.event import UsageEvent
from llmledger.events.schema import TOKEN_FIELDS

_dumps = json.JSONEncoder(separators=(",", ":")).encode

__all__ = [
    "EPOCH",
    "event_to_row",
    "event_to_sqlite_tuple",
    "from_us",
    "row_to_event",
    "sqlite_tuples",
    "to_us",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def to_us(ts: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the Unix epoch."""
    return (ts - EPOCH) // _US


def from_us(us: int) -> datetime:
    """Integer microseconds since the epoch as a UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def event_to_row(e: UsageEvent) -> dict[str, Any]:
    """The ledger row for an event."""
    return {
        "event_id": e.event_id,
        "schema_version": e.schema_version,
        "ts_us": to_us(e.timestamp),
        "provider": e.provider,
        "model": e.model,
        "requested_model": e.requested_model,
        "endpoint": e.endpoint,
        "service_tier": e.service_tier,
        "input_tokens": e.input_tokens,
        "output_tokens": e.output_tokens,
        "cache_read_tokens": e.cache_read_tokens,
        "cache_write_tokens": e.cache_write_tokens,
        "cache_write_1h_tokens": e.cache_write_1h_tokens,
        "reasoning_tokens": e.reasoning_tokens,
        "input_audio_tokens": e.input_audio_tokens,
        "output_audio_tokens": e.output_audio_tokens,
        "cache_audio_read_tokens": e.cache_audio_read_tokens,
        "input_image_tokens": e.input_image_tokens,
        "output_image_tokens": e.output_image_tokens,
        "units": {k: str(v) for k, v in e.units.items()} if e.units else None,
        "cost_usd": e.cost_usd,
        "cost_source": e.cost_source,
        "unpriced_reason": e.unpriced_reason,
        "partially_priced": e.partially_priced,
        "cost_note": e.cost_note,
        "computed_cost_usd": e.computed_cost_usd,
        "duration_ms": e.duration_ms,
        "time_to_first_token_ms": e.time_to_first_token_ms,
        "stream": e.stream,
        "complete": e.complete,
        "status": e.status,
        "error_type": e.error_type,
        "request_id": e.request_id,
        "estimated": e.estimated,
        "tenant": e.tenant,
        "user": e.user,
        "org": e.org,
        "feature": e.feature,
        "agent": e.agent,
        "session": e.session,
        "tags": dict(e.tags) if e.tags else None,
    }


class _TagsEncoder:
    """JSON-encodes the tag dicts of one batch, remembering each encoding: events of one
    `attribute()` block share the same dict object, and events parsed from the wire carry equal
    dicts of their own (a batch mostly holds a few distinct tag sets)."""

    __slots__ = ("_last", "_seen", "_text")

    def __init__(self) -> None:
        self._last: Mapping[str, str] | None = None
        self._text: str | None = None
        self._seen: dict[tuple[tuple[str, str], ...], str] = {}

    def __call__(self, tags: Mapping[str, str]) -> str | None:
        if not tags:
            return None
        if tags is not self._last:
            items = tuple(tags.items())  # insertion order: equal items encode to equal text
            text = self._seen.get(items)
            if text is None:
                text = self._seen[items] = _dumps(tags)
            self._text = text
            self._last = tags
        return self._text


def event_to_sqlite_tuple(e: UsageEvent, tags_json: _TagsEncoder | None = None) -> tuple[Any, ...]:
    """The row as SQLite driver values, in `SQLITE_COLUMNS` order (the writer's fast path)."""
    return (
        e.event_id,
        e.schema_version,
        (e.timestamp - EPOCH) // _US,
        e.provider,
        e.model,
        e.requested_model,
        e.endpoint,
        e.service_tier,
        e.input_tokens,
        e.output_tokens,
        e.cache_read_tokens,
        e.cache_write_tokens,
        e.cache_write_1h_tokens,
        e.reasoning_tokens,
        e.input_audio_tokens,
        e.output_audio_tokens,
        e.cache_audio_read_tokens,
        e.input_image_tokens,
        e.output_image_tokens,
        _dumps({k: str(v) for k, v in e.units.items()}) if e.units else None,
        None if e.cost_usd is None else str(e.cost_usd),
        e.cost_source,
        e.unpriced_reason,
        int(e.partially_priced),
        e.cost_note,
        None if e.computed_cost_usd is None else str(e.computed_cost_usd),
        e.duration_ms,
        e.time_to_first_token_ms,
        int(e.stream),
        int(e.complete),
        e.status,
        e.error_type,
        e.request_id,
        int(e.estimated),
        e.tenant,
        e.user,
        e.org,
        e.feature,
        e.agent,
        e.session,
        tags_json(e.tags) if tags_json is not None else (_dumps(e.tags) if e.tags else None),
    )


def sqlite_tuples(batch: Sequence[UsageEvent]) -> list[tuple[Any, ...]]:
    """Driver-ready tuples for a batch of events."""
    encoder = _TagsEncoder()
    return [event_to_sqlite_tuple(e, encoder) for e in batch]


SQLITE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "schema_version",
    "ts_us",
    "provider",
    "model",
    "requested_model",
    "endpoint",
    "service_tier",
    *TOKEN_FIELDS,
    "units",
    "cost_usd",
    "cost_source",
    "unpriced_reason",
    "partially_priced",
    "cost_note",
    "computed_cost_usd",
    "duration_ms",
    "time_to_first_token_ms",
    "stream",
    "complete",
    "status",
    "error_type",
    "request_id",
    "estimated",
    "tenant",
    "user",
    "org",
    "feature",
    "agent",
    "session",
    "tags",
)


def row_to_event(row: Mapping[Any, Any]) -> UsageEvent:
    """The event stored in a ledger row."""
    units: Mapping[str, Any] = row["units"] or {}
    return UsageEvent(
        event_id=row["event_id"],
        schema_version=row["schema_version"],
        timestamp=from_us(row["ts_us"]),
        provider=row["provider"],
        model=row["model"],
        requested_model=row["requested_model"],
        endpoint=row["endpoint"],
        service_tier=row["service_tier"],
        **{name: int(row[name]) for name in TOKEN_FIELDS},
        units={k: Decimal(v) for k, v in units.items()},
        cost_usd=row["cost_usd"],
        cost_source=row["cost_source"],
        unpriced_reason=row["unpriced_reason"],
        partially_priced=bool(row["partially_priced"]),
        cost_note=row["cost_note"],
        computed_cost_usd=row["computed_cost_usd"],
        duration_ms=row["duration_ms"],
        time_to_first_token_ms=row["time_to_first_token_ms"],
        stream=bool(row["stream"]),
        complete=bool(row["complete"]),
        status=row["status"],
        error_type=row["error_type"],
        request_id=row["request_id"],
        estimated=bool(row["estimated"]),
        tenant=row["tenant"],
        user=row["user"],
        org=row["org"],
        feature=row["feature"],
        agent=row["agent"],
        session=row["session"],
        tags=dict(row["tags"] or {}),
    )
