"""A fake provider that answers every request with one recorded body (JSON or SSE bytes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2


class Replay:
    """Answers each request with `answer(body)` -> (status, JSON object or SSE bytes); keeps the
    JSON bodies it received in `seen`."""

    def __init__(self, answer: Callable[[Any], tuple[int, Any]] | Any) -> None:
        self.answer = answer if callable(answer) else (lambda body: (200, answer))
        self.seen: list[Any] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        raw = request.read()
        body = json.loads(raw) if raw and "json" in request.headers.get("content-type", "") else raw
        self.seen.append(body)
        status, payload = self.answer(body)
        if isinstance(payload, bytes):
            return httpx2.Response(status, content=payload, headers={"content-type": "text/event-stream"})
        return httpx2.Response(status, json=payload, headers={"x-should-retry": "false"})

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self.handle))

    def async_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))


def chat(model: str, usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A chat.completion body as OpenAI-compatible hosts send it."""
    return {
        "id": "chatcmpl-9f2c",
        "object": "chat.completion",
        "created": 1764547200,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Done.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "system_fingerprint": "fp_7c1a",
        **extra,
    }


def chat_chunks(
    model: str, deltas: list[dict[str, Any]], usage: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """chat.completion.chunk objects: one per delta, then (if `usage`) the final usage chunk."""
    out = [
        {
            "id": "chatcmpl-9f2d",
            "object": "chat.completion.chunk",
            "created": 1764547200,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        }
        for delta in deltas
    ]
    if usage is not None:
        out.append(
            {
                "id": "chatcmpl-9f2d",
                "object": "chat.completion.chunk",
                "created": 1764547200,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    return out
