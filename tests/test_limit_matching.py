"""`Enforcer.applies` works out the limits a call matches once; the `reserve` that follows reuses it,
unless the limits changed in between (then it matches again)."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmledger
from llmledger.limit.model import scope_of_call
from llmledger.sdk import runtime as rt


def _reserve(scope: dict[str, str | None]) -> str | None:
    enforcer = rt.current().enforcer
    return enforcer.reserve(
        scope, provider="openai", model="gpt-4o", feature=None, input_tokens=5, max_output_tokens=10
    ).id


def test_applies_then_reserve_holds_against_the_matched_limits(tmp_path: Path) -> None:
    llmledger.init(ledger=str(tmp_path / "ledger.db"))
    try:
        llmledger.set_limit(usd=1, per="month", tenant="acme")
        enforcer = rt.current().enforcer
        enforcer.limits(fresh=True)
        acme = scope_of_call({"tenant": "acme"}, "gpt-4o", "openai", {})
        other = scope_of_call({"tenant": "other"}, "gpt-4o", "openai", {})
        assert enforcer.applies(acme)
        assert _reserve(acme) is not None
        assert not enforcer.applies(other)
        assert _reserve(other) is None
        assert enforcer.applies(acme)
        assert _reserve(other) is None  # another scope than the one `applies` saw: matched anew
    finally:
        llmledger.shutdown()


def test_a_limit_set_between_applies_and_reserve_is_honoured(tmp_path: Path) -> None:
    llmledger.init(ledger=str(tmp_path / "ledger.db"))
    try:
        llmledger.set_limit(usd=1, per="month", tenant="acme")
        enforcer = rt.current().enforcer
        enforcer.limits(fresh=True)
        scope = scope_of_call({"tenant": "acme", "user": "u1"}, "gpt-4o", "openai", {})
        assert enforcer.applies(scope)
        llmledger.set_limit(usd=0.000001, per="month", user="*")  # now a second, exhausted limit
        enforcer.limits(fresh=True)
        with pytest.raises(llmledger.LimitExceeded) as refused:
            _reserve(scope)
        assert refused.value.subject == "user=u1"
    finally:
        llmledger.shutdown()
