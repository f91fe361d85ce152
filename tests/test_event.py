"""The usage event: wire form, JSON Schema, validation and identifiers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from llmledger import InvalidEventError, UsageEvent
from llmledger.events.event import _FIELDS, build_event
from llmledger.events.ids import uuid7, uuid7_time_ms

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "usage-event.schema.json").read_text())


def _event(**overrides: object) -> UsageEvent:
    fields: dict[str, object] = {
        "event_id": uuid7(),
        "timestamp": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
        "provider": "anthropic",
        "model": "claude-sonnet-4-5-20250929",
        "requested_model": "claude-sonnet-4-5",
        "endpoint": "messages",
        "input_tokens": 3000,
        "output_tokens": 500,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 1500,
        "cache_write_1h_tokens": 500,
        "reasoning_tokens": 200,
        "units": {"web_searches": Decimal(2)},
        "cost_usd": Decimal("0.0123456789"),
        "cost_source": "catalog",
        "duration_ms": 812.5,
        "time_to_first_token_ms": 95.0,
        "stream": True,
        "tenant": "acme",
        "user": "u1",
        "feature": "chat",
        "tags": {"plan": "pro", "region": "eu"},
    }
    fields.update(overrides)
    return UsageEvent(**fields)  # type: ignore[arg-type]


def test_wire_form_round_trips_exactly() -> None:
    event = _event()
    assert UsageEvent.from_json(event.to_json()) == event
    wire = event.to_dict()
    assert wire["cost_usd"] == "0.0123456789"  # money travels as an exact decimal string
    assert wire["timestamp"] == "2026-01-02T03:04:05.678901Z"
    assert wire["schema_version"] == 1


def test_wire_form_matches_the_published_json_schema() -> None:
    jsonschema.validate(_event().to_dict(), SCHEMA)
    jsonschema.validate(_event(cost_usd=None, cost_source=None, unpriced_reason="no price").to_dict(), SCHEMA)
    assert set(SCHEMA["properties"]) == set(_FIELDS)


def test_schema_rejects_what_from_dict_rejects() -> None:
    bad = _event().to_dict()
    bad["input_tokens"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
    with pytest.raises(InvalidEventError, match="input_tokens must be >= 0"):
        UsageEvent.from_dict(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"surprise": 1}, "unknown usage event field"),
        ({"schema_version": 2}, "unsupported schema_version"),
        ({"model": ""}, "'model' must be a non-empty string"),
        ({"timestamp": "2026-01-02T03:04:05"}, "UTC offset"),
        ({"cost_usd": "-1"}, "non-negative"),
        ({"cost_source": "guess"}, "cost_source"),
        ({"status": "weird"}, "status"),
        ({"cache_read_tokens": 5000}, "exceeds input_tokens"),
        ({"reasoning_tokens": 501}, "exceeds output_tokens"),
        ({"tags": {"plan": 3}}, "tag 'plan'"),
        ({"units": {"parsecs": "1"}}, "unknown unit"),
        ({"stream": "yes"}, "true or false"),
    ],
)
def test_from_dict_names_the_bad_field(change: dict[str, object], message: str) -> None:
    wire = {**_event().to_dict(), **change}
    with pytest.raises(InvalidEventError, match=message):
        UsageEvent.from_dict(wire)


def test_from_json_rejects_garbage() -> None:
    with pytest.raises(InvalidEventError, match="not valid JSON"):
        UsageEvent.from_json("{nope")
    with pytest.raises(InvalidEventError, match="JSON object"):
        UsageEvent.from_dict([1, 2])  # type: ignore[arg-type]


def test_events_are_immutable() -> None:
    event = _event()
    with pytest.raises(AttributeError):
        event.cost_usd = Decimal(0)  # type: ignore[misc]


def test_build_event_equals_the_dataclass_constructor() -> None:
    event = _event()
    assert build_event(tuple(getattr(event, f) for f in _FIELDS)) == event


def test_uuid7_is_time_ordered_and_well_formed() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for value in ids[:10]:
        assert len(value) == 36
        assert value[14] == "7"  # version
        assert value[19] in "89ab"  # RFC 4122 variant
    assert abs(uuid7_time_ms(ids[0]) - datetime.now(timezone.utc).timestamp() * 1000) < 5000
