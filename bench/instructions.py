"""Deterministic cost of the instrumentation: CPU instructions per call and per stream chunk.

Wall-clock overheads of a few microseconds drown in this machine's noise (±5 % of an 800 µs SDK
call), so `bench_instrument.py`'s pyperf table is complemented by instruction counts from
`valgrind --tool=callgrind`, which are repeatable. Each configuration runs twice, with K and 5K
operations; the difference divided by 4K is the cost of one operation, all threads included (the
writer thread's pricing and SQLite writes count too).

    make bench-instructions                                   # bare vs llmledger, calls and streams
    .venv-bench/bin/python bench/instructions.py call llmledger token-limit tokenr
    .venv/bin/python bench/instructions.py caller             # the caller's thread only (issue 8)
    .venv/bin/python bench/instructions.py caller 100 hook-bare hook-journal   # some rows only

`caller` counts only the instructions of the calling thread (`--separate-threads=yes`, thread 1):
what an instrumented call costs the application's own thread, the writer thread's pricing and
SQLite writes left out. Rows: the real openai client over the same in-process transport, bare and
instrumented (journal on and off), and `bench_hook.py`'s hook around a stub request.
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


CALLER = """
import os, sys, tempfile
from pathlib import Path
sys.path.insert(0, {here!r})
mode = {mode!r}
if mode.startswith("sdk"):
    import bench_instrument as b
    if mode != "sdk-bare":
        import llmledger
        llmledger.init(ledger=str(Path(tempfile.mkdtemp()) / "b.db"), journal=mode == "sdk-journal")
    c = b._setup("bare")
    def op():
        c.chat.completions.create(model="gpt-4o-mini", messages=b.MESSAGES)
else:
    import bench_hook as h, openai
    from openai._models import FinalRequestOptions
    from openai.types.chat import ChatCompletion
    from llmledger.instrumentation import stainless
    from llmledger.instrumentation.providers.openai import SPEC
    if mode != "hook-bare":
        os.environ["LLMLEDGER_BENCH_JOURNAL"] = "0" if mode == "hook-nojournal" else "1"
    h._init()
    if mode == "hook-unmatched":  # a limit is set, but not on this call's scope
        import llmledger
        llmledger.set_limit(usd=1000, per="month", tenant="someone-else")
    completion, _ = h._load()
    def stub(self, cast_to, options, **kw):
        return completion
    request = stub if mode == "hook-bare" else stainless._hook(SPEC, stub)
    client = openai.OpenAI(api_key="sk-bench")
    options = FinalRequestOptions.construct(
        method="post", url="/chat/completions", json_data={{"model": "gpt-4o-mini", "messages": []}}
    )
    def op():
        request(client, ChatCompletion, options, stream=False, stream_cls=None)
for _ in range(20):
    op()
for _ in range({n}):
    op()
os._exit(0)  # no flush: only the calls are counted on this thread
"""


def caller_instructions(mode: str, n: int) -> int:
    """Instructions executed by the calling thread (thread 1) over `n` operations of `mode`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        code = CALLER.format(here=str(HERE), mode=mode, n=n)
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                code,
            ],
            check=True,
            capture_output=True,
        )
        text = (Path(tmp) / "cg.out-01").read_text()
        totals = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
        assert totals is not None
        return int(totals.group(1))


CALLER_MODES = (
    "sdk-bare",
    "sdk-journal",
    "sdk-nojournal",
    "hook-bare",
    "hook-journal",
    "hook-nojournal",
    "hook-unmatched",
)


def caller(k: int = 200, modes: tuple[str, ...] = CALLER_MODES) -> None:
    """The caller thread's instructions per call, bare vs instrumented (see the module docstring).
    `hook-unmatched`: journal on, and a limit that does not match the call (gate()'s cost)."""
    per = {}
    for mode in modes:
        per[mode] = (caller_instructions(mode, 5 * k) - caller_instructions(mode, k)) / (4 * k)
    print(f"{'caller thread, per call':<34} {'instructions':>14} {'added':>12}")
    for mode, value in per.items():
        base = per.get("sdk-bare" if mode.startswith("sdk") else "hook-bare", 0.0)
        print(f"{mode:<34} {value:>14,.0f} {value - base:>12,.0f}")


def per_op(tool: str, stream: bool, k: int) -> float:
    return (instructions(tool, stream, 5 * k) - instructions(tool, stream, k)) / (4 * k)


def main() -> None:
    """`instructions.py [call|stream] [tool ...]`: default both operations, bare vs llmledger."""
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    if only == "caller":  # caller [k] [mode ...]
        modes = tuple(sys.argv[3:]) or CALLER_MODES
        caller(int(sys.argv[2]) if len(sys.argv) > 2 else 200, modes)
        return
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
