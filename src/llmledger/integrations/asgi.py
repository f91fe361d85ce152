"""ASGI middleware (FastAPI, Starlette, any ASGI framework): attribute each request, then reset.

```python
from fastapi import FastAPI
from llmledger.integrations import from_headers
from llmledger.integrations.asgi import LedgerMiddleware

app = FastAPI()
app.add_middleware(LedgerMiddleware, attribution=from_headers(tenant="x-tenant-id"))
```

The attribution is set in the request's task; Starlette copies it into the worker thread that runs
a sync endpoint, and it is gone when the request ends, whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from llmledger.integrations.common import AttributionFault, Attributor, Refusal, fault_mode, resolve, scoped

__all__ = ["LedgerMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LedgerMiddleware:
    """`LedgerMiddleware(app, attribution=fn)`: `fn(scope)` gives the request's attribution.

    `on_attribution_fault="closed"` refuses a request whose attribution is bad (400) or failed (500)
    instead of running it unattributed (see `AttributionFault`).
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        attribution: Attributor,
        on_attribution_fault: AttributionFault = "open",
    ) -> None:
        if not callable(attribution):
            raise TypeError("attribution must be a function of the ASGI scope, e.g. from_headers(...)")
        self.app = app
        self.attribution = attribution
        self.on_fault = fault_mode(on_attribution_fault)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        who = resolve(self.attribution, scope, self.on_fault)
        if isinstance(who, Refusal):
            await _refuse(scope, send, who)
            return
        with scoped(who):
            await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    if scope.get("type") == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(refusal.body)),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": refusal.body})
