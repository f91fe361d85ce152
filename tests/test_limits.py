"""Spend limits end to end: the real openai client, a real SQLite ledger, threads and processes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import time_machine
from tests.fakes.server import Fake

import llmledger
from llmledger.events import UsageEvent
from llmledger.tokens import prompt_tokens_bound

PROMPT = [{"role": "user", "content": "hello world, please"}]
# The fake answers 5 prompt tokens and max_tokens of output, so a call costs exactly
# 5 x $2.50/M + 1000 x $10/M = $0.0100125 on gpt-4o; strict bounds the input with the tokenizer.
USAGE = {"prompt_tokens": 5, "completion_tokens": 1000, "total_tokens": 1005}
COST = Decimal("0.0100125")
BOUND = prompt_tokens_bound({"messages": PROMPT, "model": "gpt-4o", "max_tokens": 1000}, "gpt-4o")
WORST = Decimal("2.5") * BOUND / 10**6 + Decimal("0.01")  # strict: the real tokenizer bounds the input


def chat_client(fake: Fake) -> openai.OpenAI:
    fake.usage = USAGE
    return openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)


def call(client: openai.OpenAI, **labels: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o", messages=PROMPT, max_tokens=1000, **labels)  # type: ignore[arg-type,call-overload]


@pytest.fixture
def ledger_on(ledger_path: Path) -> Path:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    return ledger_path


def test_hard_limit_blocks_before_the_request_leaves(ledger_on: Path, fake: Fake) -> None:
    limit = llmledger.set_limit(usd="0.025", per="day", tenant="acme")
    client = chat_client(fake)
    call(client, ledger_tenant="acme")
    call(client, ledger_tenant="acme")
    with pytest.raises(llmledger.LimitExceeded) as info:
        call(client, ledger_tenant="acme")
    assert len(fake.seen) == 2  # the third request never left
    assert llmledger.stats().calls_refused == 1
    err = info.value
    assert isinstance(err, llmledger.LimitExceededException)
    assert (err.limit_id, err.scope, err.metric, err.limit) == (
        limit.id,
        "tenant=acme",
        "usd",
        Decimal("0.025"),
    )
    assert err.spent + err.reserved == 2 * COST or err.reserved > 0  # settled or still held
    assert err.requested == WORST and err.retry_after is not None and err.resets_at is not None
    assert "tenant=acme" in str(err) and "resets at" in str(err) and "$0.025" in str(err)
    # what "reserved" holds is said (newcomer report 2026-12-02 item 13: "$0 spent" after paid calls)
    assert f"${err.reserved} held by calls in flight or just finished (not yet written)" in str(err)
    call(client, ledger_tenant="globex")  # other tenants are not limited
    llmledger.flush()
    assert llmledger.spend(tenant="acme") == 2 * COST
    assert llmledger.reconcile() == []


def test_each_user_and_the_tightest_limit_decides(ledger_on: Path, fake: Fake) -> None:
    llmledger.set_limit(usd=1, per="month", tenant="acme")
    per_user = llmledger.set_limit(usd="0.015", per="day", user="*", tags={"plan": "free"})
    client = chat_client(fake)
    with llmledger.attribute(tenant="acme", tags={"plan": "free"}):
        call(client, ledger_user="u1")
        with pytest.raises(llmledger.LimitExceeded) as info:
            call(client, ledger_user="u1")
        assert info.value.limit_id == per_user.id and info.value.subject == "user=u1"
        call(client, ledger_user="u2")
    with llmledger.attribute(tenant="acme", tags={"plan": "pro"}):
        call(client, ledger_user="u1")  # the free-plan limit does not apply
    statuses = llmledger.remaining(tenant="acme", user="u1", tags={"plan": "free"})
    assert len(statuses) == 2 and statuses[0].limit.id == per_user.id  # tightest first


def test_window_resets_on_the_next_day(ledger_on: Path, fake: Fake) -> None:
    client = chat_client(fake)
    with time_machine.travel("2026-06-30 23:58:00+00:00", tick=True):
        llmledger.set_limit(usd="0.015", per="month", tenant="acme")
        call(client, ledger_tenant="acme")
        with pytest.raises(llmledger.LimitExceeded) as info:
            call(client, ledger_tenant="acme")
        assert (
            info.value.resets_at is not None
            and info.value.resets_at.isoformat() == "2026-07-01T00:00:00+00:00"
        )
        llmledger.flush()
    with time_machine.travel("2026-07-01 00:00:05+00:00", tick=True):
        call(client, ledger_tenant="acme")  # a new month
        llmledger.flush()
        assert llmledger.reconcile() == []


def test_tokens_and_requests_limits(ledger_on: Path, fake: Fake) -> None:
    llmledger.set_limit(requests=2, per="rolling:1h", feature="search")
    llmledger.set_limit(tokens=2_200, per="day", feature="chat")
    client = chat_client(fake)
    call(client, ledger_feature="search")
    call(client, ledger_feature="search")
    with pytest.raises(llmledger.LimitExceeded, match="requests"):
        call(client, ledger_feature="search")
    call(client, ledger_feature="chat")  # 19 + 1000 reserved, 1005 used
    call(client, ledger_feature="chat")
    with pytest.raises(llmledger.LimitExceeded, match="tokens"):
        call(client, ledger_feature="chat")


def test_soft_limit_alerts_once_per_threshold_and_never_blocks(ledger_path: Path, fake: Fake) -> None:
    alerts: list[Any] = []
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01, on_threshold=alerts.append)
    llmledger.set_limit(usd="0.04", per="day", tenant="acme", mode="soft", thresholds=(0.5, 1.0))
    client = chat_client(fake)
    for _ in range(6):
        call(client, ledger_tenant="acme")
        llmledger.flush()
    assert [a.threshold for a in alerts] == [Decimal("0.5"), Decimal("1.0")]
    assert len(fake.seen) == 6


def test_lifetime_credit_and_top_up(ledger_on: Path, fake: Fake) -> None:
    credit = llmledger.set_limit(usd="0.021", per="lifetime", tenant="t1")
    client = chat_client(fake)
    call(client, ledger_tenant="t1")
    call(client, ledger_tenant="t1")
    with pytest.raises(llmledger.LimitExceeded, match="does not reset"):
        call(client, ledger_tenant="t1")
    assert llmledger.top_up(credit.id, "0.02") == Decimal("0.02")
    call(client, ledger_tenant="t1")
    with pytest.raises(llmledger.LimitDefinitionError, match="only lifetime"):
        llmledger.top_up(llmledger.set_limit(usd=1, per="day", tenant="t1").id, 1)
    with pytest.raises(llmledger.LimitDefinitionError, match="no limit"):
        llmledger.top_up("lim_nope", 1)


def test_reservation_released_on_provider_error_and_on_cancelled_stream(ledger_on: Path, fake: Fake) -> None:
    llmledger.set_limit(usd="0.015", per="day", tenant="acme")
    client = chat_client(fake)
    fake.fail = (500, {"error": {"message": "boom", "type": "server_error"}})
    with pytest.raises(openai.InternalServerError):
        call(client, ledger_tenant="acme")
    fake.fail = None
    llmledger.flush()
    [status] = llmledger.remaining(tenant="acme")
    assert (status.spent, status.reserved) == (0, 0)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=PROMPT, max_tokens=1000, stream=True, ledger_tenant="acme"
    )  # type: ignore[arg-type,call-overload]
    with stream:
        next(iter(stream))
    llmledger.flush()
    [status] = llmledger.remaining(tenant="acme")
    assert status.reserved == 0 and 0 < status.spent < WORST  # settled at its estimated cost
    assert llmledger.reconcile() == []


def test_guard_and_check_for_manual_calls(ledger_on: Path) -> None:
    llmledger.set_limit(usd="0.015", per="day", tenant="acme")
    llmledger.check(model="gpt-4o", max_output_tokens=1000, tenant="acme")
    with llmledger.guard(model="gpt-4o", max_output_tokens=1000, input_tokens=5, tenant="acme") as rid:
        assert rid is not None
        llmledger.track(provider="openai", model="gpt-4o", input_tokens=5, output_tokens=1000, tenant="acme")
    llmledger.flush()
    with pytest.raises(llmledger.LimitExceeded):
        llmledger.check(model="gpt-4o", max_output_tokens=1000, tenant="acme")
    with (
        pytest.raises(llmledger.LimitExceeded),
        llmledger.guard(model="gpt-4o", max_output_tokens=1000, tenant="acme"),
    ):
        pytest.fail("the block must not run")
    [status] = llmledger.remaining(tenant="acme")
    assert (status.spent, status.reserved) == (COST, 0)
    with llmledger.guard(model="gpt-4o", max_output_tokens=10, tenant="acme"):
        pass  # no track(): released at the end
    assert llmledger.remaining(tenant="acme")[0].reserved == 0


def test_limits_list_replace_and_delete(ledger_on: Path) -> None:
    a = llmledger.set_limit(usd=5, per="day", tenant="acme")
    b = llmledger.set_limit(usd=7, per="day", tenant="acme")  # same scope, metric, window: replaces
    assert a.id == b.id and [x.amount for x in llmledger.limits()] == [Decimal(7)]
    assert llmledger.delete_limit(a.id) is True and llmledger.limits() == []
    assert llmledger.delete_limit(a.id) is False


def _hammer_thread(client: openai.OpenAI, outcomes: list[str], barrier: threading.Barrier) -> None:
    barrier.wait()
    for _ in range(6):
        try:
            call(client, ledger_tenant="acme")
            outcomes.append("ok")
        except llmledger.LimitExceeded:
            outcomes.append("blocked")


def test_32_threads_never_overspend(ledger_on: Path, fake: Fake) -> None:
    llmledger.set_limit(usd=1, per="day", tenant="acme")
    client = chat_client(fake)
    outcomes: list[str] = []
    barrier = threading.Barrier(32)
    threads = [threading.Thread(target=_hammer_thread, args=(client, outcomes, barrier)) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    llmledger.flush()
    spent = llmledger.spend(tenant="acme")
    assert spent <= Decimal(1)
    assert outcomes.count("ok") == len(fake.seen) == spent / COST  # every blocked call sent nothing
    assert outcomes.count("blocked") > 0 and outcomes.count("ok") >= 90
    assert llmledger.reconcile() == []


def _hammer_process(ledger: str, attempts: int, queue: Any) -> None:
    llmledger.init(ledger=ledger, flush_interval=0.01)
    fake = Fake()
    client = chat_client(fake)
    ok = blocked = 0
    for _ in range(attempts):
        try:
            call(client, ledger_tenant="acme")
            ok += 1
        except llmledger.LimitExceeded:
            blocked += 1
    llmledger.shutdown()
    queue.put((ok, blocked, len(fake.seen)))


@pytest.mark.slow
def test_4_processes_never_overspend(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path))
    llmledger.set_limit(usd=1, per="day", tenant="acme")
    llmledger.shutdown()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer_process, args=(str(ledger_path), 40, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(60)
    llmledger.init(ledger=str(ledger_path))
    spent = llmledger.spend(tenant="acme")
    ok = sum(r[0] for r in results)
    assert spent <= Decimal(1) and spent == ok * COST
    assert sum(r[2] for r in results) == ok  # blocked calls never reached the provider
    assert sum(r[1] for r in results) > 0
    assert llmledger.reconcile() == []


def _die_holding_a_reservation(ledger: str, journal: bool) -> None:
    llmledger.init(ledger=ledger, reservation_ttl=60.0, journal=journal)
    with llmledger.guard(model="gpt-4o", max_output_tokens=1000, input_tokens=5, tenant="acme"):
        os._exit(0)  # killed mid-call: the reservation is never settled


@pytest.mark.slow
@pytest.mark.parametrize("journal", [False, True])
def test_reservation_of_a_killed_process_expires_or_is_released(ledger_path: Path, journal: bool) -> None:
    # Without the journal, only the TTL frees a dead process's reservation; with it, the replay
    # of the dead process's journal (on the next ledger open) releases it at once. The TTL is
    # driven by the clock the decision reads (time-machine), not by sleeping under load.
    llmledger.init(ledger=str(ledger_path))
    llmledger.set_limit(usd="0.015", per="day", tenant="acme")
    llmledger.shutdown()
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_die_holding_a_reservation, args=(str(ledger_path), journal))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    llmledger.init(ledger=str(ledger_path))  # opening the ledger replays dead processes' journals
    if journal:
        assert llmledger.remaining(tenant="acme")[0].reserved == 0
        llmledger.check(model="gpt-4o", max_output_tokens=1000, input_tokens=5, tenant="acme")
        return
    assert llmledger.remaining(tenant="acme")[0].reserved > 0
    with pytest.raises(llmledger.LimitExceeded):
        llmledger.check(model="gpt-4o", max_output_tokens=1000, input_tokens=5, tenant="acme")
    with sqlite3.connect(ledger_path) as db:
        [(expires_us,)] = db.execute("SELECT DISTINCT expires_us FROM llmledger_reservations").fetchall()
    with time_machine.travel(expires_us / 1e6 - 1, tick=False):  # 1 s before the TTL runs out
        assert llmledger.remaining(tenant="acme")[0].reserved > 0
    with time_machine.travel(expires_us / 1e6 + 1, tick=False):  # 1 s after: expired
        assert llmledger.remaining(tenant="acme")[0].reserved == 0
        llmledger.check(model="gpt-4o", max_output_tokens=1000, input_tokens=5, tenant="acme")


def test_events_of_other_scopes_do_not_count(ledger_on: Path) -> None:
    llmledger.set_limit(usd="0.5", per="day", tenant="acme", model="gpt-4o")
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=10**6, tenant="acme")
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=10**5, tenant="acme")
    llmledger.flush()
    [status] = llmledger.remaining(tenant="acme", model="gpt-4o")
    assert status.spent == Decimal("0.25")
    events: list[UsageEvent] = llmledger.events()
    assert len(events) == 2 and llmledger.reconcile() == []


def test_throttle_raises_rate_limited_with_retry_after(ledger_on: Path, fake: Fake) -> None:
    llmledger.set_limit(requests=2, per="rolling:1m", user="*", mode="throttle")
    client = chat_client(fake)
    call(client, ledger_user="u1")
    call(client, ledger_user="u1")
    with pytest.raises(llmledger.RateLimited) as info:
        call(client, ledger_user="u1")
    assert isinstance(info.value, llmledger.LimitExceeded)
    assert info.value.retry_after is not None and 0 <= info.value.retry_after <= 60
    call(client, ledger_user="u2")  # each user has their own rate
    assert len(fake.seen) == 3


def test_throttle_waits_for_room(ledger_on: Path, fake: Fake) -> None:
    from datetime import timedelta

    llmledger.set_limit(requests=1, per="rolling:1m", tenant="acme", mode="throttle", max_wait=3)
    client = chat_client(fake)
    with time_machine.travel("2026-05-05 10:00:00.2+00:00", tick=True) as traveller:
        call(client, ledger_tenant="acme")  # counts in the 10:00:00 slot until 10:01:00
        traveller.shift(timedelta(seconds=59.5))
        started = time.monotonic()
        call(client, ledger_tenant="acme")  # waits ~0.3 s for that slot to roll out
        waited = time.monotonic() - started
    assert 0.05 < waited < 3 and len(fake.seen) == 2
    with pytest.raises(llmledger.LimitDefinitionError, match="max_wait only applies"):
        llmledger.set_limit(requests=1, per="day", tenant="acme", max_wait=3)


def test_soft_limit_downgrades_the_model(ledger_on: Path, fake: Fake) -> None:
    llmledger.set_limit(
        usd="0.015", per="day", tenant="acme", mode="soft", downgrade={"gpt-4o": "gpt-4o-mini"}
    )
    client = chat_client(fake)
    call(client, ledger_tenant="acme")
    call(client, ledger_tenant="acme")  # would pass $0.015: sent as gpt-4o-mini instead
    assert [s.body["model"] for s in fake.seen] == ["gpt-4o", "gpt-4o-mini"]
    llmledger.flush()
    downgraded = llmledger.events(tenant="acme")[0]
    assert (downgraded.requested_model, downgraded.model) == ("gpt-4o", "gpt-4o-mini-2024-07-18")
    with pytest.raises(llmledger.LimitDefinitionError, match="downgrade only applies"):
        llmledger.set_limit(usd=1, per="day", tenant="acme", downgrade={"gpt-4o": "gpt-4o-mini"})


def test_limits_from_a_toml_file(ledger_on: Path, tmp_path: Path) -> None:
    good = tmp_path / "limits.toml"
    good.write_text(
        """
