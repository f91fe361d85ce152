"""Attribution: nesting, decorators, isolation per thread and asyncio task, init() defaults."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import llmledger
from llmledger import InvalidUsageError, attribute, current_attribution


def test_nesting_inner_wins_and_tags_merge() -> None:
    with attribute(tenant="acme", feature="chat", tags={"plan": "pro", "region": "eu"}):
        with attribute(feature="summarize", user="u1", tags={"plan": "trial"}) as inner:
            assert (inner.tenant, inner.feature, inner.user) == ("acme", "summarize", "u1")
            assert inner.tags == {"plan": "trial", "region": "eu"}
        assert current_attribution().feature == "chat"
        assert current_attribution().user is None
    assert current_attribution().tenant is None


def test_decorator_on_sync_and_async_functions() -> None:
    @attribute(tenant="t-sync")
    def sync() -> str | None:
        return current_attribution().tenant

    @attribute(tenant="t-async")
    async def coro() -> str | None:
        await asyncio.sleep(0)
        return current_attribution().tenant

    assert sync() == "t-sync"
    assert asyncio.run(coro()) == "t-async"
    assert current_attribution().tenant is None


def test_isolated_between_threads() -> None:
    barrier = threading.Barrier(8)

    def worker(i: int) -> str | None:
        with attribute(tenant=f"t{i}"):
            barrier.wait()  # every thread is inside its block at once
            return current_attribution().tenant

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(worker, range(8))) == [f"t{i}" for i in range(8)]


def test_isolated_between_asyncio_tasks() -> None:
    async def task(i: int) -> str | None:
        with attribute(tenant=f"t{i}"):
            await asyncio.sleep(0.01 * (8 - i))  # interleave
            return current_attribution().tenant

    async def main() -> list[str | None]:
        return await asyncio.gather(*(task(i) for i in range(8)))

    assert asyncio.run(main()) == [f"t{i}" for i in range(8)]


def test_set_attribution_for_middleware() -> None:
    def handler() -> str | None:
        token = llmledger.set_attribution(tenant="from-middleware", tags={"route": "/chat"})
        try:
            return current_attribution().tenant
        finally:
            llmledger.reset_attribution(token)

    assert handler() == "from-middleware"
    assert current_attribution().tenant is None


def test_events_carry_attribution_with_init_defaults(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), org="globex", tags={"env": "prod"})
    with attribute(tenant="acme", tags={"plan": "pro"}):
        event = llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, feature="chat")
    assert (event.org, event.tenant, event.feature) == ("globex", "acme", "chat")
    assert event.tags == {"env": "prod", "plan": "pro"}


def test_events_from_threads_are_attributed_to_their_own_tenant(ledger: object) -> None:
    def worker(i: int) -> None:
        with attribute(tenant=f"t{i % 4}"):
            for _ in range(50):
                llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=100, output_tokens=10)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = {row.group["tenant"]: row.requests for row in llmledger.usage("tenant")}
    assert rows == {"t0": 100, "t1": 100, "t2": 100, "t3": 100}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant": ""},
        {"tenant": 5},
        {"user": "x" * 300},
        {"tags": {"": "a"}},
        {"tags": {"a": 1}},
        {"tags": ["a"]},
    ],
)
def test_bad_attribution_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidUsageError):
        attribute(**kwargs)  # type: ignore[arg-type]
