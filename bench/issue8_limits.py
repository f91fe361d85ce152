"""Issue 8 parts 3-5, before and after: the figures the issue lists, reproduced with the real openai
client against an in-process fake provider that bills like OpenAI and honours max_tokens, n and the
service tier (tests/fakes/honest.py). Runs against whichever llmledger is importable, so the same
script measures an older commit (`PYTHONPATH=<old checkout>/src`).

    python bench/issue8_limits.py [locked] [strict] [shapes] [alerts]
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import openai

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.fakes.honest import Honest, billed  # noqa: E402
from tests.hammer import SHORT, hammer  # noqa: E402  (the same harness as the overshoot tests)

import llmledger  # noqa: E402

SYSTEM = (
    "You are a support assistant for Acme Cloud. Answer in the customer's language, cite the relevant "
    "documentation section, never reveal internal ticket numbers, and escalate billing disputes over "
    "$500 to a human. Keep answers under 200 words unless the customer asks for detail. "
) * 47
LONG = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Why was I billed twice?"}]


def _db() -> str:
    return str(Path(tempfile.mkdtemp(prefix="issue8-")) / "ledger.db")


# -- part 3: a locked ledger -----------------------------------------------------------------------


def locked() -> None:
    try:  # (the tokenizer's one-time load is not the lock's wait)
        from llmledger.tokens import warm

        warm().join()
    except ImportError:
        pass
    path = _db()
    llmledger.init(ledger=path, flush_interval=0.01)
    llmledger.set_limit(usd=100, per="day", tenant="acme")
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        body = {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        }
        return httpx2.Response(200, json=body)

    client = openai.OpenAI(
        api_key="k", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(handle))
    )
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)
    holder.execute("BEGIN IMMEDIATE")
    times = []
    for _ in range(2):
        t0 = time.monotonic()
        client.chat.completions.create(model="gpt-4o", messages=SHORT, max_tokens=10, ledger_tenant="acme")  # type: ignore[arg-type,call-arg]
        times.append(time.monotonic() - t0)
    leaked = sum(1 for r in seen if "x-llmledger-attribution" in r.headers)
    t0 = time.monotonic()
    try:
        kw: dict[str, Any] = (
            {"flush_timeout": 1.0} if "flush_timeout" in llmledger.events.__code__.co_varnames else {}
        )
        got: Any = len(llmledger.events(tenant="acme", **kw))
    except llmledger.LlmLedgerError as exc:
        got = type(exc).__name__
    read_s = time.monotonic() - t0
    holder.execute("ROLLBACK")
    stats = llmledger.stats()
    print(
        f"locked ledger: call waits {', '.join(f'{t:.2f}' for t in times)} s; header sent on {leaked}/2; "
        f"read during the lock -> {got} after {read_s:.1f} s; unchecked counted: "
        f"{getattr(stats, 'calls_unchecked', 'n/a')}"
    )
    llmledger.shutdown(timeout=5)


# -- part 4: strict limits ---------------------------------------------------------------------------


def _client(honest: Honest) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", http_client=honest.client(), max_retries=0)


def strict_cases() -> None:
    try:
        from llmledger.tokens import warm

        warm().join()
    except ImportError:
        pass
    # $0.004, gpt-5-mini, ~2,450-token prompt, max_tokens=850, 6 sequential calls
    llmledger.init(ledger=_db(), flush_interval=0.01)
    llmledger.set_limit(usd="0.004", per="month", tenant="acme")
    client = _client(Honest(out=lambda cap: cap // 2))
    ok = 0
    for _ in range(6):
        try:
            client.chat.completions.create(
                model="gpt-5-mini", messages=LONG, max_tokens=850, ledger_tenant="acme"
            )  # type: ignore[arg-type,call-arg]
            ok += 1
        except llmledger.LimitExceeded as exc:
            needed = exc.requested
    print(f"$0.004 limit, ~2,450-token prompts: admitted {ok} of 6 (2 fit); strict reservation ${needed}")
    llmledger.shutdown()
    # $0.01, 32 concurrent
    llmledger.init(ledger=_db(), flush_interval=0.01)
    llmledger.set_limit(usd="0.01", per="month", tenant="acme")
    client = _client(Honest(out=lambda cap: cap))
    barrier, got = threading.Barrier(32), []

    def one() -> None:
        barrier.wait()
        try:
            client.chat.completions.create(
                model="gpt-5-mini", messages=LONG, max_tokens=850, ledger_tenant="acme"
            )  # type: ignore[arg-type,call-arg]
            got.append(1)
        except llmledger.LimitExceeded:
            pass

    threads = [threading.Thread(target=one) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"$0.01 limit, 32 concurrent calls: admitted {len(got)} (3-4 fit)")
    llmledger.shutdown()
    # three back-to-back calls, the writer slow
    llmledger.init(ledger=_db(), flush_interval=0.2)
    llmledger.set_limit(usd="0.05", per="day", tenant="acme")
    client = _client(Honest(out=lambda cap: cap // 10))
    results = []
    for _ in range(3):
        try:
            client.chat.completions.create(
                model="gpt-4o", messages=LONG, max_tokens=1000, ledger_tenant="acme"
            )  # type: ignore[arg-type,call-arg]
            results.append("ok")
        except llmledger.LimitExceeded:
            results.append("refused")
    print(f"3 back-to-back calls under $0.05 (worst ~$0.016, actual ~$0.0071 each): {results}")
    llmledger.shutdown()


def _hammer(ledger: str, body: dict[str, Any], threads: int, log: str, seed: int, out: Any) -> None:
    try:
        llmledger.init(ledger=ledger, flush_interval=0.01, on_ledger_fault="closed")
    except TypeError:
        llmledger.init(ledger=ledger, flush_interval=0.01)
    honest = Honest(out=lambda cap: cap, log=log, seed=seed)
    client = _client(honest)
    # every thread calls until, together, they were refused 41 times (the limit is clearly reached)
    hammer(lambda: client.chat.completions.create(ledger_tenant="acme", **body), threads, 41)  # type: ignore[call-overload]
    out.put(honest.served)


def shapes(processes: int = 8, threads: int = 16) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("n=4", {"model": "gpt-4o", "messages": SHORT, "max_tokens": 500, "n": 4}, "day"),
        (
            "service_tier=priority",
            {"model": "gpt-4o", "messages": SHORT, "max_tokens": 500, "service_tier": "priority"},
            "day",
        ),
        (
            "service_tier=auto",
            {"model": "gpt-4o", "messages": SHORT, "max_tokens": 500, "service_tier": "auto"},
            "day",
        ),
        ("rolling:1m", {"model": "gpt-4o", "messages": SHORT, "max_tokens": 500}, "rolling:1m"),
    ]
    ctx = multiprocessing.get_context("spawn")
    for name, body, per in cases:
        path, log = _db(), Path(tempfile.mkdtemp(prefix="issue8-log-")) / "served.log"
        llmledger.init(ledger=path)
        llmledger.set_limit(usd=1, per=per, tenant="acme")
        llmledger.shutdown()
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_hammer, args=(path, body, threads, str(log), i, out))
            for i in range(processes)
        ]
        for p in procs:
            p.start()
        served = sum(out.get(timeout=900) for _ in procs)
        for p in procs:
            p.join()
        cost = billed(log, "gpt-4o")
        print(
            f"$1 strict limit, {processes} processes x {threads} threads, {name}: "
            f"billed ${cost:.4f} ({served} served)"
        )


# -- part 5: alerts ------------------------------------------------------------------------------------


def alerts() -> None:
    got: list[Any] = []
    llmledger.init(ledger=_db(), flush_interval=0.01, on_threshold=got.append)
    llmledger.set_limit(usd=1, per="day", tenant="acme", mode="soft", thresholds=(0.25, 0.5, 0.8, 1.0))
    with llmledger.guard(model="gpt-4o", max_output_tokens=200_000, tenant="acme"):
        pass
    llmledger.flush()
    print(
        f"soft limit, a $2-worst-case guard with $0 spent: {len(got)} alert(s) fired "
        f"({[str(a.threshold) for a in got]})"
    )
    got.clear()
    llmledger.set_limit(usd="0.01", per="day", tenant="hard", thresholds=(0.5, 1.0))
    for _ in range(10):
        try:
            with llmledger.guard(model="gpt-4o", max_output_tokens=10_000, tenant="hard"):
                pass
        except llmledger.LimitExceeded:
            pass
    print(f"hard limit, 10 refusals: {len(got)} alert(s) at 100 %")
    llmledger.shutdown()


if __name__ == "__main__":
    parts = sys.argv[1:] or ["locked", "strict", "alerts", "shapes"]
    print(f"llmledger from {Path(llmledger.__file__).parent}")
    if "locked" in parts:
        locked()
    if "strict" in parts:
        strict_cases()
    if "alerts" in parts:
        alerts()
    if "shapes" in parts:
        shapes()
