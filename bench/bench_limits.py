"""Spend-limit figures: check+reserve+commit latency, and overshoot of strict vs estimate enforcement.

1. Latency on the embedded SQLite ledger: one `reserve` (check two matching limits and hold the
   worst case, one write transaction) and one `settle` (the finished call's reservation set to its
   actual cost), p50 and p99, by 1 process alone and by 4 processes hammering the same ledger at
   once — side by side with the same statements on a bare `sqlite3` connection (the floor).
2. Overshoot: the same workload — calls whose real output is 50-1000 tokens of a 1000-token cap,
   against a $1 hard limit — run by 32 threads and by 4 processes, in `strict` and `estimate` mode.

    python bench/bench_limits.py [latency] [overshoot]
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

FLOOR_RESERVE = (
    "SELECT (SELECT dsum(used) FROM llmledger_counters WHERE limit_id = ? AND subject = ?"
    " AND bucket BETWEEN ? AND ?), (SELECT dsum(amount) FROM llmledger_reservations WHERE limit_id = ?"
    " AND subject = ? AND expires_us >= ?), (SELECT granted FROM llmledger_credits WHERE limit_id = ?"
    " AND subject = ?)"
)


def _floor_worker(path: str, n: int, start: Any, out: Any) -> None:
    """The same statements as one reserve (2 limits) and one settle, on a bare sqlite3 connection."""
    import sqlite3

    from llmledger.storage.engine import register_sqlite_functions

    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")  # as llmledger's connections (WAL, no fsync per commit)
    register_sqlite_functions(conn)
    reserve_us, settle_us = [], []
    start.wait()
    for i in range(n):
        rid = f"floor-{i}-{time.time_ns()}"
        now = time.time_ns() // 1000
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM llmledger_reservations WHERE expires_us < ?", (now,))
        for lid, subject in (("floor-a", "tenant=acme"), ("floor-b", "user=u1")):
            conn.execute(FLOOR_RESERVE, (lid, subject, 0, now, lid, subject, now, lid, subject)).fetchall()
            conn.execute(
                "INSERT INTO llmledger_reservations VALUES (?, ?, ?, ?, ?, ?)",
                (rid, lid, subject, 0, "0.0013", now + 900_000_000),
            )
        conn.execute("COMMIT")
        t1 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for lid in ("floor-a", "floor-b"):
            conn.execute(
                "UPDATE llmledger_reservations SET amount = ? WHERE reservation_id = ? AND limit_id = ?",
                ("0.0008", rid, lid),
            )
        conn.execute("COMMIT")
        t2 = time.perf_counter()
        conn.execute("DELETE FROM llmledger_reservations WHERE reservation_id = ?", (rid,))
        reserve_us.append((t1 - t0) * 1e6)
        settle_us.append((t2 - t1) * 1e6)
    out.put((reserve_us, settle_us))


def _latency_worker(ledger: str, n: int, start: Any, out: Any) -> None:
    runtime = llmledger.init(ledger=ledger, flush_interval=3600)
    enforcer = runtime.enforcer
    enforcer.limits(fresh=True)
    scope = scope_of_call({"tenant": "acme", "user": "u1"}, "gpt-4o", "openai", {})
    from datetime import datetime, timezone

    from llmledger.events.event import UsageEvent
    from llmledger.events.ids import uuid7

    reserve_us, settle_us = [], []
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
            user="u1",
        )
        settle = getattr(enforcer, "settle", None)
        if settle is not None and rid is not None:  # (absent before issue 8: no settle at call end)
            settle(rid, event)
        t2 = time.perf_counter()
        runtime.ledger.write([event], [rid] if rid else [])
        reserve_us.append((t1 - t0) * 1e6)
        settle_us.append((t2 - t1) * 1e6)
    out.put((reserve_us, settle_us))
    llmledger.shutdown()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(processes: int, worker: Any, n: int = 400) -> dict[str, float]:
    """Reserve (2 limits) and settle latency across `processes` hammering one ledger: p50, p99 (µs)."""
    path = str(Path(tempfile.mkdtemp(prefix="llmledger-bench-")) / "limits.db")
    llmledger.init(ledger=path)
    llmledger.set_limit(usd=10**6, per="month", tenant="acme")
    llmledger.set_limit(usd=10**6, per="day", user="*")
    llmledger.shutdown()
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(path, n, start, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let every worker import and open the ledger
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    reserve = [v for r in results for v in r[0]]
    settle = [v for r in results for v in r[1]]
    return {
        "reserve_p50": statistics.median(reserve),
        "reserve_p99": _pct(reserve, 0.99),
        "settle_p50": statistics.median(settle),
        "settle_p99": _pct(settle, 0.99),
    }


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
    import sys

    parts = sys.argv[1:] or ["latency", "overshoot"]
    if "latency" in parts:
        print_latency()
    if "overshoot" in parts:
        print_overshoot()


def print_latency() -> None:
    print("reserve (2 limits) and settle latency on SQLite, µs: llmledger vs the same SQL on bare sqlite3")
    for processes in (1, 4):
        for name, worker in (("llmledger", _latency_worker), ("sqlite3 floor", _floor_worker)):
            r = latency(processes, worker)
            print(
                f"  {processes} process(es) {name:<14} reserve p50 {r['reserve_p50']:8.1f} "
                f"p99 {r['reserve_p99']:8.1f}   settle p50 {r['settle_p50']:8.1f} p99 {r['settle_p99']:8.1f}"
            )


def print_overshoot() -> None:
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