[[limits]]
usd = 50
per = "month"
tenant = "acme"

[[limits]]
usd = "1.50"
per = "day"
user = "*"
tags = { plan = "free" }
mode = "soft"
downgrade = { "gpt-4o" = "gpt-4o-mini" }
""",
        encoding="utf-8",
    )
    loaded = llmledger.load_limits(good)
    assert [(x.amount, x.mode) for x in loaded] == [(Decimal(50), "hard"), (Decimal("1.50"), "soft")]
    assert len(llmledger.limits()) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[limits]]\nusd = 5\nper = "fortnight"\n\n[[limits]]\nusd = 1\ncustomer = "x"\n', encoding="utf-8"
    )
    with pytest.raises(
        llmledger.LimitDefinitionError, match=r"nothing applied; entry 1: .*fortnight.*entry 2: .*customer"
    ):
        llmledger.load_limits(bad)
    assert len(llmledger.limits()) == 2  # all or nothing
    (tmp_path / "broken.toml").write_text("[[limits]\n", encoding="utf-8")
    with pytest.raises(llmledger.LimitDefinitionError, match="not valid TOML"):
        llmledger.load_limits(tmp_path / "broken.toml")


def test_ledger_failure_during_a_check_fails_open_and_is_counted(
    ledger_on: Path, fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.setenv("LLMLEDGER_SWALLOW_INTERNAL_ERRORS", "1")  # production behaviour
    llmledger.set_limit(usd=1, per="day", tenant="acme")
    with sqlite3.connect(ledger_on) as db:  # the limit tables break under the running app
        db.execute("ALTER TABLE llmledger_reservations RENAME TO broken")
    reply = call(chat_client(fake), ledger_tenant="acme")
    assert reply.id == "chatcmpl-AbC123"  # the app's call went through
    # a ledger fault is not an internal error: it is the `on_ledger_fault="open"` policy, counted
    stats = llmledger.stats()
    assert stats.calls_unchecked == 1
    assert stats.last_limit_fault is not None
    assert "llmledger_reservations" in stats.last_limit_fault
    assert "x-llmledger-attribution" not in fake.seen[-1].headers
