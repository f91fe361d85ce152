"""One upstream answer as the gateway reads it (`UpstreamResponse`), and the upstream client's errors.

The connections and the pool are `gateway/upstream.py`'s; an answer's body is fed here by its
connection (decompressed on the way) and read whole or chunk by chunk.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmledger.gateway.upstream import _Conn

__all__ = ["HIGH_WATER", "UpstreamError", "UpstreamResponse", "UpstreamTimeout"]

HIGH_WATER = 1 << 20
"""Bytes of an answer buffered for a slow client before the upstream connection stops reading."""
MAX_WHOLE = 64 << 20
"""The largest answer (decompressed) read whole; past it the answer fails (a gzip bomb, a runaway)."""


class UpstreamError(ConnectionError):
    """The upstream could not be reached, or broke off its answer."""


class UpstreamTimeout(TimeoutError):
    """The upstream said nothing for `read_timeout` seconds (or did not connect in time)."""


class _Fresh(UpstreamError):
    """A kept-alive connection closed before any byte of the answer (safe to retry once)."""


class UpstreamResponse:
    """One answer: `status`, `raw_headers` (as sent), then the body with `read()` (whole) or
    `async for chunk in response` (as it arrives). `release()` when done (the connection is kept
    for the next request if the answer was read to its end), `close()` to drop it mid-answer."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_decoder",
        "_done",
        "_error",
        "_size",
        "_waiter",
        "_whole",
        "raw_headers",
        "status",
    )

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None
        self._whole = False

    @property
    def content_type(self) -> str:
        """The media type, lower-case, without parameters (as aiohttp's `content_type`)."""
        for name, value in self.raw_headers:
            if name.lower() == b"content-type":
                return value.split(b";", 1)[0].strip().lower().decode("latin-1")
        return "application/octet-stream"

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                self._fail(UpstreamError(f"the upstream's compressed answer is corrupt: {exc}"))
                return
            if not data:
                return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > MAX_WHOLE:  # held in memory unread (a whole body, a decompression bomb)
            self._chunks.clear()
            self._conn.close()
            self._fail(UpstreamError(f"the upstream's answer is larger than {MAX_WHOLE >> 20} MiB"))
            return
        if self._size > HIGH_WATER and not self._whole:
            self._conn.pause()
        self._wake()

    def _complete(self) -> None:
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self._chunks.append(rest)
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._done and self._error is None:
            self._error = exc
        self._wake()

    async def _wait(self) -> None:
        waiter = self._waiter = self._conn.pool.loop.create_future()
        await waiter

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                if self._size > HIGH_WATER:
                    self._conn.resume()
                self._size = 0
                return data
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            waiter = self._waiter = self._conn.pool.loop.create_future()
            await waiter

    async def read(self) -> bytes:
        """The whole body (decompressed)."""
        self._whole = True
        self._conn.resume()  # a whole body is wanted: keep reading
        while not self._done and self._error is None:
            await self._wait()
        if self._error is not None:  # also when the answer failed as it completed (a bound passed)
            raise self._error
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def release(self) -> None:
        """Done with this answer: the connection goes back to the pool if the answer ended cleanly
        and the upstream keeps it alive, else it is closed."""
        self._conn.finished(self)

    def close(self) -> None:
        """Drop the connection now (an upstream mid-answer sees it closed: its request is cancelled)."""
        self._conn.close()
        self._fail(UpstreamError("the answer was dropped"))


class _Deflate:
    """`Content-Encoding: deflate`: zlib-wrapped as the RFC says, or raw as some servers send it."""

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            wrapped = len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        return bytes(self._inner.decompress(data))

    def flush(self) -> bytes:
        return b"" if self._inner is None else bytes(self._inner.flush())
