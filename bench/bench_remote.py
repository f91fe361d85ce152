"""The SDK's added latency on the caller's thread: remote mode (`init(server=...)`) beside embedded
mode (`init(ledger=...)`). Target: the same (≤ 15 µs), since in both the caller only journals and
queues; delivery (HTTP to the server, or SQLite) happens on the writer thread.

The same measurement as `bench_hook.py --quick`: the instrumented openai `request` method around a
stub returning a prebuilt `ChatCompletion`, timed by the calling thread's own CPU clock, hook minus
bare; median and spread over `--reps` runs of `--loops` calls. Remote mode talks to a real
`llmledger serve` process on loopback.

    python bench/bench_remote.py [--reps 9] [--loops 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_hook  # noqa: E402
import llmledger  # noqa: E402
from bench_server import ADMIN, free_port, wait_ready  # noqa: E402


def added(reps: int, loops: int) -> list[float]:
    out = []
    for _ in range(reps):
        bare = bench_hook.hook(loops, False, "cpu") / loops
        metered = bench_hook.hook(loops, True, "cpu") / loops
        out.append((metered - bare) * 1e6)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--loops", type=int, default=20_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="llmledger-bench-remote-"))
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")
    port = free_port()
    env = {**os.environ, "LLMLEDGER_ADMIN_KEY": ADMIN, "LLMLEDGER_RATE_LIMIT": "1000000"}
    main_code = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"
    ledger = f"sqlite:///{folder / 'server.db'}"
    server = subprocess.Popen(
        [sys.executable, "-c", main_code, "serve", "--ledger", ledger, "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        results = {}
        for mode in ("embedded", "remote"):
            if mode == "remote":
                bench_hook._init = lambda: llmledger.init(server=url, api_key=ADMIN)  # type: ignore[assignment]
            results[mode] = added(args.reps, args.loops)
            stats = llmledger.stats()
            assert stats.events_dropped == 0 and stats.write_errors == 0, stats
        delivered = llmledger.Client(url, ADMIN).usage("provider")
        llmledger.shutdown()
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"caller-thread CPU added per call ({args.reps} runs of {args.loops:,} calls; "
        f"load {os.getloadavg()[0]:.1f}):"
    )
    for mode, values in results.items():
        print(
            f"  {mode:8s}: median {statistics.median(values):.2f} µs "
            f"(min {values[0]:.2f}, max {values[-1]:.2f})"
        )
    print(f"  events the server holds: {sum(r['requests'] for r in delivered):,}")


if __name__ == "__main__":
    main()
