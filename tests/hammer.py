"""Processes and threads that call a (fake) provider through llmledger until its limit refuses them:
the harness of the "never overshoot" tests, embedded (tests/test_limit_processes.py) and remote
(tests/test_remote_limits.py)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import openai
from tests.fakes.honest import Honest

import llmledger

__all__ = ["SHORT", "hammer", "honest_openai", "in_processes"]

SHORT = [{"role": "user", "content": "Summarise this ticket for the support agent, briefly."}]


def honest_openai(log: str, seed: int, out: Callable[[int], int]) -> openai.OpenAI:
    """An OpenAI client whose provider bills `out(cap)` output tokens and logs every served call."""
    return openai.OpenAI(api_key="k", max_retries=0, http_client=Honest(out=out, log=log, seed=seed).client())


def hammer(call: Callable[[], Any], threads: int, refusals: int) -> None:
    """`call()` from `threads` threads until, together, they were refused `refusals` times
    (`LimitExceeded` or `LimitUndecided`: the limit is clearly reached); then shut llmledger down."""
    refused = [0]

    def run() -> None:
        while refused[0] < refusals:
            try:
                call()
            except (llmledger.LimitExceeded, llmledger.LimitUndecided):
                refused[0] += 1

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    llmledger.shutdown(timeout=30)


def in_processes(target: Callable[..., None], args: list[tuple[Any, ...]], timeout: float = 300) -> None:
    """Run `target(*a)` for each `a` of `args` in its own spawned process, at once; each must exit 0."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
        assert p.exitcode == 0
