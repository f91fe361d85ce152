"""Issue 8 part 4: strict limits never overshoot — and do not refuse what fits.

The provider is `tests/fakes/honest.py` (bills like OpenAI, honours max_tokens, n and the tier);
what it billed is priced from its own log, at the tier it served, never from llmledger's events.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fakes.honest import Honest, billed
from tests.fakes.prompt_tokens import openai_prompt_tokens

import llmledger
from llmledger.pricing.pricer import Pricer
from llmledger.sdk import runtime as _rt
from llmledger.storage.ledger import Ledger
from llmledger.tokens import warm

SYSTEM = (
    "You are a support assistant for Acme Cloud. Answer in the customer's language, cite the relevant "
    "documentation section, never reveal internal ticket numbers, and escalate billing disputes over "
    "$500 to a human. Keep answers under 200 words unless the customer asks for detail. "
) * 47
LONG = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Why was I billed twice?"}]
_PRICER = Pricer()


@pytest.fixture(autouse=True)
def _tokenizer() -> None:
    warm().join()


def _client(honest: Honest) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", http_client=honest.client(), max_retries=0)


def test_issue_case_small_budget_admits_what_fits(ledger_path: Path, tmp_path: Path) -> None:
    """$0.004/month, gpt-5-mini, ~2,450-token prompt, max_tokens=850: admitted 0 of 6 before (the
    input bound was the body's bytes, ~6x the tokens). Each call's worst case is ~$0.0023: 1 fits
    with full outputs, 2 with half outputs."""
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd="0.004", per="month", tenant="acme")
    log = tmp_path / "served.log"
    honest = Honest(out=lambda cap: cap // 2, log=str(log))
    client = _client(honest)
    body = {"model": "gpt-5-mini", "messages": LONG, "max_tokens": 850}
    real_prompt = openai_prompt_tokens(body)
    assert 2000 < real_prompt < 3000
    real_worst = (real_prompt * Decimal("0.25") + 850 * Decimal(2)) / 10**6
    admitted = 0
    for _ in range(6):
        try:
            client.chat.completions.create(
                model="gpt-5-mini", messages=LONG, max_tokens=850, ledger_tenant="acme"
            )  # type: ignore[arg-type,call-arg]
            admitted += 1
        except llmledger.LimitExceeded as err:
            refused = err
    assert admitted == 2  # real cost ~$0.00146 each: two fit under $0.004 with a $0.0023 worst case
    assert refused.requested <= real_worst * Decimal("1.10")  # strict input within 10 % of the real count
    assert billed(log, "gpt-5-mini") <= Decimal("0.004")


def test_concurrent_small_budget_admits_three_or_four(ledger_path: Path, tmp_path: Path) -> None:
    """$0.01, 32 concurrent calls of a ~$0.0023 worst case: 1 of 32 admitted before, 3-4 fit."""
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd="0.01", per="month", tenant="acme")
    log = tmp_path / "served.log"
    client = _client(Honest(out=lambda cap: cap, log=str(log)))
    start = threading.Barrier(32)
    outcomes: list[bool] = []

    def one() -> None:
        start.wait()
        try:
            client.chat.completions.create(
                model="gpt-5-mini", messages=LONG, max_tokens=850, ledger_tenant="acme"
            )  # type: ignore[arg-type,call-arg]
            outcomes.append(True)
        except llmledger.LimitExceeded:
            outcomes.append(False)

    threads = [threading.Thread(target=one) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(outcomes) in (3, 4)
    assert billed(log, "gpt-5-mini") <= Decimal("0.01")


def test_back_to_back_calls_settle_when_they_end(ledger_path: Path) -> None:
    """Before: the third of three back-to-back calls was refused at 22 % real spend, because each
    finished call held its worst case until the writer committed its event."""
    llmledger.init(ledger=str(ledger_path), flush_interval=30)  # the writer commits nothing meanwhile
    body = {"model": "gpt-4o", "messages": LONG, "max_tokens": 1000}
    worst = (openai_prompt_tokens(body) * Decimal("2.5") + 1000 * Decimal(10)) / 10**6
    llmledger.set_limit(
        usd=str((worst * Decimal("3.2")).quantize(Decimal("0.000001"))), per="day", tenant="acme"
    )
    client = _client(Honest(out=lambda cap: cap // 10))
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=LONG, max_tokens=1000, ledger_tenant="acme")  # type: ignore[arg-type,call-arg]
    (status,) = llmledger.remaining(tenant="acme")
    assert status.spent == 0  # nothing committed yet
    actual = (openai_prompt_tokens(body) * Decimal("2.5") + 100 * Decimal(10)) / 10**6
    assert status.reserved == 3 * actual < 3 * worst  # settled: their actual cost, not 3 worst cases
    assert llmledger.flush(10)
    (status,) = llmledger.remaining(tenant="acme")
    assert status.reserved == 0 and status.spent > 0
    assert llmledger.reconcile() == []


def test_a_failed_batch_still_releases_its_reservations(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a batch whose write failed lost its releases; $0.60 stayed held until the TTL."""
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd=1, per="day", tenant="acme")
    failures = [1]
    real_write = Ledger.write

    def flaky(self: Ledger, batch: Any, releases: Any = ()) -> Any:
        runtime = _rt._runtime
        if failures and runtime is not None and self is runtime.ledger and batch:  # this test's writer only
            failures.pop()
            raise OSError("disk full (injected)")
        return real_write(self, batch, releases)

    monkeypatch.setattr(Ledger, "write", flaky)
    client = _client(Honest(out=lambda cap: cap))
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=LONG, max_tokens=100, ledger_tenant="acme")  # type: ignore[arg-type,call-arg]
    assert llmledger.flush(20)
    assert llmledger.stats().write_errors == 1
    (status,) = llmledger.remaining(tenant="acme")
    assert status.reserved == 0 and status.spent > 0
    assert llmledger.reconcile() == []


