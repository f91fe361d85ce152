"""The gateway's upstream client: keep-alive HTTP/1.1 over asyncio, responses parsed by httptools.

Chosen by measurement over aiohttp (docs/performance.md, 2026-12-02): a gateway request is one
POST with headers it already holds as bytes, so the request is one write of bytes built once, and
the response is parsed by the same C parser uvicorn uses, without aiohttp's per-request URL,
header-multidict, tracing and timer objects. What it keeps of aiohttp's behaviour, and must:

- connections go only where the allow-list lets them: the host's addresses are resolved here and
  screened (`AllowList.screen`) before each new connection, so a DNS answer changed after the URL
  was checked cannot reach a private or metadata address (raises `UpstreamRefused`);
- redirects are never followed (a 3xx is an answer like any other); no proxy from the environment;
- `connect_timeout` for a new connection (TLS included), `read_timeout` for any silence of the
  upstream after the request is sent (no byte for that long: `UpstreamTimeout`);
- answers compressed with gzip or deflate are decompressed (the client gets them plain, so usage
  can be read on the way); the request asks for nothing else;
- a kept-alive connection the upstream closed while idle is never used; one that closes before a
  single byte of the answer is retried once on a new connection (the upstream never read it);
- reading stops while more than `HIGH_WATER` bytes of a stream wait for the client.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from typing import Any
from urllib.parse import urlsplit

import httptools

from llmledger.errors import UpstreamRefused
from llmledger.gateway.guard import AllowList, _literal
from llmledger.gateway.upstream_answer import (
    HIGH_WATER,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    _Deflate,
    _Fresh,
)

__all__ = ["HIGH_WATER", "UpstreamError", "UpstreamPool", "UpstreamResponse", "UpstreamTimeout"]

_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")
"""Bytes that may not appear in a request target (it is sent as is, in the request line)."""

DNS_SECONDS = 10.0
KEEPALIVE_SECONDS = 30.0
MAX_IDLE = 64
"""Idle connections kept per upstream origin (the oldest are closed past it)."""
STALE_RETRY_SECONDS = 0.5
"""A reused connection closed without an answer within this long of the request is retried once."""

_Origin = tuple[str, str, int]


class _Conn(asyncio.Protocol):
    """One upstream connection, reading answers with httptools."""

    def __init__(self, pool: UpstreamPool, origin: _Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.alive = True
        self.keep = False
        self.paused = False
        self.got = False
        """A byte of the current answer arrived."""
        self.last = 0.0
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.head: asyncio.Future[None] | None = None
        self.bounded = True
        """The current answer's end is marked (a length or chunks), not the connection's close."""

    # -- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes on an idle connection: unusable
            self.close()
            return
        self.got = True
        self.last = self.pool.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._broken(UpstreamError(f"the upstream's answer is not HTTP/1.1: {exc}"))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._disarm()
        response = self.response
        if response is None:
            return
        if response.status and not self.bounded and not response._done:
            response._complete()  # an answer delimited by the connection's close
            return
        if not self.got:
            self._broken(_Fresh("the upstream closed the connection before answering"))
        else:
            self._broken(UpstreamError("the upstream closed the connection mid-answer"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        if response.status < 200:  # an interim answer (100 Continue): wait for the real one
            response.raw_headers.clear()
            return
        self.bounded = False
        for name, value in response.raw_headers:
            lower = name.lower()
            if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
                self.bounded = True
            elif lower == b"content-encoding":
                coding = value.strip().lower()
                if coding in (b"gzip", b"x-gzip"):
                    response._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                elif coding == b"deflate":
                    response._decoder = _Deflate()
        head = self.head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or response.status < 200:
            return
        self.keep = self.parser.should_keep_alive()
        self._disarm()
        response._complete()

    # -- the gateway's side
    def send(self, data: bytes, response: UpstreamResponse) -> asyncio.Future[None]:
        """Write one request; the future is done when its answer's head has arrived."""
        self.response = response
        self.got = False
        self.keep = False
        self.head = head = self.pool.loop.create_future()
        self.last = self.pool.loop.time()
        self.timer = self.pool.loop.call_later(self.pool.read_timeout, self._check)
        self.transport.write(data)
        return head

    def _check(self) -> None:
        self.timer = None
        timeout = self.pool.read_timeout
        now = self.pool.loop.time()
        if self.paused:  # the client is slow, not the upstream
            self.last = now
        idle = now - self.last
        if idle < timeout:
            self.timer = self.pool.loop.call_later(timeout - idle, self._check)
            return
        self._broken(UpstreamTimeout(f"the upstream said nothing for {timeout:g} s"))

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _broken(self, exc: BaseException) -> None:
        head = self.head
        if head is not None and not head.done():
            head.set_exception(exc)
            head.exception()  # retrieved: the waiter may be gone
        if self.response is not None:
            self.response._fail(exc)
        self.close()

    def pause(self) -> None:
        if not self.paused and self.alive:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.alive:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.alive = False
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def finished(self, response: UpstreamResponse) -> None:
        if response is not self.response:
            return
        self.response = self.head = None
        if self.alive and self.keep and response._done and response._error is None and not self.paused:
            self.idle_since = self.pool.loop.time()
            idle = self.pool.idle.setdefault(self.origin, [])
            while idle and (len(idle) >= MAX_IDLE or not idle[0].alive):  # the oldest go first
                idle.pop(0).close()
            idle.append(self)
        else:
            self.close()


