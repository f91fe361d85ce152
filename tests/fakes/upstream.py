"""The providers on a real loopback port: `Fake` (tests/fakes/server.py, byte-realistic bodies)
served over HTTP by uvicorn, for the gateway to call as it would call the real providers.

Streams are sent event by event (`delay` seconds apart). `hang` makes the next answers wait that
many seconds before the status line (a timeout); `stall_after` makes the next stream stop after
that many events and wait (a client then disconnects mid-stream); `closed` counts streams whose
client (the gateway) went away before the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn
from tests.fakes.server import SNAPSHOTS, Fake, Seen
from tests.serving import free_port


@dataclass
class Upstream:
    """An ASGI app answering like the providers (`fake` decides the answers)."""

    fake: Fake = field(default_factory=Fake)
    delay: float = 0.0
    hang: float = 0.0
    stall_after: int | None = None
    cut_after: int | None = None
    """The next stream stops after that many events without ending its answer (the connection is
    dropped: an upstream cut mid-stream)."""
    closed: int = 0
    statuses: list[int] = field(default_factory=list)
    """Statuses to answer with, one per request, before answering normally (fallback tests)."""
    redirect: str | None = None
    """Answer every request with a 307 to this URL."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.hang:
            await asyncio.sleep(self.hang)
        if self.redirect is not None:
            self.fake.seen.append(Seen(scope["path"], "", {}, body))
            head = [(b"location", self.redirect.encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 307, "headers": head})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        url = f"http://upstream{scope['path']}" + (
            f"?{scope['query_string'].decode()}" if scope.get("query_string") else ""
        )
        model = _model_of(body)
        if model.startswith("status-"):  # `status-429`: answer that status (for other processes' tests)
            self.statuses.insert(0, int(model.split("-")[1]))
        if self.statuses:
            status = self.statuses.pop(0)
            self.fake.fail = (
                status,
                {"error": {"message": f"upstream says {status}", "type": "server_error"}},
            )
        try:
            answer = self._free(scope) or self.fake.handle(
                httpx2.Request(scope["method"], url, headers=headers, content=body)
            )
        finally:
            if self.fake.fail is not None and not self.statuses:
                self.fake.fail = None
        content = answer.read()
        out = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k != "content-length"]
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
            await self._stream(content, receive, send)
            return
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})

    def _free(self, scope: dict[str, Any]) -> httpx2.Response | None:
        """count_tokens and the model lists (the in-process fake answers them 404)."""
        path = scope["path"]
        if path.endswith("/v1/messages/count_tokens"):
            self.fake.seen.append(Seen(path, "", {}, None))
            return httpx2.Response(200, json={"input_tokens": 42})
        if scope["method"] == "GET" and "/models" in path:
            self.fake.seen.append(Seen(path, "", {}, None))
            listed = [
                {"id": m, "object": "model", "created": 1731000000, "owned_by": "fake"} for m in SNAPSHOTS
            ]
            return httpx2.Response(200, json={"object": "list", "data": listed})
        return None

    async def _stream(self, content: bytes, receive: Any, send: Any) -> None:
        sep = b"\r\n\r\n" if b"\r\n\r\n" in content else b"\n\n"
        events = [e + sep for e in content.split(sep) if e.strip()]
        stall, self.stall_after = self.stall_after, None
        cut, self.cut_after = self.cut_after, None
        gone = asyncio.ensure_future(receive())  # http.disconnect once the gateway hangs up
        try:
            for i, event in enumerate(events):
                if cut is not None and i >= cut:
                    return  # unfinished: uvicorn closes the connection mid-answer
                if stall is not None and i >= stall:
                    await asyncio.wait([gone], timeout=30)
                    break
                if gone.done():
                    break
                await send({"type": "http.response.body", "body": event, "more_body": True})
                if self.delay:
                    await asyncio.sleep(self.delay)
            if gone.done():
                self.closed += 1
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()


def _model_of(body: bytes) -> str:
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return ""
    return model if isinstance(model, str) else ""


@contextmanager
def serve_upstream(upstream: Upstream | None = None) -> Iterator[tuple[str, Upstream]]:
    """Serve an `Upstream` on 127.0.0.1 (a thread); yields (base URL, the upstream)."""
    upstream = upstream or Upstream()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(upstream, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = 200
    while not server.started and deadline:
        threading.Event().wait(0.05)
        deadline -= 1
    try:
        yield url, upstream
    finally:
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":  # `python -m tests.fakes.upstream PORT`: serve until killed (the JS tests)
    uvicorn.run(Upstream(), host="127.0.0.1", port=int(sys.argv[1]), log_level="error", lifespan="off")
