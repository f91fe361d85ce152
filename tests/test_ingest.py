"""Server ingest's parsing: `UsageEvent.from_dict` validates in one pass (each check once), and still
refuses everything a store cannot hold — what it accepts passes `event_problem` and round-trips.

The common shape takes a cheaper path (`events/wire_fast.py`: type checks alone, giving up on
anything unusual); the properties below check that it accepts nothing the full checker refuses and
builds exactly the event the full checker builds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmledger.errors import InvalidEventError
from llmledger.events.checks import event_problem
from llmledger.events.event import UsageEvent, _checked, _fast, build_event

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
    event = _same_by_both_paths(data)
    if event is None:
        return
    assert event_problem(event) is None
    assert UsageEvent.from_dict(event.to_dict()) == event


def _same_by_both_paths(data: Any) -> UsageEvent | None:
    """`from_dict`'s event (None: refused), after checking that the fast path agrees with the full
    checker: it refuses nothing itself and accepts only what the full checker accepts, as the very
    same event (reprs equal: Decimal digits, float durations, the UTC timezone)."""
    plain = _fast(data)
    try:
        full = _checked(data)
    except InvalidEventError:
        assert plain is None, data
        with pytest.raises(InvalidEventError):
            UsageEvent.from_dict(data)
        return None
    event = UsageEvent.from_dict(data)
    assert repr(event) == repr(full)
    if plain is not None:
        assert repr(build_event(plain)) == repr(full)
    return event


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


SPARSE = {  # what bench/bench_server.py and hand-written senders send
    **BASE,
    "timestamp": "2026-01-02T03:04:05.123456Z",
    "endpoint": "chat.completions",
    "input_tokens": 1200,
    "cache_read_tokens": 1024,
    "output_tokens": 80,
    "duration_ms": 412.5,
    "tenant": "tenant-1",
    "user": "user-7",
    "feature": "chat",
    "tags": {"plan": "pro"},
    "cost_usd": "0.0001356",
    "cost_source": "catalog",
}
FULL = UsageEvent.from_dict(SPARSE).to_dict()  # what the SDK's remote mode sends: every field
ODD_VALUES = [
    None, True, False, 0, 1, -1, 1.0, 2.5, -0.0, float("nan"), float("inf"), 10**10, 10**10 + 1,
    10**400, "", " ", "\t", "ok", "error", "catalog", "manual", "x" * 16, "x" * 17, "x" * 32,
    "x" * 33, "x" * 36, "x" * 37, "x" * 64, "x" * 65, "x" * 256, "x" * 257, "a\x00b", "é", "\ud800",
    "0.5", "-0.5", "-0", "1e9", "1e10", "1e-30", "1e-31", "1.5e-31", "NaN", "sNaN", "Infinity",
    " 1 ", "1_0", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05+02:00", "2026-01-02T03:04:05",
    "2099-12-31T23:59:59.999999Z", "2100-01-01T00:00:00Z", "1999-12-31T23:59:59Z",
    "2026-01-02T03:04:05z", "20260102T030405Z", [], {}, [1], {"a": "b"}, {"a": 1}, {"": "b"},
    {"a": ""}, {"a": "é"}, {"k" * 257: "v"}, {"a": "v" * 257}, {f"t{i}": "v" for i in range(65)},
    {"web_searches": "2"}, {"bogus": 1},
]  # fmt: skip
FIELDS = [*FULL, "unknown_field"]


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from([SPARSE, FULL]),
    st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(ODD_VALUES)), max_size=2),
    st.lists(st.sampled_from(FIELDS), max_size=2),
)
def test_the_fast_path_accepts_only_what_the_full_checker_accepts_as_the_same_event(
    base: dict[str, Any], changes: list[tuple[str, Any]], dropped: list[str]
) -> None:
    data = {k: v for k, v in base.items() if k not in dropped}
    data.update(changes)
    _same_by_both_paths(data)


def test_the_common_shapes_take_the_fast_path() -> None:
    # the property above is only worth its name if the shapes senders use are the fast ones
    for data in (SPARSE, FULL, {**FULL, "units": {}, "tags": None}, {**SPARSE, "schema_version": 1}):
        plain = _fast(data)
        assert plain is not None and build_event(plain) == _checked(data)
    for unusual in ({**SPARSE, "units": {"web_searches": "2"}}, {**SPARSE, "tenant": "é"}):
        assert _fast(unusual) is None and UsageEvent.from_dict(unusual) == _checked(unusual)


def test_numbers_too_large_for_a_float_are_refused_not_raised() -> None:
    # `float(10**400)` (a duration) and `f"{10**400:.3g}"` (a token count's message) raised
    # OverflowError through `from_dict`: a 500 from the server's ingest
    for name in ("duration_ms", "input_tokens"):
        with pytest.raises(InvalidEventError, match=name):
            UsageEvent.from_dict({**BASE, name: 10**400})
