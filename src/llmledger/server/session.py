"""Dashboard sessions: a one-time login link or an API key exchanged for a session cookie.

`llmledger serve` prints `http://host:port/login?token=...` (as notebook servers do): the token
works once and opens an admin session. `POST /login` with an API key (form field `key`) opens a
session with that key's scope and tenant. The cookie (`llmledger_session`) is HttpOnly,
SameSite=Strict, Secure when the request came over HTTPS, and names a session held in this
server's memory (a restart ends every session). A session of a key re-checks every few seconds
that its key is still active.

Changes (POST, PUT, PATCH, DELETE) made with the cookie must carry the session's CSRF token in the
`X-CSRF-Token` header (the page reads it from `GET /api/v1/dashboard/session`): another site can
make the browser send the cookie, but cannot read the token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fastapi import HTTPException, Request
from fastapi.responses import Response

from llmledger.storage.keys import ApiKey

__all__ = ["COOKIE", "SESSION_SECONDS", "Session", "Sessions", "login_url", "session_key", "set_cookie"]

COOKIE = "llmledger_session"
SESSION_SECONDS = 12 * 3600
_RECHECK_SECONDS = 5.0
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Session:
    """One browser's session: the key it acts as (a login-link session acts as an admin)."""

    sid: str
    key: ApiKey
    csrf: str
    expires: float
    from_key: bool
    checked: float = field(default_factory=time.monotonic)


class Sessions:
    """The sessions and pending login tokens of one server app (`app.state.sessions`)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def login_token(self, ttl: float = 24 * 3600) -> str:
        """A new one-time login token (valid `ttl` seconds, once)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def redeem(self, token: str) -> Session | None:
        """Open an admin session for a login token, consuming it; None if unknown or used."""
        with self._lock:
            found = next((t for t in self._tokens if hmac.compare_digest(t, token)), None)
            expires = self._tokens.pop(found, 0.0) if found is not None else 0.0
        if found is None or expires < time.monotonic():
            return None
        key = ApiKey(
            key_id="login-link",
            scope="admin",
            tenant=None,
            name="login link",
            created_at=datetime.now(timezone.utc),
            revoked_at=None,
        )
        return self._open(key, from_key=False)

    def open_for_key(self, key: ApiKey) -> Session:
        """A session acting as `key` (its scope and tenant)."""
        return self._open(key, from_key=True)

    def _open(self, key: ApiKey, *, from_key: bool) -> Session:
        now = time.monotonic()
        session = Session(
            secrets.token_urlsafe(32), key, secrets.token_urlsafe(32), now + SESSION_SECONDS, from_key
        )
        with self._lock:
            for sid in [s for s, v in self._sessions.items() if v.expires < now]:
                del self._sessions[sid]
            self._sessions[session.sid] = session
        return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def find(self, session_id: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or session.expires < time.monotonic():
            return None
        return session

    def drop_key(self, key_id: str) -> None:
        """End every session of a revoked key."""
        with self._lock:
            for sid in [s for s, v in self._sessions.items() if v.from_key and v.key.key_id == key_id]:
                del self._sessions[sid]


def set_cookie(response: Response, request: Request, session_id: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def session_of(request: Request) -> Session | None:
    """The request's session (from its cookie), or None."""
    sessions: Sessions | None = getattr(request.app.state, "sessions", None)
    sid = request.cookies.get(COOKIE)
    if sessions is None or not sid:
        return None
    return sessions.find(sid)


def session_key(request: Request) -> ApiKey | None:
    """The key a cookie session acts as, or None without a session. Raises 403 for a change
    without the session's CSRF token, 401 when the session's key was revoked."""
    session = session_of(request)
    if session is None:
        return None
    if request.method in _UNSAFE:
        sent = request.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent, session.csrf):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header for a change made with a session")
    if session.from_key and time.monotonic() - session.checked > _RECHECK_SECONDS:
        state = request.app.state.ledger
        active = {k.key_id for k in state.engine.keys.list() if k.active}
        if session.key.key_id not in active:
            request.app.state.sessions.drop_key(session.key.key_id)
            return None
        session.checked = time.monotonic()
    return session.key


def login_url(request_base: str, sessions: Sessions) -> str:
    """`<base>/login?token=...`: a fresh one-time login link."""
    return f"{request_base.rstrip('/')}/login?token={sessions.login_token()}"
