"""Dependencies of the routes: the app's state and the calling key, checked for scope and rate.

`Authorization: Bearer <key>`, or the dashboard's session cookie (`server/session.py`). A
missing, malformed, unknown or revoked key gets the same 401 (the caller learns nothing about
which); a key without the scope gets 403; a key over its rate gets 429 with `Retry-After`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from llmledger.server.session import session_key
from llmledger.server.state import ServerState
from llmledger.storage.keys import ApiKey

__all__ = ["AUTH_ERRORS", "AdminKey", "IngestKey", "ReadKey", "State", "get_state", "requires"]

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    403: {"description": "the key's scope or tenant does not allow this"},
    429: {"description": "the key's rate limit is exceeded: retry after `Retry-After` seconds"},
}


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.ledger
    return state


State = Annotated[ServerState, Depends(get_state)]


def requires(scope: str) -> Callable[[Request], ApiKey]:
    """A dependency that returns the calling key when it may act with `scope`."""

    def dependency(request: Request) -> ApiKey:
        state = get_state(request)
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if not header:  # the dashboard's session cookie (server/session.py), CSRF-checked
            key = session_key(request)
        else:
            key = state.verify(token.strip()) if kind.lower() == "bearer" and token.strip() else None
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
