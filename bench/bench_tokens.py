"""The offline tokenizer (llmledger.tokens): load time, and speed beside the UTF-8 byte bound.

    python bench/bench_tokens.py

Each figure is the median of several runs (load: fresh interpreters) with its min-max spread.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

LOAD = (
    "import time; t=time.perf_counter(); from llmledger.tokens import count_tokens; "
    "count_tokens('x', '{model}'); print(time.perf_counter()-t)"
)
TEXT = ("The quick brown fox jumps over the lazy dog. Ünïcödé 日本語, code: def f(x): return x**2\n") * 300


def _spread(values: list[float], unit: float, name: str) -> str:
    ms = [v * unit for v in values]
    return f"{statistics.median(ms):.3f} (min {min(ms):.3f}, max {max(ms):.3f}) {name}"


def main() -> None:
    for model in ("gpt-4o", "gpt-4"):
        runs = [
            float(subprocess.check_output([sys.executable, "-c", LOAD.format(model=model)]).decode())
            for _ in range(5)
        ]
        print(f"first count_tokens ({model}), fresh process, ms: {_spread(runs, 1e3, '')}")
    from llmledger.tokens import count_tokens, upper_bound_tokens

    for model in ("gpt-4o", "gpt-4"):
        count_tokens("warm", model)
        times = []
        for _ in range(30):
            t = time.perf_counter()
            count_tokens(TEXT, model)
            times.append(time.perf_counter() - t)
        print(f"count_tokens {len(TEXT.encode()):,} bytes ({model}) ms: {_spread(times, 1e3, '')}")
    times = []
    for _ in range(30):
        t = time.perf_counter()
        upper_bound_tokens(TEXT)
        times.append(time.perf_counter() - t)
    print(f"upper_bound_tokens (the floor: UTF-8 encode) ms: {_spread(times, 1e3, '')}")
    print(f"tokens {count_tokens(TEXT, 'gpt-4o')} vs byte bound {upper_bound_tokens(TEXT)}")


if __name__ == "__main__":
    main()
