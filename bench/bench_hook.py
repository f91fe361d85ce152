"""llmledger's own cost per call and per stream chunk, isolated from the SDK (pyperf).

The hook is timed twice: by the wall clock, and by the calling thread's own CPU time (which leaves
out the writer thread's pricing and SQLite work competing for the GIL). End-to-end figures
(`bench_instrument.py`) carry the SDK's ~800 µs per call and this machine's
±5 % noise, which hides a few microseconds. Here the instrumented `request` method wraps a stub that
returns a prebuilt `ChatCompletion` (so the measured time is the hook: begin, read usage, queue), and
the stream loop meters a prebuilt list of `ChatCompletionChunk`s. The writer thread runs as in
production and prices + writes every event to SQLite.

    python bench/bench_hook.py --fast
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
import pyperf
from openai._models import FinalRequestOptions
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import llmledger
from llmledger.attribution.context import EMPTY
from llmledger.instrumentation import stainless
from llmledger.instrumentation.call import Call, meter_sync
from llmledger.instrumentation.providers.openai import SPEC, stream_reader

HERE = Path(__file__).resolve().parent
CHUNKS = 100


def _load() -> tuple[ChatCompletion, list[ChatCompletionChunk]]:
    import sys

    sys.path.insert(0, str(HERE))
    import bench_instrument as b

    completion = ChatCompletion.model_validate(json.loads(b.COMPLETION))
    chunks = []
    for line in b.STREAM_WITH_USAGE.decode().split("\n\n"):
        data = line.removeprefix("data: ")
        if data and data != "[DONE]":
            chunks.append(ChatCompletionChunk.model_validate(json.loads(data)))
    return completion, chunks


def _init() -> None:
    # LLMLEDGER_BENCH_JOURNAL=0 measures without the durable journal (for comparison).
    kwargs: dict[str, Any] = {"journal": False} if os.environ.get("LLMLEDGER_BENCH_JOURNAL") == "0" else {}
    llmledger.init(ledger=str(Path(tempfile.mkdtemp(prefix="llmledger-bench-")) / "bench.db"), **kwargs)


def hook(loops: int, instrumented: bool, clock: str = "wall") -> float:
    completion, _ = _load()
    _init()

    def stub(self: Any, cast_to: Any, options: Any, **kw: Any) -> ChatCompletion:
        return completion

    request = stainless._hook(SPEC, stub) if instrumented else stub
    client = openai.OpenAI(api_key="sk-bench")
    options = FinalRequestOptions.construct(
        method="post", url="/chat/completions", json_data={"model": "gpt-4o-mini", "messages": []}
    )
    timer = time.thread_time if clock == "cpu" else pyperf.perf_counter
    t0 = timer()
    for _ in range(loops):
        request(client, ChatCompletion, options, stream=False, stream_cls=None)
    elapsed = timer() - t0
    llmledger.flush()
    return elapsed


def chunks(loops: int, instrumented: bool) -> float:
    _, items = _load()
    _init()
    t0 = pyperf.perf_counter()
    for _ in range(loops):
        if instrumented:
            call = Call("openai", "chat.completions", "gpt-4o-mini", EMPTY, None)
            for _item in meter_sync(call, stream_reader("chat.completions", True), iter(items)):
                pass
        else:
            for _item in iter(items):
                pass
    elapsed = pyperf.perf_counter() - t0
    llmledger.flush()
    return elapsed


def quick(reps: int = 9, loops: int = 20_000) -> None:
    """Without pyperf (a loaded machine times its workers out): the caller thread's CPU per call,
    hook minus bare, median and spread over `reps` runs of `loops` calls."""
    import statistics

    added = []
    for _ in range(reps):
        bare = hook(loops, False, "cpu") / loops
        metered = hook(loops, True, "cpu") / loops
        added.append((metered - bare) * 1e6)
    added.sort()
    print(
        f"caller-thread CPU added per call: median {statistics.median(added):.2f} µs "
        f"(min {added[0]:.2f}, max {added[-1]:.2f}, {reps} runs of {loops:,} calls)"
    )


def main() -> None:
    import sys

    if "--quick" in sys.argv:
        quick()
        return
    runner = pyperf.Runner()
    results = {
        "hook[bare]": runner.bench_time_func("hook[bare]", hook, False),
        "hook[llmledger]": runner.bench_time_func("hook[llmledger]", hook, True),
        "cpu[bare]": runner.bench_time_func("hook-thread-cpu[bare]", hook, False, "cpu"),
        "cpu[llmledger]": runner.bench_time_func("hook-thread-cpu[llmledger]", hook, True, "cpu"),
        "chunks[bare]": runner.bench_time_func(f"chunks{CHUNKS}[bare]", chunks, False),
        "chunks[llmledger]": runner.bench_time_func(f"chunks{CHUNKS}[llmledger]", chunks, True),
    }
    if runner.args.worker or any(r is None for r in results.values()):
        return
    med = {k: v.median() for k, v in results.items()}
    per_call = (med["hook[llmledger]"] - med["hook[bare]"]) * 1e6
    print(f"\nper call added by the hook:  {per_call:.2f} µs (median, wall clock)")
    cpu = (med["cpu[llmledger]"] - med["cpu[bare]"]) * 1e6
    print(
        f"  of which the caller's own thread: {cpu:.2f} µs of CPU (the rest: the writer thread's GIL share)"
    )
    per_chunk = (med["chunks[llmledger]"] - med["chunks[bare]"]) * 1e6 / CHUNKS
    print(f"per stream chunk added:      {per_chunk:.3f} µs (median, incl. the stream's start and end)")


if __name__ == "__main__":
    main()
