"""A small HTTP/1.1 client for the llmledger server: keep-alive connections (one per thread), gzip
request bodies, retries with exponential backoff and full jitter that honour `Retry-After`.

Standard library only (`http.client`), so the core install needs no HTTP package. Only requests that
are safe to repeat are retried: reads, and event batches (the server stores each `event_id` once).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import random
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

from llmledger.errors import (
    AuthenticationError,
    ConfigError,
    RateLimitError,
    ServerError,
    ServerUnavailable,
    ValidationError,
)

__all__ = ["Answer", "HttpClient", "server_url"]

_GZIP_ABOVE = 1024
_RETRY_STATUSES = frozenset((429, 502, 503, 504))
_MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: its status and decoded JSON body (None when empty)."""

    status: int
    body: Any


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(_MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        return None


def server_url(base_url: object) -> SplitResult:
    """`base_url` split, when it is `http(s)://host[:port][/path]` with nothing else (no spaces or
    control characters, user-info, query or fragment; a port from 1 to 65535). Raises `ConfigError`
    naming what to fix."""
    bad = ConfigError(f"server must be an http(s) URL such as http://127.0.0.1:8787, got {base_url!r}")
    if not isinstance(base_url, str) or any(c.isspace() or not c.isprintable() for c in base_url):
        raise bad
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{bad} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise bad
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError(f"{bad}: give only scheme, host, port and path (no user, query or fragment)")
    return parts


class HttpClient:
    """Requests to one server. Thread-safe: each thread keeps its own connection.

    `base_url`: `http://host:port` or `https://...`; `api_key`: sent as a bearer token;
    `timeout`: seconds per attempt; `max_retries`: further attempts after a connection error, 429,
    502, 503 or 504; `backoff`: the first wait in seconds (doubling, full jitter, at most 5 s unless
    the server's `Retry-After` says longer, up to 30 s). Raises `ConfigError` for a bad URL.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = server_url(base_url)
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigError("api_key must be a llmledger API key (llmledger keys create --scope ingest)")
        for name, value in (("timeout", timeout), ("backoff", backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 3600:
                raise ConfigError(f"{name} must be a number of seconds between 0 and 3600, got {value!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 100:
            raise ConfigError(f"max_retries must be an int from 0 to 100, got {max_retries!r}")
        self.scheme = parts.scheme
        self.host: str = parts.hostname or ""  # server_url checked it
        self.port = parts.port or (443 if parts.scheme == "https" else 80)  # checked by server_url
        self.prefix = parts.path.rstrip("/")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self._sleep = sleep
        self._headers = {
            "Authorization": f"Bearer {api_key.strip()}",
            "Accept": "application/json",
            "User-Agent": "llmledger-python",
        }
        self._local = threading.local()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_connections(ref))

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it carried a request before (kept alive). A kept
        connection the server has closed meanwhile (its idle timeout: uvicorn's is 5 s) is readable
        (end of file): it is replaced before use, as urllib3 does."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.sock is None or _closed_by_peer(conn.sock)):
            self._drop()
            conn = None
        if conn is not None:
            return conn, True
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self._local.conn = conn
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connection."""
        self._drop()

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None
    ) -> Answer:
        """Send a request, retrying what is safe to retry; the decoded JSON of a 2xx answer.

        Raises `AuthenticationError` (401/403), `ValidationError` (400/404/413/415/422),
        `RateLimitError` (429 after every retry), `ServerUnavailable` (no answer or 5xx after every
        retry), `ServerError` (anything else).
        """
        query = ""
        if params:
            pairs = [(k, v) for k, v in params.items() if v is not None]
            flat = [(k, x) for k, v in pairs for x in (v if isinstance(v, (list, tuple)) else [v])]
            query = "?" + urlencode(flat) if flat else ""
        url = f"{self.prefix}{path}{query}"
        headers = dict(self._headers)
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
            if len(body) > _GZIP_ABOVE:
                body = gzip.compress(body, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
        attempt = 0
        while True:
            status, payload, retry_after, failure = self._attempt(method, url, body, headers)
            retryable = failure is not None or status in _RETRY_STATUSES
            if not retryable:
                return self._answer(status, payload)
            if attempt >= self.max_retries:
                if status == 429:
                    raise RateLimitError(_message(payload, "rate limited"), retry_after=retry_after)
                detail = failure or _message(payload, f"HTTP {status}")
                where = f"{self.scheme}://{self.host}:{self.port}"
                raise ServerUnavailable(
                    f"the llmledger server at {where} did not answer: {detail}", status=status or None
                )
            wait = random.uniform(0, min(5.0, self.backoff * 2**attempt))
            if retry_after is not None:
                wait = max(wait, retry_after)
            self._sleep(wait)
            attempt += 1

    def exchange(self, method: str, path: str, json_body: Any) -> tuple[int, Any]:
        """One attempt, no retries (limit decisions: bounded by `timeout`): (status, decoded JSON
        body or {}). Raises `ServerUnavailable` when no answer came in time, `AuthenticationError`
        for 401/403; any other status is returned for the caller to read."""
        headers = dict(self._headers)
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        status, payload, _, failure = self._attempt(method, f"{self.prefix}{path}", body, headers)
        if failure is not None:
            where = f"{self.scheme}://{self.host}:{self.port}"
            raise ServerUnavailable(f"the llmledger server at {where} did not answer: {failure}")
        if status in (401, 403):
            raise AuthenticationError(_message(payload, f"HTTP {status}"), status=status)
        try:
            return status, json.loads(payload) if payload else {}
        except ValueError:
            return status, {}

    def _attempt(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes, float | None, str | None]:
        conn, kept = self._connection()
        try:
            try:
                conn.request(method, url, body=body, headers=dict(headers))
                response = conn.getresponse()
            except _STALE:
                if not kept:
                    raise
                # The server closed the kept connection as the request went out (its idle timeout
                # ran out in between): it read nothing, so one new connection is tried (every
                # llmledger request is idempotent: event ids, reservation ids).
                self._drop()
                conn, _ = self._connection()
                conn.request(method, url, body=body, headers=dict(headers))
                response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:  # TimeoutError is an OSError
            self._drop()
            return 0, b"", None, f"{type(exc).__name__}: {exc}"
        if response.getheader("Connection", "").lower() == "close":
            self._drop()
        return response.status, payload, _retry_after(response.getheader("Retry-After")), None

    @staticmethod
    def _answer(status: int, payload: bytes) -> Answer:
        if 200 <= status < 300:
            try:
                return Answer(status, json.loads(payload) if payload else None)
            except ValueError as exc:
                raise ServerError(
                    f"the server answered {status} with a body that is not JSON", status=status
                ) from exc
        message = _message(payload, f"HTTP {status}")
        if status in (401, 403):
            raise AuthenticationError(message, status=status)
        if status in (400, 404, 413, 415, 422):
            raise ValidationError(message, status=status)
        raise ServerError(message, status=status)


_STALE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected)
"""How a kept-alive connection that the server closed fails (before any answer came)."""


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when an idle kept-alive socket is readable: the server closed it (or sent what no
    request asked for). Either way it cannot carry the next request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed or invalid descriptor
        return True
    return bool(readable)


def _forget_connections(ref: weakref.ref[HttpClient]) -> None:
    # In a forked child: never share the parent's sockets (two processes writing one stream would
    # interleave requests). The copies are dropped unclosed-on-the-wire: closing a descriptor in
    # the child does not end the parent's connection.
    client = ref()
    if client is not None:
        client._local = threading.local()


def _message(payload: bytes, default: str) -> str:
    try:
        data = json.loads(payload)
    except ValueError:
        return default
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])  # a typed error: {"error": {"type": ..., "message": ...}}
    return default
