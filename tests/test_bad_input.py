"""Bad input anywhere: a typed error naming the field, or a correct result — never a raw exception, a
stuck writer or a broken ledger (property-based, bounded example counts). Also: file modes."""

from __future__ import annotations

import os
import stat
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmledger
from llmledger.errors import LlmLedgerError

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values of every awkward kind: huge and negative ints, non-finite floats, lone surrogates, NUL,
# long strings, wrong types, containers.
texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "x" * 300, "x" * 1_000_000, "é"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**63 - 1, -1, 0, 10**10 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    texts,
    st.sampled_from(["no", "1e1000000", "-5", "30d", "yes"]),
    st.just(datetime(9999, 12, 31, tzinfo=timezone.utc)),
    st.just(datetime(2020, 1, 1)),  # naive
    st.just(date(2024, 1, 1)),
    st.just(timedelta(days=-3)),
)
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(texts, scalars, max_size=2))

TRACK_FIELDS = [
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "units",
    "cost_usd",
    "provider_cost_usd",
    "requested_model",
    "endpoint",
    "service_tier",
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
    "feature",
    "session",
    "tags",
]


def _typed_or_ok(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except LlmLedgerError as exc:
        assert str(exc)  # noqa: PT017  (says what is wrong)
        return exc


def _still_metering() -> None:
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, tenant="canary")
    assert llmledger.flush(timeout=10)
    assert llmledger.spend(tenant="canary") > 0
    assert llmledger.usage("tenant")
    stats = llmledger.stats()
    assert stats.events_pending == 0 and stats.events_dropped == 0


@SETTINGS
@given(field=st.sampled_from(TRACK_FIELDS), value=values)
def test_track_with_any_value(ledger: Any, field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, field: value}
    result = _typed_or_ok(llmledger.track, **kwargs)
    if isinstance(result, LlmLedgerError):
        named = field.replace("_usd", "").split("_")[0]
        assert named in str(result) or field in str(result) or "unit" in str(result), (field, str(result))


@SETTINGS
@given(field=st.sampled_from(TRACK_FIELDS), value=values)
def test_track_usage_with_any_value(ledger: Any, field: str, value: Any) -> None:
    def block() -> None:
        with llmledger.track_usage(provider="openai", model="gpt-4o") as t:
            t.set_usage(**{field: value})

    _typed_or_ok(block)


@SETTINGS
@given(field=st.sampled_from(["tenant", "user", "org", "feature", "agent", "session", "tags"]), value=values)
def test_attribute_with_any_value(ledger: Any, field: str, value: Any) -> None:
    def block() -> None:
        with llmledger.attribute(**{field: value}):
            llmledger.track(provider="openai", model="gpt-4o", input_tokens=1)

    result = _typed_or_ok(block)
    if isinstance(result, LlmLedgerError):
        assert field.rstrip("s") in str(result), (field, str(result))


@SETTINGS
@given(
    since=values,
    until=values,
    field=st.sampled_from(["tenant", "model", "tags", "status", "nope"]),
    value=values,
)
def test_queries_with_any_value(ledger: Any, since: Any, until: Any, field: str, value: Any) -> None:
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, tenant="acme")
    for fn in (llmledger.events, llmledger.spend):
        _typed_or_ok(fn, since=since, until=until, **{field: value})
    _typed_or_ok(llmledger.usage, value if isinstance(value, str) else "tenant", since=since, until=until)


@SETTINGS
@given(
    field=st.sampled_from(
        [
            "enabled",
            "debug",
            "max_buffer",
            "flush_interval",
            "default_output_cap",
            "reservation_ttl",
            "instrument",
            "providers",
            "base_url_providers",
            "tenant",
            "tags",
            "on_event",
            "prices",
        ]
    ),
    value=values,
)
def test_init_with_any_value(tmp_path: Path, field: str, value: Any) -> None:
    result = _typed_or_ok(llmledger.init, **{"ledger": str(tmp_path / "l.db"), field: value})
    if isinstance(result, LlmLedgerError):
        assert field.rstrip("s") in str(result) or "price" in str(result), (field, str(result))
    llmledger.init(ledger=str(tmp_path / "l.db"), flush_interval=0.02)
    _still_metering()


def test_named_cases(ledger: Any) -> None:
    cases: list[tuple[Any, dict[str, Any], str]] = [
        (llmledger.track, {"provider": "openai", "model": "gpt-4o", "stream": "no"}, "stream"),
        (llmledger.track, {"provider": "openai", "model": "m" * 1_000_000}, "model"),
        (llmledger.track, {"provider": "openai", "model": "gpt\x00-4o"}, "model"),
        (llmledger.track, {"provider": "openai", "model": "gpt-4o", "tenant": "\ud800"}, "tenant"),
        (llmledger.track, {"provider": "openai", "model": "gpt-4o", "input_tokens": 2**63}, "input_tokens"),
        (llmledger.events, {"since": "1d", "until": "30d"}, "since"),
        (llmledger.spend, {"since": "1d", "until": "30d"}, "since"),
    ]
    for fn, kwargs, field in cases:
        with pytest.raises(LlmLedgerError, match=field):
            fn(**kwargs)
    with pytest.raises(LlmLedgerError, match="enabled"):
        llmledger.init(enabled="no")  # type: ignore[arg-type]
    _still_metering()


def test_ledger_wal_shm_and_journal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "sub" / "ledger.db"
        llmledger.init(ledger=str(path), flush_interval=0.02)
        llmledger.track(provider="openai", model="gpt-4o", input_tokens=1)
        assert llmledger.flush()
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), *Path(f"{path}.journal").iterdir()]
        assert len(files) >= 4
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f  # before: 0644
        assert stat.S_IMODE(Path(f"{path}.journal").stat().st_mode) == 0o700
        assert Decimal(0) < llmledger.spend()
    finally:
        os.umask(old)
