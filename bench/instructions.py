"""Deterministic cost of the instrumentation: CPU instructions per call and per stream chunk.

Wall-clock overheads of a few microseconds drown in this machine's noise (±5 % of an 800 µs SDK
call), so `bench_instrument.py`'s pyperf table is complemented by instruction counts from
`valgrind --tool=callgrind`, which are repeatable. Each configuration runs twice, with K and 5K
operations; the difference divided by 4K is the cost of one operation, all threads included (the
writer thread's pricing and SQLite writes count too).

    make bench-instructions
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
    rows = []
    for stream, k, unit in ((False, 20, "call"), (True, 4, "stream of 100 chunks")):
        if len(sys.argv) > 1 and sys.argv[1] not in unit:  # e.g. `instructions.py stream`
            continue
        bare = per_op("bare", stream, k)
        ours = per_op("llmledger", stream, k)
        rows.append((unit, bare, ours))
    print(f"{'operation':<22} {'bare (Minstr)':>14} {'llmledger':>10} {'added':>12}")
    for unit, bare, ours in rows:
        added = ours - bare
        print(f"{unit:<22} {bare / 1e6:>14.3f} {ours / 1e6:>10.3f} {added:>12,.0f}")
    if len(rows) == 2:
        call, stream = rows
        print(f"per chunk added: {(stream[2] - stream[1] - (call[2] - call[1])) / 100:,.0f} instructions")


if __name__ == "__main__":
    main()
