"""Server ingest's parsing: `UsageEvent.from_dict` validates in one pass (each check once), and still
refuses everything a store cannot hold — what it accepts passes `event_problem` and round-trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmledger.errors import InvalidEventError
from llmledger.events.checks import event_problem
from llmledger.events.event import UsageEvent

BASE = {
    "event_id": "0190aaaa-0000-7000-8000-000000000001",
    "timestamp": "2026-01-02T03:04:05Z",
    "provider": "openai",
    "model": "gpt-4o-mini",
}
TEXT_KEYS = [
    "event_id",
    "timestamp",
    "provider",
    "model",
    "requested_model",
    "endpoint",
    "service_tier",
    "error_type",
    "request_id",
    "unpriced_reason",
    "cost_note",
    "tenant",
    "user",
    "session",
    "status",
    "cost_source",
]
texts = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.sampled_from(["", " ", "gpt-4o", "a" * 300, "x\x00", "\ud800", "ok", "catalog", "error"]),
    st.integers(),
    st.just(1.5),
)
numbers = st.one_of(
    st.integers(-2, 10**11), st.just(True), st.just(1.5), st.none(), st.just("3"), st.just(2**63)
)
amounts = st.one_of(
    st.none(), st.sampled_from(["0.1", "-1", "NaN", "1e1000000", "1e-40", "1e10", "abc", 0.5, 3])
)
times = st.sampled_from(
    [
        "2026-01-02T03:04:05Z",
        "1999-01-01T00:00:00Z",
        "2026-01-02T03:04:05",
        "9999-01-01T00:00:00Z",
        "x",
        "2026-01-02T03:04:05+02:00",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from(TEXT_KEYS), texts, max_size=4),
    st.dictionaries(
        st.sampled_from(["input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens"]),
        numbers,
        max_size=3,
    ),
    st.dictionaries(st.sampled_from(["cost_usd", "computed_cost_usd"]), amounts, max_size=2),
    st.dictionaries(
        st.sampled_from(["duration_ms", "time_to_first_token_ms"]),
        st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-5, 10**11), st.just(True)),
        max_size=2,
    ),
    st.dictionaries(
        st.sampled_from(["stream", "complete", "estimated", "partially_priced"]),
        st.one_of(st.booleans(), st.integers(0, 1), st.none()),
        max_size=2,
    ),
    st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers()), max_size=3),
        st.just([1]),
    ),
    st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["web_searches", "input_pixels", "bogus"]),
            st.one_of(st.integers(-1, 5), st.sampled_from(["1.5", "x", "-2"])),
            max_size=2,
        ),
    ),
    st.one_of(st.none(), times),
)
def test_what_from_dict_accepts_every_store_holds_and_round_trips(
    text: dict[str, Any],
    tokens: dict[str, Any],
    costs: dict[str, Any],
    durations: dict[str, Any],
    flags: dict[str, Any],
    tags: Any,
    units: Any,
    timestamp: str | None,
) -> None:
    data: dict[str, Any] = {**BASE, **text, **tokens, **costs, **durations, **flags}
    for name, value in (("tags", tags), ("units", units), ("timestamp", timestamp)):
        if value is not None:
            data[name] = value
    try:
        event = UsageEvent.from_dict(data)
    except InvalidEventError:
        return
    assert event_problem(event) is None
    assert UsageEvent.from_dict(event.to_dict()) == event


def test_each_kind_of_bad_value_is_refused_naming_the_field() -> None:
    cases = {
        "provider": " ",
        "model": "m" * 257,
        "endpoint": "e" * 65,
        "request_id": 5,
        "tenant": "t\x00",
        "input_tokens": -1,
        "output_tokens": 2**63,
        "cost_usd": "1e10",
        "duration_ms": float("inf"),
        "timestamp": "2101-01-01T00:00:00Z",
        "event_id": "x" * 37,
        "status": "fine",
        "stream": "no",
    }
    for name, value in cases.items():
        with pytest.raises(InvalidEventError, match=name.split("_ms")[0].split("_usd")[0]):
            UsageEvent.from_dict({**BASE, name: value})
    good = UsageEvent.from_dict(
        {**BASE, "tags": {"plan": "pro"}, "units": {"web_searches": "2"}, "cost_usd": "0.5"}
    )
    assert (
        good.tags == {"plan": "pro"}
        and str(good.units["web_searches"]) == "2"
        and str(good.cost_usd) == "0.5"
    )
