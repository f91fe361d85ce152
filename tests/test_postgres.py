"""The same ledger on a real PostgreSQL server (started by the test suite, see tests/pg.py).

Money is NUMERIC and summed exactly; writes are idempotent; limits refuse before the call; several
processes share one strict limit without overshoot. No SQLite stands in and no database is mocked.
"""

from __future__ import annotations

import multiprocessing
import time
from decimal import Decimal
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from tests.fakes.server import Fake

import llmledger
from llmledger.storage import Ledger
from llmledger.storage.migrate import HEAD, current_revision

pytestmark = pytest.mark.postgres


def test_migrations_reach_head_and_money_is_numeric(pg_url: str) -> None:
    store = Ledger(pg_url)
    assert store.dialect == "postgresql"
    assert current_revision(store.engine) == HEAD
    with store.engine.connect() as conn:
        kind = conn.execute(
            sa.text(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'llmledger_events' AND column_name = 'cost_usd'"
            )
        ).scalar()
    assert kind == "numeric"
    store.close()
    Ledger(pg_url).close()  # opening again is a no-op migration


def test_writes_are_idempotent_and_sums_exact(pg_url: str) -> None:
    llmledger.init(ledger=pg_url, flush_interval=0.01)
    for cost in ["0.1", "0.2"] + ["0.000000000000000001"] * 100:
        llmledger.track(provider="acme", model="m", input_tokens=1, cost_usd=Decimal(cost), tenant="t1")
    event = llmledger.track(provider="acme", model="m", input_tokens=1, cost_usd=Decimal(0), tenant="t2")
    llmledger.flush()
    store = Ledger(pg_url)
    store.write([event, event])
    assert store.count() == 103
    store.close()
    assert llmledger.spend(tenant="t1") == Decimal("0.300000000000000100")
    rows = llmledger.usage("tenant")
    assert {(r.group["tenant"], r.requests) for r in rows} == {("t1", 102), ("t2", 1)}
    assert rows[0].cost_usd == Decimal("0.300000000000000100")


def test_hard_limit_refuses_before_the_call(pg_url: str, fake: Fake) -> None:
    llmledger.init(ledger=pg_url, flush_interval=0.01)
    fake.usage = {"prompt_tokens": 5, "completion_tokens": 1000, "total_tokens": 1005}
    client = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    llmledger.set_limit(usd="0.025", per="day", tenant="acme")
    prompt = [{"role": "user", "content": "hello world, please"}]
    outcomes = []
    for _ in range(4):
        try:
            client.chat.completions.create(
                model="gpt-4o",
                messages=prompt,  # type: ignore[arg-type]
                max_tokens=1000,
                ledger_tenant="acme",  # type: ignore[call-arg]
            )
            outcomes.append("ok")
        except llmledger.LimitExceeded:
            outcomes.append("refused")
    assert outcomes == ["ok", "ok", "refused", "refused"]
    assert len(fake.seen) == 2
    llmledger.flush()
    assert llmledger.spend(tenant="acme") == Decimal("0.0200250")
    assert llmledger.reconcile() == []


def _spend_in_process(url: str, attempts: int, queue: Any) -> None:
    # What is tested is exactness, not the fault policy: with "open" (the default) a decision that
    # waits past limit_timeout (0.5 s) for the lock is sent unchecked, which a loaded 2-core machine
    # provokes (seen in CI: "write lock stayed held for 516 ms", $0.1101 spent of $0.1). A decision
    # here may wait up to 30 s, and one that still cannot be made is refused, never sent unchecked.
    llmledger.init(ledger=url, flush_interval=0.01, limit_timeout=30.0, on_ledger_fault="closed")
    admitted = 0
    for _ in range(attempts):
        try:
            with llmledger.guard(
                tenant="acme", provider="openai", model="gpt-4o", input_tokens=5, max_output_tokens=1000
            ):
                llmledger.track(
                    provider="openai", model="gpt-4o", input_tokens=5, output_tokens=1000, tenant="acme"
                )
            admitted += 1
        except llmledger.LimitExceeded:
            pass
    llmledger.shutdown()
    queue.put(admitted)


def test_processes_share_one_strict_limit_without_overshoot(pg_url: str) -> None:
    llmledger.init(ledger=pg_url, flush_interval=0.01)
    llmledger.set_limit(usd="0.1", per="day", tenant="acme")
    llmledger.shutdown()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_spend_in_process, args=(pg_url, 6, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    admitted = sum(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    llmledger.init(ledger=pg_url)
    spent = llmledger.spend(tenant="acme")
    assert spent <= Decimal("0.1")
    assert admitted == 9  # $0.0100125 a call: 9 fit in $0.1 (10 would be $0.100125)
    assert spent == Decimal("0.0100125") * 9
    assert llmledger.reconcile() == []


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_decision_under_a_held_write_lock_gives_up_after_limit_timeout(
    pg_url: str, fake: Fake, policy: str
) -> None:
    from llmledger.storage.engine import WRITE_LOCK_KEY

    llmledger.init(ledger=pg_url, flush_interval=0.01, limit_timeout=0.3, on_ledger_fault=policy)
    fake.usage = {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}
    client = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    llmledger.set_limit(usd="10", per="day", tenant="acme")
    prompt = [{"role": "user", "content": "hello"}]

    def create() -> Any:
        return client.chat.completions.create(
            model="gpt-4o",
            messages=prompt,  # type: ignore[arg-type]
            max_tokens=10,
            ledger_tenant="acme",  # type: ignore[call-arg]
        )

    create()  # decided normally: the lock is free
    holder = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with holder.connect() as conn, conn.begin():  # another session holds the ledger's write lock
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
        start = time.monotonic()
        if policy == "closed":
            with pytest.raises(llmledger.LimitUndecided):
                create()
        else:
            create()
        waited = time.monotonic() - start
    holder.dispose()
    assert 0.25 <= waited < 3.0, waited  # gave up after ~limit_timeout (before: waited for the lock)
    assert len(fake.seen) == (2 if policy == "open" else 1)
    assert llmledger.stats().calls_unchecked == 1
    llmledger.flush()
    assert len(llmledger.events()) == len(fake.seen)  # the unchecked call is metered all the same


def test_held_until_reads_the_stored_reservation_on_postgresql_too(pg_url: str, tmp_path: Any) -> None:
    # `Engine.held_until` reads through the driver's own cursor (its parameter marks differ)
    from datetime import datetime, timezone

    from llmledger.engine import Engine
    from llmledger.limit.shape import Shape

    for url in (pg_url, f"sqlite:///{tmp_path / 'held.db'}"):
        engine = Engine(url)
        engine.set_limit(usd=100, per="day", tenant="acme")
        got = engine.reserve({"tenant": "acme"}, provider="openai", model="gpt-4o", shape=Shape(10, 10))
        assert got.id is not None and got.expires_at is not None
        held = engine.held_until(got.id)
        assert held is not None and abs((held - got.expires_at).total_seconds()) < 1e-3
        assert held > datetime.now(timezone.utc)
        assert engine.held_until("no-such-reservation") is None
        engine.release(got.id)
        assert engine.held_until(got.id) is None
        engine.close()
