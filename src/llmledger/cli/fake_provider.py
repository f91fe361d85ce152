"""An in-process fake of the OpenAI and Anthropic HTTP APIs, for the demo: no network, no keys.

It answers the real SDK clients through an `httpx2.MockTransport` with response bodies shaped byte
for byte like the providers' own, including cached and cache-write usage fields. Token counts are
derived deterministically from the request, so a demo run is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx2

__all__ = ["FakeProvider"]


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:4], "big")


class FakeProvider:
    """Serves `/v1/chat/completions` (OpenAI) and `/v1/messages` (Anthropic)."""

    def __init__(self) -> None:
        self.calls = 0

    def transport(self) -> httpx2.MockTransport:
        """A transport to pass as `http_client=httpx2.Client(transport=...)`."""
        return httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        body = json.loads(request.content or b"{}")
        if request.url.path.endswith("/chat/completions"):
            return self._json(self._openai_chat(body), {"x-request-id": f"req_{self.calls:06d}"})
        if request.url.path.endswith("/messages"):
            return self._json(self._anthropic_message(body), {"request-id": f"req_{self.calls:06d}"})
        return httpx2.Response(404, json={"error": {"message": f"no route {request.url.path}"}})

    @staticmethod
    def _json(payload: dict[str, Any], headers: dict[str, str]) -> httpx2.Response:
        return httpx2.Response(
            200, content=json.dumps(payload).encode(), headers={"content-type": "application/json", **headers}
        )

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        text = json.dumps(body.get("messages", []))
        return max(8, len(text) // 4)

    def _openai_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        model = str(body.get("model", "gpt-4o-mini"))
        base = self._prompt_tokens(body)
        prompt = base + _seed(model, self.calls) % (base + 1)  # never more tokens than the body's bytes
        cached = (prompt // 1024) * 1024 if self.calls % 3 == 0 else 0
        completion = 40 + _seed("out", self.calls) % 400
        cap = body.get("max_tokens")
        if isinstance(cap, int) and cap > 0:  # like the real API: the output honours the cap
            completion = min(completion, cap)
        snapshot = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06"}.get(model, model)
        return {
            "id": f"chatcmpl-demo{self.calls:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": snapshot,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Done.", "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_demo",
        }

    def _anthropic_message(self, body: dict[str, Any]) -> dict[str, Any]:
        model = str(body.get("model", "claude-sonnet-4-6"))
        uncached = self._prompt_tokens(body) + _seed(model, self.calls) % 900
        write = 2048 if self.calls % 5 == 1 else 0
        read = 2048 if self.calls % 5 in (2, 3) else 0
        output = 60 + _seed("out", self.calls) % 500
        snapshot = {
            "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
            "claude-haiku-4-5": "claude-haiku-4-5-20251001",
        }
        return {
            "id": f"msg_demo{self.calls:06d}",
            "type": "message",
            "role": "assistant",
            "model": snapshot.get(model, model),
            "content": [{"type": "text", "text": "Done."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": uncached,
                "cache_creation_input_tokens": write,
                "cache_read_input_tokens": read,
                "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
                "output_tokens": output,
                "service_tier": "standard",
            },
        }
