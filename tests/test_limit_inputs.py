"""Bad input to `set_limit` / `load_limits` (issue 8 part 6, the limits' share): a typed error that
names the field and what to fix, or a correct limit — never a raw exception; files all or nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmledger
from llmledger.limit.define import make_limit

WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.just("\ud800"),
    st.just("a\x00b"),
    st.just("x" * 300),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.just(object()),
)
KEYS = st.sampled_from(
    [
        "usd",
        "tokens",
        "requests",
        "per",
        "tz",
        "week_start",
        "month_anchor",
        "mode",
        "enforcement",
        "thresholds",
        "name",
        "tags",
        "max_wait",
        "downgrade",
        "unpriced",
        "fallback_price",
        "tenant",
        "user",
        "model",
        "bogus",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, WEIRD, max_size=6), st.sampled_from([{"usd": 1}, {"tokens": 10}, {}]))
def test_make_limit_raises_typed_errors_only(fields: dict[str, Any], base: dict[str, Any]) -> None:
    try:
        limit = make_limit("x", **{**base, **fields})
    except llmledger.LimitDefinitionError:
        return
    assert limit.amount.is_finite() and limit.amount >= 0
    assert limit.metric in ("usd", "tokens", "requests")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.dictionaries(KEYS, WEIRD, max_size=4))
def test_set_limit_never_raises_raw(ledger_path: Path, fields: dict[str, Any]) -> None:
    llmledger.init(ledger=str(ledger_path))
    try:
        limit = llmledger.set_limit(**{"usd": 1, **fields})
    except llmledger.LimitDefinitionError:
        return
    assert limit in llmledger.limits()


def test_every_problem_of_every_entry_is_listed_and_nothing_applied(
    ledger_path: Path, tmp_path: Path
) -> None:
    llmledger.init(ledger=str(ledger_path))
    path = tmp_path / "limits.toml"
    path.write_text(
        """
[[limits]]
usd = 5
per = "day"
tenant = "fine"

[[limits]]
usd = -1
per = "fortnight"
mode = "lenient"
tenant = "t"

[[limits]]
tokens = 1.5
thresholds = [0, 2]
colour = "blue"
""",
        encoding="utf-8",
    )
    with pytest.raises(llmledger.LimitDefinitionError) as info:
        llmledger.load_limits(path)
    message = str(info.value)
    for expected in (
        "entry 2",
        "usd must be a finite amount",
        "per='fortnight'",
        "mode='lenient'",
        "entry 3",
        "tokens must be a whole number",
        "thresholds",
        "unknown scope 'colour'",
    ):
        assert expected in message, (expected, message)
    assert "entry 1" not in message
    assert llmledger.limits() == []  # all or nothing: the good first entry was not applied


def test_unpriced_policy_is_validated_and_kept(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path))
    limit = llmledger.set_limit(usd=1, tenant="t", unpriced="fallback", fallback_price=(3, 15))
    assert (limit.unpriced, limit.fallback_price) == ("fallback", (Decimal(3), Decimal(15)))
    assert llmledger.limits()[0].fallback_price == (Decimal(3), Decimal(15))
    with pytest.raises(llmledger.LimitDefinitionError, match="unpriced"):
        llmledger.set_limit(usd=1, tenant="t", unpriced="free")
    with pytest.raises(llmledger.LimitDefinitionError, match="fallback_price"):
        llmledger.set_limit(usd=1, tenant="t", unpriced="fallback")
    with pytest.raises(llmledger.LimitDefinitionError, match="fallback_price only applies"):
        llmledger.set_limit(usd=1, tenant="t", fallback_price=(1, 1))
