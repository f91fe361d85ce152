"""The gateway beside another ASGI app (the server's API): `/v1/...` and `/anthropic/...` go to the
gateway, everything else to the app. Both share one engine, closed when the server stops."""

from __future__ import annotations

from typing import Any

from llmledger.engine import Engine
from llmledger.gateway.app import Gateway, Message, Receive, Scope, Send, freeze_heap

__all__ = ["WithGateway"]


class WithGateway:
    """An ASGI app: `gateway` for the gateway's paths, `app` for the rest. `engine`: closed at
    shutdown, after both (None: the caller closes it)."""

    def __init__(self, app: Any, gateway: Gateway, engine: Engine | None = None) -> None:
        self.app = app
        self.gateway = gateway
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(("/v1/", "/anthropic/")):
                await self.gateway.http(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                freeze_heap()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.gateway.aclose()
                if self.engine is not None:
                    self.engine.close()
            await send(message)

        await self.app(scope, receive, closing)
