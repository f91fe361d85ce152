"""Events lost when a process ends: kill -9, SIGTERM, os._exit, multiprocessing (issue 8, part 1).

Runs the crash workloads of `tests/fakes/served.py` in real child processes and prints, per run,
the comparison of the ledger with the fake provider's served-requests file. `--src` runs the
children (and the replaying parent) against another checkout's `src/` (e.g. an older commit
unpacked with `git archive`), to reproduce the "before" figures.

    python bench/crash_counts.py --runs 10 [--mp-runs 10] [--calls 2000] [--limit 1000] [--src DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import mkdtemp

ROOT = Path(__file__).resolve().parent.parent


def child(
    src: str, mode: str, ledger: Path, served: Path, n: int, limit: str | None
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    args = [sys.executable, "-m", "tests.fakes.served", mode, str(ledger), str(served), str(n)]
    proc = subprocess.Popen(
        [*args, *([limit] if limit else [])], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def replay_and_compare(src: str, ledger: Path, served: Path) -> str:
    # A fresh process opens the ledger (which replays journals, where there are journals) and compares.
    code = (
        "import sys, llmledger; from tests.fakes.served import compare; from pathlib import Path;"
        "llmledger.init(ledger=sys.argv[1]); llmledger.shutdown();"
        "print(compare(Path(sys.argv[1]), Path(sys.argv[2])))"
    )
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ledger), str(served)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or out.stderr.strip()[-500:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--src", default=str(ROOT / "src"))
    parser.add_argument("--limit", default=None, help="set a monthly USD limit in the child")
    parser.add_argument(
        "--only", default="kill9,sigterm,exit,process-fork,process-spawn,pool-fork,pool-spawn"
    )
    parser.add_argument("--mp-runs", type=int, default=1, help="runs of each multiprocessing kind")
    args = parser.parse_args()
    rng = random.Random(1)
    kinds = args.only.split(",")
    for kind in kinds:
        runs = args.runs if kind in ("kill9", "sigterm", "exit") else args.mp_runs
        for run in range(runs):
            tmp = Path(mkdtemp(prefix="llmledger-crash-"))
            ledger, served = tmp / "ledger.db", tmp / "served.log"
            if kind in ("kill9", "sigterm"):
                proc = child(args.src, "loop", ledger, served, args.calls, args.limit)
                target = rng.randint(args.calls // 10, args.calls * 9 // 10)
                while (served.read_bytes().count(b"\n") if served.exists() else 0) < target:
                    time.sleep(0.001)
                proc.send_signal(signal.SIGKILL if kind == "kill9" else signal.SIGTERM)
                proc.wait()
            elif kind == "exit":
                child(args.src, "exit", ledger, served, args.calls, args.limit).wait()
            else:
                n = args.calls // (4 if kind.startswith("process") else 8)
                child(args.src, kind, ledger, served, n, args.limit).wait()
            print(f"{kind:14} run {run}: {replay_and_compare(args.src, ledger, served)}", flush=True)


if __name__ == "__main__":
    main()