def test_rolling_window_counts_a_full_span(ledger_path: Path) -> None:
    """A rolling window counted 59-60 s of a minute: use 59.5 s old rolled out too early."""
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    with time_machine.travel(datetime(2026, 3, 1, 12, 0, 0, 600_000, tzinfo=timezone.utc), tick=False):
        llmledger.set_limit(requests=3, per="rolling:1m", tenant="acme")
        for _ in range(3):
            llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1, tenant="acme")
        llmledger.flush()
    later = datetime(2026, 3, 1, 12, 1, 0, 100_000, tzinfo=timezone.utc)  # 59.5 s later: still in the minute
    with time_machine.travel(later, tick=False), pytest.raises(llmledger.LimitExceeded):
        llmledger.check(model="gpt-4o", tenant="acme")


# -- what multiplies cost: a property over request shapes ------------------------------------------

MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-5-mini", "gpt-4.1")
shapes = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "turns": st.integers(1, 6),
        "max_tokens": st.one_of(st.none(), st.integers(1, 4000)),
        "n": st.one_of(st.none(), st.integers(1, 8)),
        "service_tier": st.one_of(st.none(), st.sampled_from(["auto", "default", "flex", "priority"])),
        "tools": st.booleans(),
        "cap_key": st.sampled_from(["max_tokens", "max_completion_tokens"]),
    }
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up an order.",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string", "description": "Order"}},
            },
        },
    }
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=shapes)
def test_worst_case_covers_every_request_shape(ledger_path: Path, shape: dict[str, Any]) -> None:
    """For every shape: the strict reservation >= the dearest bill the provider may send for it."""
    runtime = _rt._runtime or llmledger.init(ledger=str(ledger_path))
    limit = (
        llmledger.set_limit(usd=1000, per="day", tenant="prop")
        if not llmledger.limits()
        else llmledger.limits()[0]
    )
    body: dict[str, Any] = {"model": shape["model"], "messages": [LONG[0]] + [LONG[1]] * shape["turns"]}
    if shape["max_tokens"] is not None:
        body[shape["cap_key"]] = shape["max_tokens"]
    for key in ("n", "service_tier"):
        if shape[key] is not None:
            body[key] = shape[key]
    if shape["tools"]:
        body["tools"] = TOOLS
    enforcer = runtime.enforcer
    cap = shape["max_tokens"] or runtime.config.default_output_cap
    reserved = enforcer.worst_case(limit, "openai", shape["model"], None, None, body, cap)
    tier = {"auto": "priority", "priority": "priority", "flex": "flex"}.get(shape["service_tier"] or "")
    usage = {"input_tokens": openai_prompt_tokens(body), "output_tokens": cap * (shape["n"] or 1)}
    dearest = _PRICER.price("openai", shape["model"], usage, datetime.now(timezone.utc), tier).cost
    assert dearest is not None
    assert reserved >= dearest
