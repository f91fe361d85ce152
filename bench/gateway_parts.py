"""The processes `bench_gateway.py` runs: a fast fake provider, and bare one-hop forwarders (the
stack candidates), each as `python bench/gateway_parts.py <role> <port> [upstream]`.

- `upstream`: raw ASGI answering `POST .../chat/completions` with a byte-realistic chat completion,
  or with `stream: true` a stream of `CHUNKS` chunk events then the usage chunk and `[DONE]`.
- `hop-asgi-aiohttp`, `hop-asgi-httpx2`, `hop-asgi-lean`, `hop-fastapi-aiohttp`: forward the JSON
  POST to the upstream and the answer back, nothing else (the floor each stack puts under a
  gateway; `lean` is the gateway's own client, `llmledger.gateway.upstream`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

CHUNKS = 100
MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion",
        "created": 1731000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, how can I help?", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_4f2a1b",
    },
    separators=(",", ":"),
).encode()


def _chunk(delta: dict[str, Any], finish: str | None, usage: Any = None, choices: bool = True) -> bytes:
    body = {
        "id": "chatcmpl-StR456",
        "object": "chat.completion.chunk",
        "created": 1731000000,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_4f2a1b",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if choices
        else [],
        "usage": usage,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


STREAM_EVENTS = [
    _chunk({"role": "assistant", "content": "", "refusal": None}, None),
    *(_chunk({"content": " word"}, None) for _ in range(CHUNKS)),
    _chunk({}, "stop"),
    _chunk({}, None, USAGE, choices=False),
    b"data: [DONE]\n\n",
]
_JSON = [(b"content-type", b"application/json"), (b"x-request-id", b"req_bench")]
_SSE = [(b"content-type", b"text/event-stream"), (b"x-request-id", b"req_bench")]


async def _request(scope: dict[str, Any], receive: Any, send: Any) -> bytes | None:
    """The request's body, or None once a health check is answered."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"].endswith("/healthz"):
        await send({"type": "http.response.start", "status": 200, "headers": _JSON})
        await send({"type": "http.response.body", "body": b"{}"})
        return None
    return body


async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await _request(scope, receive, send)
    if body is None:
        return
    if b'"stream":true' in body.replace(b" ", b""):
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        for event in STREAM_EVENTS:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    head = [*_JSON, (b"content-length", str(len(COMPLETION)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": COMPLETION})


def hop_asgi(client: str, target: str) -> Any:
    """A raw ASGI app forwarding each POST to `target` + path with aiohttp or httpx2."""
    state: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _request(scope, receive, send)
        if body is None:
            return
        headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
        if client == "lean":
            from llmledger.gateway.guard import AllowList
            from llmledger.gateway.upstream import UpstreamPool

            pool = state.get("p")
            if pool is None:
                pool = state["p"] = UpstreamPool(AllowList([target]), 10.0, 600.0)
            raw = [(k.encode(), v.encode()) for k, v in headers.items()]
            r3 = await pool.request(b"POST", target, scope["path"].encode(), raw, body)
            answer, status = await r3.read(), r3.status
            ctype = r3.content_type
            r3.release()
        elif client == "aiohttp":
            import aiohttp

            session = state.get("s")
            if session is None:
                session = state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            async with session.post(target + scope["path"], data=body, headers=headers) as r:
                answer, status, ctype = await r.read(), r.status, r.headers["content-type"]
        else:
            import httpx2

            client2 = state.get("c")
            if client2 is None:
                limits = httpx2.Limits(max_connections=None, max_keepalive_connections=200)
                client2 = state["c"] = httpx2.AsyncClient(limits=limits)
            r2 = await client2.post(target + scope["path"], content=body, headers=headers)
            answer, status, ctype = r2.content, r2.status_code, r2.headers["content-type"]
        head = [(b"content-type", ctype.encode()), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": answer})

    return app


def hop_fastapi(target: str) -> Any:
    """A FastAPI route forwarding with aiohttp (what framework routes cost on top of raw ASGI)."""
    import aiohttp

    app = FastAPI()
    state: dict[str, Any] = {}

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {}

    @app.post("/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        session = state.get("s")
        if session is None:
            session = state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        body = await request.body()
        headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
        async with session.post(f"{target}/{path}", data=body, headers=headers) as r:
            answer = await r.read()
            return Response(answer, status_code=r.status, media_type=r.headers["content-type"])

    return app


def main() -> None:
    role, port = sys.argv[1], int(sys.argv[2])
    target = sys.argv[3] if len(sys.argv) > 3 else ""
    if role == "upstream":
        app: Any = upstream
    elif role == "hop-asgi-aiohttp":
        app = hop_asgi("aiohttp", target)
    elif role == "hop-asgi-lean":
        app = hop_asgi("lean", target)
    elif role == "hop-asgi-httpx2":
        app = hop_asgi("httpx2", target)
    elif role == "hop-fastapi-aiohttp":
        app = hop_fastapi(target)
    else:
        raise SystemExit(f"unknown role {role}")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
