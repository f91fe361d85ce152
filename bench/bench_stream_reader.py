"""Per-chunk cost of the chat stream reader (a content chunk, a reasoning_content chunk): `python bench/bench_stream_reader.py`.

Medians of 7 runs (each the best of 5 x 20,000 calls), with min and max; compare with an older
source tree through PYTHONPATH=<tree>/src."""

import importlib
import statistics
import timeit

from openai.types.chat import ChatCompletionChunk


def chunk(delta):
    return ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        }
    )


content = chunk({"content": " there"})
reasoning = chunk({"content": None, "reasoning_content": "Let me weigh each option in turn, then. "})
mod = importlib.import_module("llmledger.instrumentation.providers.openai")
for name, item in (("content", content), ("reasoning_content", reasoning)):
    reader = mod.stream_reader("chat.completions", True)
    reader.chunk(item)
    runs = [
        min(timeit.repeat(lambda: reader.chunk(item), number=20000, repeat=5)) / 20000 * 1e9 for _ in range(7)
    ]
    print(
        f"{name}: median {statistics.median(runs):.0f} ns (min {min(runs):.0f}, max {max(runs):.0f}) chars={reader.chars}"
    )
