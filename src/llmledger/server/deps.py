"""Dependencies of the routes: the app's state and the calling key, checked for scope and rate.

`Authorization: Bearer <key>`, or the dashboard's session cookie (`server/session.py`). A
missing, malformed, unknown or revoked key gets the same 401 (the caller learns nothing about
which); a key without the scope gets 403; a key over its rate gets 429 with `Retry-After`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from llmledger.server.session import session_key
from llmledger.server.state import ServerState
from llmledger.storage.keys import ApiKey

__all__ = ["AUTH_ERRORS", "AdminKey", "IngestKey", "ReadKey", "State", "get_state", "requires"]

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    403: {"description": "the key's scope or tenant does not allow this"},
    429: {"description": "the key's rate limit is exceeded: retry after `Retry-After` seconds"},
}


async def get_state(request: Request) -> ServerState:
    # `async`: FastAPI runs a plain `def` dependency in a worker thread, a round trip that cost
    # more than a whole reservation decision
    state: ServerState = request.app.state.ledger
    return state


State = Annotated[ServerState, Depends(get_state)]


def requires(scope: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency that returns the calling key when it may act with `scope`. A key verified
    in the last few seconds is found in the event loop; anything else (a new, unknown or wrong key,
    a session) is looked up in a worker thread."""

    async def dependency(request: Request) -> ApiKey:
        state: ServerState = request.app.state.ledger
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        token = token.strip()
        if not header:  # the dashboard's session cookie (server/session.py), CSRF-checked
            key = await run_in_threadpool(session_key, request)
        elif kind.lower() != "bearer" or not token:
            key = None
        else:
            key = state.cached_key(token) or await run_in_threadpool(state.verify, token)
        if key is None:
            state.metrics.auth_failures.inc()
            raise HTTPException(
                401, "missing or invalid API key", headers={"WWW-Authenticate": 'Bearer realm="llmledger"'}
            )
        wait = state.limiter.take(key.key_id)
        if wait:
            state.metrics.rate_limited.inc()
            raise HTTPException(
                429, "rate limit of this key exceeded", headers={"Retry-After": str(max(1, math.ceil(wait)))}
            )
        if not key.allows(scope):
            raise HTTPException(403, f"this key's scope ({key.scope}) does not allow {scope}")
        return key

    return dependency


AdminKey = Annotated[ApiKey, Depends(requires("admin"))]
IngestKey = Annotated[ApiKey, Depends(requires("ingest"))]
ReadKey = Annotated[ApiKey, Depends(requires("read"))]
