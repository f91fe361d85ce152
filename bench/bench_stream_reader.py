"""Per-chunk cost of the chat stream reader: a `delta.content` chunk and a `reasoning_content` one.

`python bench/bench_stream_reader.py`; medians of 7 runs (each the best of 5 x 20,000 calls) with
min and max. Compare with an older source tree through `PYTHONPATH=<tree>/src`.
"""

from __future__ import annotations

import importlib
import statistics
import timeit
from typing import Any

from openai.types.chat import ChatCompletionChunk


def chunk(delta: dict[str, Any]) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        }
    )


def per_chunk_ns(reader: Any, item: Any) -> list[float]:
    read = reader.chunk
    return [min(timeit.repeat(lambda: read(item), number=20000, repeat=5)) / 20000 * 1e9 for _ in range(7)]


def main() -> None:
    module = importlib.import_module("llmledger.instrumentation.providers.openai")
    cases = {
        "content": chunk({"content": " there"}),
        "reasoning_content": chunk({"content": None, "reasoning_content": "Let me weigh each option. "}),
    }
    for name, item in cases.items():
        reader = module.stream_reader("chat.completions", True)
        runs = per_chunk_ns(reader, item)
        print(f"{name}: median {statistics.median(runs):.0f} ns (min {min(runs):.0f}, max {max(runs):.0f})")


if __name__ == "__main__":
    main()
