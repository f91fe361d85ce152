"""One in-process fake that answers the openai, anthropic and google-genai clients over httpx2."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx2
from tests.fakes import bodies as b

SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "o4-mini": "o4-mini-2025-04-16",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}


@dataclass
class Seen:
    """One request as the provider received it."""

    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class Fake:
    """Answers like the providers. Set `fail` to `(status, body)` to fail the next requests, `cut` to
    end the next stream after that many events, `usage` to override the reported usage."""

    seen: list[Seen] = field(default_factory=list)
    fail: tuple[int, Any] | None = None
    cut: int | None = None
    usage: dict[str, Any] | None = None

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=self.transport())

    def async_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=self.transport())

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        raw = request.read()
        ctype = request.headers.get("content-type", "")
        body: Any = json.loads(raw) if raw and "json" in ctype else raw
        path = request.url.path
        self.seen.append(
            Seen(
                path,
                request.url.query.decode()
                if isinstance(request.url.query, bytes)
                else str(request.url.query),
                dict(request.headers),
                body,
            )
        )
        if self.fail is not None:
            status, payload = self.fail
            return httpx2.Response(status, json=payload, headers={"x-should-retry": "false"})
        if path.endswith((":rawPredict", "/invoke")):  # Anthropic on Vertex / Bedrock: model in the URL
            model = (
                path.rsplit("/", 2)[-2] if path.endswith("/invoke") else path.rsplit("/", 1)[-1].split(":")[0]
            )
            return self._json(b.message(SNAPSHOTS.get(model, model), self.usage))
        if ":" in path.rsplit("/", 1)[-1]:
            return self._gemini(path, body)
        model = body.get("model", "") if isinstance(body, dict) else ""
        answer = SNAPSHOTS.get(model, model)
        stream = isinstance(body, dict) and body.get("stream") is True
        if path.endswith("/chat/completions"):
            if stream:
                include = bool((body.get("stream_options") or {}).get("include_usage"))
                return self._sse(b.chat_stream(answer, include, self.usage, self._take_cut()))
            return self._json(b.chat_completion(answer, self.usage))
        if path.endswith("/responses"):
            if stream:
                return self._sse(b.responses_stream(answer, self._take_cut()))
            return self._json(b.response_object(answer, usage=self.usage))
        if path.endswith("/completions"):
            return self._json(self._completion(answer))
        if path.endswith("/embeddings"):
            return self._json(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0091, 0.0154]}],
                    "model": answer,
                    "usage": {"prompt_tokens": 8, "total_tokens": 8},
                }
            )
        if path.endswith("/audio/transcriptions"):
            usage = {
                "type": "tokens",
                "input_tokens": 140,
                "input_token_details": {"text_tokens": 20, "audio_tokens": 120},
                "output_tokens": 30,
                "total_tokens": 170,
            }
            return self._json({"text": "Hello there.", "usage": usage})
        if path.endswith("/audio/speech"):
            return httpx2.Response(
                200, content=b"ID3\x04\x00fake-mp3", headers={"content-type": "audio/mpeg"}
            )
        if path.endswith("/images/generations"):
            usage = {
                "input_tokens": 50,
                "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
                "output_tokens": 4160,
                "total_tokens": 4210,
            }
            return self._json({"created": 1731000000, "data": [{"b64_json": "aGVsbG8="}], "usage": usage})
        if path.endswith("/v1/messages"):
            if stream:
                return self._sse(b.message_stream(answer, self.usage, self._take_cut()))
            return self._json(b.message(answer, self.usage))
        return httpx2.Response(404, json={"error": {"message": f"no route {path}"}})

    def _take_cut(self) -> int | None:
        cut, self.cut = self.cut, None
        return cut

    def _completion(self, model: str) -> dict[str, Any]:
        return {
            "id": "cmpl-7QmVI",
            "object": "text_completion",
            "created": 1731000000,
            "model": model,
            "choices": [{"text": " there", "index": 0, "logprobs": None, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        }

    def _gemini(self, path: str, body: Any) -> httpx2.Response:
        head, action = path.rsplit(":", 1)
        model = head.rsplit("/", 1)[-1]
        if action == "generateContent":
            return self._json(b.gemini_response(model, self.usage))
        if action == "streamGenerateContent":
            return self._sse(b.gemini_stream(model, self._take_cut()))
        if action == "batchEmbedContents":
            count = len(body.get("requests", [])) if isinstance(body, dict) else 1
            return self._json({"embeddings": [{"values": [0.01, -0.02, 0.03]} for _ in range(count)]})
        return httpx2.Response(404, json=b.gemini_error(404))

    @staticmethod
    def _json(payload: dict[str, Any]) -> httpx2.Response:
        return httpx2.Response(
            200,
            content=json.dumps(payload).encode(),
            headers={"content-type": "application/json", "x-request-id": "req_fake"},
        )

    @staticmethod
    def _sse(data: bytes) -> httpx2.Response:
        return httpx2.Response(200, content=data, headers={"content-type": "text/event-stream"})
