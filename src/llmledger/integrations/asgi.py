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

from llmledger.integrations.common import Attributor, resolve, scoped

__all__ = ["LedgerMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LedgerMiddleware:
    """`LedgerMiddleware(app, attribution=fn)`: `fn(scope)` gives the request's attribution."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], attribution: Attributor
    ) -> None:
        if not callable(attribution):
            raise TypeError("attribution must be a function of the ASGI scope, e.g. from_headers(...)")
        self.app = app
        self.attribution = attribution

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        with scoped(resolve(self.attribution, scope)):
            await self.app(scope, receive, send)
