"""A fake OpenAI provider that appends one line per served request to a file, and the workloads the
crash tests run in real child processes (`python -m tests.fakes.served ...`).

The served file is the ground truth a kill cannot erase: the line (the response id, which the
event records as `request_id`) is appended with one `write` before the response is handed back to
the client, so every request the provider answered is in the file, even if the process died the
next instant. `compare()` checks the ledger against it.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
from tests.fakes import bodies as b

import llmledger  # imported here, not in the functions: a fork while another thread is inside

# an `import` statement would leave the child waiting on the import lock forever (a CPython hazard)

INTERRUPTED = "ProcessExited"


class ServedLog:
    """A MockTransport handler answering chat completions, logging each answer's id first."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.fd = -1
        self.pid = -1
        self.counter = itertools.count()
        self.token = ""

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if self.pid != os.getpid():  # opened lazily, again in a forked child
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self.pid = os.getpid()
            self.counter = itertools.count()
            self.token = secrets.token_hex(3)
        body = json.loads(request.content)
        rid = f"chatcmpl-{os.getpid()}-{self.token}-{next(self.counter)}"
        payload = b.chat_completion(
            body["model"], {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
        )
        payload["id"] = rid
        os.write(self.fd, f"{rid}\n".encode())
        return httpx2.Response(
            200, content=json.dumps(payload).encode(), headers={"content-type": "application/json"}
        )


def client(served: str | os.PathLike[str]) -> Any:
    return openai.OpenAI(
        api_key="sk-test", http_client=httpx2.Client(transport=httpx2.MockTransport(ServedLog(served).handle))
    )


def calls(served: str | os.PathLike[str], n: int, tenant: str = "t", c: Any = None) -> None:
    """`n` sequential metered chat completions (through `c`, or a new client)."""
    c = c or client(served)
    with llmledger.attribute(tenant=tenant):
        for _ in range(n):
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


@dataclass
class Comparison:
    served: int
    matched: int
    lost: int
    duplicates: int
    phantoms: int
    interrupted: int
    reservations: int


def compare(ledger: Path, served: Path) -> Comparison:
    """The ledger against the served file.

    - `served`: requests the provider answered; `matched`: those whose event (by response id) is in
      the ledger; `interrupted`: events of calls in flight when their process died (flagged
      `estimated`, `error_type="ProcessExited"`, no response id).
    - `lost` = served requests with no event of their own, minus the interrupted events that stand
      for them (an interrupted call may or may not have reached the provider: it counts once).
    - `duplicates`: response ids recorded more than once; `phantoms`: recorded ids never served.
    - `reservations`: spend-limit reservations still held.
    """
    ids = [line for line in served.read_text().splitlines() if line] if served.exists() else []
    with sqlite3.connect(ledger) as conn:
        rows = conn.execute("SELECT request_id, error_type FROM llmledger_events").fetchall()
        held = conn.execute("SELECT count(*) FROM llmledger_reservations").fetchone()[0]
    recorded = [rid for rid, _ in rows if rid is not None]
    interrupted = sum(1 for rid, err in rows if rid is None and err == INTERRUPTED)
    served_set, recorded_set = set(ids), set(recorded)
    matched = len(served_set & recorded_set)
    return Comparison(
        served=len(ids),
        matched=matched,
        lost=max(0, len(served_set) - matched - interrupted),
        duplicates=len(recorded) - len(recorded_set),
        phantoms=len(recorded_set - served_set),
        interrupted=interrupted,
        reservations=int(held),
    )


def _init(ledger: str) -> None:
    """Embedded mode on `ledger`, or remote mode when it is a server URL (key: LLMLEDGER_API_KEY)."""
    if ledger.startswith(("http://", "https://")):
        llmledger.init(server=ledger, flush_interval=0.05)
    else:
        llmledger.init(ledger=ledger, flush_interval=0.05)


def _pool_work(args: tuple[str, str, int]) -> int:
    ledger, served, n = args
    _init(ledger)
    calls(served, n, tenant="pool")
    return n


def _process_work(ledger: str, served: str, n: int, init: bool) -> None:
    if init:
        _init(ledger)
    calls(served, n, tenant="child")


def _fork_while_calling(served: str, n: int, children: int = 40) -> None:
    """Fork `children` children (plain `os.fork`, as gunicorn --preload and Celery prefork do) while
    4 threads of the parent make calls; each child makes `n` calls and exits through `os._exit`
    (as those servers' workers do). Prints the slowest child's first call in ms, and the most time a
    child's first call spent blocked (neither running nor waiting for a CPU: what a stall on an
    inherited lock is made of, unlike the wait for a CPU of an overloaded machine)."""
    import threading
    import time

    stop = threading.Event()
    # The SDK caches platform facts behind a lock on its first request; a fork while another thread
    # holds it would hang the child inside openai itself. Apps that fork (gunicorn --preload) have
    # made requests at import time or not at all; do one here so the children start the same way.
    calls(served, 1, tenant="parent")

    def busy() -> None:
        c = client(served)
        while not stop.is_set():
            calls(served, 1, tenant="parent", c=c)

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for t in threads:
        t.start()
    firsts = []
    pids = []
    r, w = os.pipe()
    for _ in range(children):
        time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            os.close(r)
            if os.environ.get("LLMLEDGER_DEBUG_FORK"):
                import faulthandler

                faulthandler.dump_traceback_later(10, exit=True)
            c = client(served)
            s0, t0 = _schedstat(), time.perf_counter()
            calls(served, 1, tenant="child", c=c)
            first, s1 = time.perf_counter() - t0, _schedstat()
            blocked = first - (s1[0] - s0[0] + s1[1] - s0[1]) / 1e9  # neither running nor runnable
            calls(served, n - 1, tenant="child", c=c)
            os.write(w, f"{first},{blocked}\n".encode())
            os._exit(0)
        pids.append(pid)
    os.close(w)
    for pid in pids:
        os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        firsts = [tuple(float(v) for v in x.split(",")) for x in f.read().split()]
    stop.set()
    for t in threads:
        t.join()
    print(
        f"children={len(firsts)} slowest_first_call_ms={max(f[0] for f in firsts) * 1000:.0f} "
        f"most_blocked_first_call_ms={max(f[1] for f in firsts) * 1000:.0f}",
        flush=True,
    )


def _die_once_reserved(served: str, guarded: bool) -> None:
    """SIGKILL this process the instant a reservation is committed: before the call's start
    record (an instrumented call) or inside `guard()` before the block runs."""
    from llmledger.engine.limits import Enforcer

    original = Enforcer.reserve

    def reserve_then_die(self: Enforcer, *args: Any, **kwargs: Any) -> Any:
        got = original(self, *args, **kwargs)
        if got.id is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return got

    Enforcer.reserve = reserve_then_die  # type: ignore[method-assign]
    from llmledger.sdk.remote_limits import RemoteEnforcer  # remote mode: reserved on the server

    admit = RemoteEnforcer.admit

    def admit_then_die(self: RemoteEnforcer, *args: Any, **kwargs: Any) -> Any:
        got = admit(self, *args, **kwargs)
        if got[0] is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return got

    RemoteEnforcer.admit = admit_then_die  # type: ignore[method-assign]
    if guarded:
        with llmledger.guard(model="gpt-4o-mini", max_output_tokens=100, tenant="t"):
            pass
    else:
        calls(served, 1)


def _schedstat() -> tuple[int, int]:
    """This thread's (ns on a CPU, ns waiting for one): the rest of the wall time it was blocked."""
    with open("/proc/thread-self/schedstat") as f:
        on_cpu, waiting = f.read().split()[:2]
    return int(on_cpu), int(waiting)


def main(argv: list[str]) -> None:
    """`python -m tests.fakes.served MODE LEDGER SERVED N [LIMIT]`.

    LEDGER: a ledger, or a server URL (remote mode, with LLMLEDGER_API_KEY).
    MODE: `loop` (N calls then a normal exit; the parent kills it on the way), `exit` (N calls then
    `os._exit(0)`), `process-fork` / `process-spawn` (4 `multiprocessing.Process` children of N
    calls each), `pool-fork` / `pool-spawn` (a `Pool` of 4 running 8 tasks of N calls).
    Prints `ready` once the runtime is up. LIMIT: set a monthly USD limit (so calls reserve).
    """
    import multiprocessing

    mode, ledger, served, n = argv[0], argv[1], argv[2], int(argv[3])
    _init(ledger)
    if len(argv) > 4:
        llmledger.set_limit(usd=argv[4], per="month")
    print("ready", flush=True)
    if mode == "loop":
        calls(served, n)
    elif mode == "exit":
        calls(served, n)
        os._exit(0)
    elif mode.startswith("process-"):
        ctx = multiprocessing.get_context(mode.split("-")[1])
        spawn = mode.endswith("spawn")
        procs = [ctx.Process(target=_process_work, args=(ledger, served, n, spawn)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    elif mode.startswith("pool-"):
        ctx = multiprocessing.get_context(mode.split("-")[1])
        with ctx.Pool(4) as pool:
            pool.map(_pool_work, [(ledger, served, n)] * 8)
    elif mode == "fork40":
        _fork_while_calling(served, n)
    elif mode in ("die-reserved", "die-guarded"):
        _die_once_reserved(served, guarded=mode == "die-guarded")
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
