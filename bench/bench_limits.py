"""Spend-limit figures: check+reserve+commit latency, and overshoot of strict vs estimate enforcement.

1. Latency on the embedded SQLite ledger: one `reserve` (check every matching limit and hold the
   worst case, one write transaction) and one `commit` (the event insert with its counter update
   and the reservation's release, one transaction, unbatched: the worst case), measured by 1 process
   alone and by each of 4 processes hammering the same ledger at once.
2. Overshoot: the same workload — calls whose real output is 50-1000 tokens of a 1000-token cap,
   against a $1 hard limit — run by 32 threads and by 4 processes, in `strict` and `estimate` mode.

    python bench/bench_limits.py
"""

from __future__ import annotations

import json
import multiprocessing
import random
import statistics
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import openai

import llmledger
from llmledger.limit.model import scope_of_call

MESSAGES = [{"role": "user", "content": "Summarise this ticket for the support agent, briefly."}]


def _handler(seed: int) -> Any:
    rng = random.Random(seed)
    lock = threading.Lock()

    def handle(request: httpx2.Request) -> httpx2.Response:
        with lock:
            out = rng.randint(50, 1000)
        body = {
            "id": "chatcmpl-b",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": out, "total_tokens": 12 + out},
        }
        return httpx2.Response(
            200, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )

    return handle


# -- 1. latency ------------------------------------------------------------------------------------


def _latency_worker(ledger: str, n: int, start: Any, out: Any) -> None:
    runtime = llmledger.init(ledger=ledger, flush_interval=3600)
    enforcer = runtime.enforcer
    enforcer.limits(fresh=True)
    scope = scope_of_call({"tenant": "acme"}, "gpt-4o", "openai", {})
    from datetime import datetime, timezone

    from llmledger.events.event import UsageEvent
    from llmledger.events.ids import uuid7

    reserve_us, commit_us = [], []
    start.wait()
    for _ in range(n):
        t0 = time.perf_counter()
        rid, _ = enforcer.admit(
            scope, provider="openai", model="gpt-4o", feature=None, input_tokens=12, max_output_tokens=100
        )
        t1 = time.perf_counter()
        event = UsageEvent(
            event_id=uuid7(),
            timestamp=datetime.now(timezone.utc),
            provider="openai",
            model="gpt-4o",
            input_tokens=12,
            output_tokens=80,
            cost_usd=Decimal("0.00083"),
            cost_source="catalog",
            tenant="acme",
        )
        runtime.ledger.write([event], [rid] if rid else [])
        t2 = time.perf_counter()
        reserve_us.append((t1 - t0) * 1e6)
        commit_us.append((t2 - t1) * 1e6)
    out.put((statistics.median(reserve_us), statistics.median(commit_us)))
    llmledger.shutdown()


def latency(processes: int, n: int = 400) -> tuple[float, float]:
    path = str(Path(tempfile.mkdtemp(prefix="llmledger-bench-")) / "limits.db")
    llmledger.init(ledger=path)
    llmledger.set_limit(usd=10**6, per="month", tenant="acme")
    llmledger.set_limit(usd=10**6, per="day", user="*")
    llmledger.shutdown()
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_latency_worker, args=(path, n, start, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let every worker import and open the ledger
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


# -- 2. overshoot ----------------------------------------------------------------------------------


def _calls(ledger: str, enforcement: str, attempts: int, seed: int, threads: int) -> tuple[int, int]:
    llmledger.init(ledger=ledger, flush_interval=0.01)
    client = openai.OpenAI(
        api_key="k", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(_handler(seed)))
    )
    ok = blocked = 0
    lock = threading.Lock()

    def run() -> None:
        nonlocal ok, blocked
        for _ in range(attempts):
            try:
                client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, max_tokens=1000, ledger_tenant="acme"
                )  # type: ignore[arg-type,call-overload]
                with lock:
                    ok += 1
            except llmledger.LimitExceeded:
                with lock:
                    blocked += 1

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    llmledger.shutdown()
    return ok, blocked


def _calls_process(ledger: str, enforcement: str, attempts: int, seed: int, out: Any) -> None:
    out.put(_calls(ledger, enforcement, attempts, seed, 1))


def overshoot(enforcement: str, mode: str) -> tuple[Decimal, int, int]:
    path = str(Path(tempfile.mkdtemp(prefix="llmledger-bench-")) / "overshoot.db")
    llmledger.init(ledger=path)
    llmledger.set_limit(usd=1, per="day", tenant="acme", enforcement=enforcement)
    llmledger.shutdown()
    if mode == "threads":
        ok, blocked = _calls(path, enforcement, 12, 7, 32)
    else:
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_calls_process, args=(path, enforcement, 90, i, out)) for i in range(4)]
        for p in procs:
            p.start()
        results = [out.get(timeout=900) for _ in procs]
        for p in procs:
            p.join()
        ok, blocked = sum(r[0] for r in results), sum(r[1] for r in results)
    llmledger.init(ledger=path)
    spent = llmledger.spend(tenant="acme")
    llmledger.shutdown()
    return spent, ok, blocked


def main() -> None:
    print("check+reserve and commit latency on SQLite (median µs)")
    for processes in (1, 4):
        reserve, commit = latency(processes)
        total = reserve + commit
        print(f"  {processes} process(es): reserve {reserve:8.1f}   commit {commit:8.1f}   sum {total:8.1f}")
    print("\novershoot against a $1 hard limit (real output 50-1000 of 1000 tokens, gpt-4o)")
    print(
        f"  {'enforcement':<10} {'callers':<12} {'spent':>12} {'of limit':>9} {'admitted':>9} {'blocked':>8}"
    )
    for enforcement in ("strict", "estimate"):
        for mode in ("threads", "processes"):
            spent, ok, blocked = overshoot(enforcement, mode)
            who = "32 threads" if mode == "threads" else "4 processes"
            print(f"  {enforcement:<10} {who:<12} ${spent:>11.6f} {spent * 100:>8.1f}% {ok:>9} {blocked:>8}")


if __name__ == "__main__":
    main()
