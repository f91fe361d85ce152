"""track() cost on the caller's thread (target: <= 20 µs median), with pyperf.

Measured against two baselines in the same run: building the dict a bare SDK response would give
you (what an un-metered app pays, ~0) and genai-prices' own `calc_price` (what pricing would cost
without llmledger's compiled prices). The writer thread runs as in production: events go to a real
SQLite ledger in a temporary directory.

    python bench/bench_track.py            # full run
    python bench/bench_track.py --fast     # quicker, noisier
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyperf

import llmledger

LEDGER = str(Path(tempfile.mkdtemp(prefix="llmledger-bench-")) / "bench.db")


def _setup() -> None:
    llmledger.init(ledger=LEDGER)
    llmledger.track(provider="openai", model="gpt-4o-mini-2024-07-18", input_tokens=1)  # warm caches
    llmledger.flush()


def bench_track(loops: int) -> float:
    _setup()
    track = llmledger.track
    attribute = llmledger.attribute
    t0 = pyperf.perf_counter()
    with attribute(tenant="acme", feature="chat", tags={"plan": "pro"}):
        for _ in range(loops):
            track(
                provider="openai",
                model="gpt-4o-mini-2024-07-18",
                input_tokens=1200,
                cache_read_tokens=1024,
                output_tokens=80,
                reasoning_tokens=0,
            )
    elapsed = pyperf.perf_counter() - t0
    llmledger.flush()
    return elapsed


def bench_track_unpriced(loops: int) -> float:
    _setup()
    t0 = pyperf.perf_counter()
    for _ in range(loops):
        llmledger.track(
            provider="openai", model="ft:gpt-4o-mini:acme::bench", input_tokens=1200, output_tokens=80
        )
    elapsed = pyperf.perf_counter() - t0
    llmledger.flush()
    return elapsed


def bench_genai_calc_price(loops: int) -> float:
    from genai_prices import Usage, calc_price

    t0 = pyperf.perf_counter()
    for _ in range(loops):
        calc_price(
            Usage(input_tokens=1200, cache_read_tokens=1024, output_tokens=80),
            "gpt-4o-mini-2024-07-18",
            provider_id="openai",
        )
    return pyperf.perf_counter() - t0


def bench_bare_usage_dict(loops: int) -> float:
    t0 = pyperf.perf_counter()
    for _ in range(loops):
        _ = {"prompt_tokens": 1200, "completion_tokens": 80, "prompt_tokens_details": {"cached_tokens": 1024}}
    return pyperf.perf_counter() - t0


if __name__ == "__main__":
    runner = pyperf.Runner()
    runner.bench_time_func("bare: usage dict (no metering)", bench_bare_usage_dict)
    runner.bench_time_func("llmledger.track() priced + recorded", bench_track)
    runner.bench_time_func("llmledger.track() unpriced model", bench_track_unpriced)
    runner.bench_time_func("genai_prices.calc_price() alone", bench_genai_calc_price)
