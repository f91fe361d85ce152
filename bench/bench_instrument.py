"""Overhead llmledger's instrumentation adds to an SDK call, side by side with other tools (pyperf).

Every variant drives the REAL openai client against the same in-process `httpx2.MockTransport`, so
the only difference between rows is the metering layer:

  bare         the openai client, nothing installed
  llmledger    `llmledger.init()` (SQLite ledger written by the background thread)
  token-limit  token-limit 0.1.10 `Meter(...).patch_all()` (events queued for its HTTP backend)
  tokenr       tokenr 0.1.3 `tokenr.init(...)` (one thread + HTTP POST per event)

Each benchmark runs in its own worker processes (pyperf), so the tools never see each other.
Targets: <= 15 µs median per non-stream call, <= 1 µs per stream chunk, over `bare`.

    make bench-instrument                  # builds .venv-bench with token-limit and tokenr
    .venv-bench/bin/python bench/bench_instrument.py --fast
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx2
import openai
import pyperf

CHUNKS = 100
MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 100,
    "total_tokens": 1300,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
MESSAGES = [{"role": "user", "content": "Tell me a short story about a careful accountant."}]
NOWHERE = "http://127.0.0.1:9/ingest"  # a closed port: the tools' own backends fail fast, off-thread


def _chunk(delta: dict[str, Any], finish: str | None, usage: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1731000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = None
    return body


def _stream_body(include_usage: bool) -> bytes:
    chunks = [_chunk({"role": "assistant", "content": ""}, None, include_usage)]
    chunks += [_chunk({"content": f" word{i}"}, None, include_usage) for i in range(CHUNKS - 2)]
    chunks.append(_chunk({}, "stop", include_usage))
    if include_usage:
        final = _chunk({}, None, True)
        final["choices"], final["usage"] = [], USAGE
        chunks.append(final)
    lines = [f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1731000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Once upon a time.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
        "system_fingerprint": "fp_bench",
    }
).encode()
STREAM_WITH_USAGE = _stream_body(True)
STREAM_PLAIN = _stream_body(False)
JSON_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {"content-type": "text/event-stream"}


def _handle(request: httpx2.Request) -> httpx2.Response:
    body = request.read()
    if b'"stream":true' not in body:
        return httpx2.Response(200, content=COMPLETION, headers=JSON_HEADERS)
    usage = b'"include_usage":true' in body
    return httpx2.Response(200, content=STREAM_WITH_USAGE if usage else STREAM_PLAIN, headers=SSE_HEADERS)


_client: openai.OpenAI | None = None


def _setup(tool: str) -> openai.OpenAI:
    """Install `tool` once per worker process, then build the client."""
    global _client
    if _client is not None:
        return _client
    if tool == "llmledger":
        import llmledger

        llmledger.init(ledger=str(Path(tempfile.mkdtemp(prefix="llmledger-bench-")) / "bench.db"))
    elif tool == "token-limit":
        from token_limit import Meter, MeterConfig

        Meter(
            MeterConfig(api_key="bench", url=NOWHERE, flush_interval=3600, max_queue_size=10**6)
        ).patch_all()
    elif tool == "tokenr":
        import tokenr

        tokenr.init(token="bench", url=NOWHERE)
    _client = openai.OpenAI(
        api_key="sk-bench", http_client=httpx2.Client(transport=httpx2.MockTransport(_handle))
    )
    return _client


def call(loops: int, tool: str) -> float:
    client = _setup(tool)
    create = client.chat.completions.create
    t0 = pyperf.perf_counter()
    for _ in range(loops):
        create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    return pyperf.perf_counter() - t0


def stream(loops: int, tool: str) -> float:
    client = _setup(tool)
    create = client.chat.completions.create
    t0 = pyperf.perf_counter()
    for _ in range(loops):
        n = 0
        for _chunk in create(model="gpt-4o-mini", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            n += 1
        if n != CHUNKS and tool in ("bare", "llmledger"):  # the caller sees exactly the bare stream
            raise AssertionError(f"{tool}: {n} chunks, expected {CHUNKS}")
    return pyperf.perf_counter() - t0


def available(tool: str) -> bool:
    module = {"llmledger": "llmledger", "token-limit": "token_limit", "tokenr": "tokenr"}.get(tool)
    return module is None or importlib.util.find_spec(module) is not None


def main() -> None:
    runner = pyperf.Runner()
    runner.metadata["description"] = "per-call overhead of metering layers on the openai client"
    tools = [t for t in ("bare", "llmledger", "token-limit", "tokenr") if available(t)]
    results: dict[tuple[str, str], Any] = {}
    for tool in tools:
        results[("call", tool)] = runner.bench_time_func(f"call[{tool}]", call, tool)
        results[("stream", tool)] = runner.bench_time_func(f"stream{CHUNKS}[{tool}]", stream, tool)
    if runner.args.worker or any(r is None for r in results.values()):
        return
    bare_call, bare_stream = results[("call", "bare")].median(), results[("stream", "bare")].median()
    print(f"\n{'tool':<12} {'call (µs)':>10} {'overhead':>9} {'stream (µs)':>12} {'per chunk':>10}")
    for tool in tools:
        c, s = results[("call", tool)].median(), results[("stream", tool)].median()
        print(
            f"{tool:<12} {c * 1e6:>10.1f} {(c - bare_call) * 1e6:>+9.1f} {s * 1e6:>12.1f}"
            f" {(s - bare_stream) * 1e6 / CHUNKS:>+10.2f}"
        )
    print(f"(medians; overhead = tool - bare; per chunk over a {CHUNKS}-chunk stream; pid {os.getpid()})")


if __name__ == "__main__":
    main()
