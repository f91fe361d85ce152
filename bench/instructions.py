"""Deterministic cost of the instrumentation: CPU instructions per call and per stream chunk.

Wall-clock overheads of a few microseconds drown in this machine's noise (±5 % of an 800 µs SDK
call), so `bench_instrument.py`'s pyperf table is complemented by instruction counts from
`valgrind --tool=callgrind`, which are repeatable. Each configuration runs twice, with K and 5K
operations; the difference divided by 4K is the cost of one operation, all threads included (the
writer thread's pricing and SQLite writes count too).

    make bench-instructions                                   # bare vs llmledger, calls and streams
    .venv-bench/bin/python bench/instructions.py call llmledger token-limit tokenr
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = """
import sys
sys.path.insert(0, {here!r})
import bench_instrument as b
c = b._setup({tool!r})
def op():
    if {stream}:
        for _ in c.chat.completions.create(model="gpt-4o-mini", messages=b.MESSAGES, stream=True):
            pass
    else:
        c.chat.completions.create(model="gpt-4o-mini", messages=b.MESSAGES)
for _ in range(3):
    op()
for _ in range({n}):
    op()
if {tool!r} == "llmledger":
    import llmledger
    llmledger.flush()
"""


def instructions(tool: str, stream: bool, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        code = WORK.format(here=str(HERE), tool=tool, stream=stream, n=n)
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", code],
            check=True,
            capture_output=True,
        )
        totals = re.search(r"^totals:\s+(\d+)", out.read_text(), re.M) or re.search(
            r"^summary:\s+(\d+)", out.read_text(), re.M
        )
        assert totals is not None
        return int(totals.group(1))


def per_op(tool: str, stream: bool, k: int) -> float:
    return (instructions(tool, stream, 5 * k) - instructions(tool, stream, k)) / (4 * k)


def main() -> None:
    """`instructions.py [call|stream] [tool ...]`: default both operations, bare vs llmledger."""
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    tools = sys.argv[2:] or ["llmledger"]
    rows = []
    for stream, k, unit in ((False, 20, "call"), (True, 4, "stream of 100 chunks")):
        if only and only not in unit:
            continue
        bare = per_op("bare", stream, k)
        for tool in tools:
            rows.append((unit, tool, bare, per_op(tool, stream, k)))
    print(f"{'operation':<22} {'tool':<12} {'bare (Minstr)':>14} {'tool (Minstr)':>14} {'added':>12}")
    for unit, tool, bare, ours in rows:
        print(f"{unit:<22} {tool:<12} {bare / 1e6:>14.3f} {ours / 1e6:>14.3f} {ours - bare:>12,.0f}")


if __name__ == "__main__":
    main()