class UpstreamPool:
    """The gateway's upstream connections, kept alive per origin (call inside the event loop)."""

    def __init__(self, allow: AllowList, connect_timeout: float, read_timeout: float) -> None:
        self.allow = allow
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.loop = asyncio.get_running_loop()
        self.idle: dict[_Origin, list[_Conn]] = {}
        self._bases: dict[str, tuple[_Origin, bytes, bytes]] = {}
        self._dns: dict[tuple[str, int], tuple[list[str], float]] = {}
        self._tls: ssl.SSLContext | None = None
        self.closed = False

    def _base(self, base: str) -> tuple[_Origin, bytes, bytes]:
        """(origin, Host header, path prefix) of a base URL (checked by the allow-list before)."""
        found = self._bases.get(base)
        if found is None:
            url = urlsplit(base)
            host = (url.hostname or "").rstrip(".").lower()
            default = 443 if url.scheme == "https" else 80
            port = url.port or default
            shown = f"[{host}]" if ":" in host else host
            header = shown if port == default else f"{shown}:{port}"
            found = ((url.scheme, host, port), header.encode("ascii"), url.path.rstrip("/").encode("ascii"))
            if len(self._bases) >= 1024:
                self._bases.clear()
            self._bases[base] = found
        return found

    async def request(
        self,
        method: bytes,
        base: str,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
    ) -> UpstreamResponse:
        """Send `method base+path` with `headers` and `body`; returns once the answer's head is
        in. Raises `UpstreamRefused`, `UpstreamTimeout` or `UpstreamError`."""
        origin, host, prefix = self._base(base)
        if _UNSAFE_TARGET.search(path) is not None:  # a request line must stay one line
            raise UpstreamRefused("the request path has spaces or control characters")
        lines = [method, b" ", prefix, path, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        if body is not None:
            lines += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        lines.append(b"accept-encoding: gzip, deflate\r\n\r\n")
        if body:
            lines.append(body)
        data = b"".join(lines)
        for attempt in (0, 1):
            conn, reused = self._idle(origin), True
            if conn is None:
                conn, reused = await self._connect(origin), False
            response = UpstreamResponse(conn)
            sent = self.loop.time()
            try:
                await conn.send(data, response)
            except _Fresh:
                # a kept-alive connection the upstream had closed fails at once: send it again on a
                # new one. A close long after the request went out may follow work the upstream
                # did (a generation billed): never repeated.
                if reused and attempt == 0 and self.loop.time() - sent < STALE_RETRY_SECONDS:
                    continue
                raise UpstreamError("the upstream closed the connection before answering") from None
            except BaseException:
                conn.close()
                raise
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _idle(self, origin: _Origin) -> _Conn | None:
        idle = self.idle.get(origin)
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if conn.alive and now - conn.idle_since < KEEPALIVE_SECONDS:
                return conn
            conn.close()
        return None

    async def _resolve(self, host: str, port: int) -> list[str]:
        if _literal(host) is not None:
            return self.allow.screen(host, [host.strip("[]")])
        cached = self._dns.get((host, port))
        now = self.loop.time()
        if cached is None or cached[1] < now:
            try:
                infos = await self.loop.getaddrinfo(host, port, type=1)  # SOCK_STREAM
            except OSError as exc:
                raise UpstreamError(f"the upstream host {host!r} does not resolve ({exc})") from None
            found = list(dict.fromkeys(str(info[4][0]) for info in infos))
            if len(self._dns) >= 1024:
                self._dns.clear()
            cached = self._dns[(host, port)] = (found, now + DNS_SECONDS)
        return self.allow.screen(host, cached[0])  # every time: the allow-list may have changed

    async def _connect(self, origin: _Origin) -> _Conn:
        scheme, host, port = origin
        if self.closed:
            raise UpstreamError("the gateway is closing")
        addresses = await self._resolve(host, port)
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        failure: BaseException | None = None
        for address in addresses:
            try:
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: _Conn(self, origin),
                        address,
                        port,
                        ssl=tls,
                        server_hostname=host if tls is not None else None,
                    ),
                    self.connect_timeout,
                )
                return conn
            except TimeoutError:
                failure = UpstreamTimeout(f"connecting to {host}:{port} took over {self.connect_timeout:g} s")
            except (OSError, ssl.SSLError) as exc:
                if isinstance(exc, UpstreamRefused):
                    raise
                failure = UpstreamError(f"cannot connect to {host}:{port}: {exc}")
        assert failure is not None
        raise failure

    async def close(self) -> None:
        """Close every kept-alive connection (answers in progress end with their requests)."""
        self.closed = True
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()
        await asyncio.sleep(0)
