"""The gateway's own upstream client (`gateway/upstream.py`) against a scripted HTTP/1.1 server on
loopback: bodies by length, by chunks and by close; gzip and deflate decoded; keep-alive reuse; a
kept-alive connection the upstream drops retried once on a new one; silence is a timeout."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Awaitable, Callable

import pytest

from llmledger.errors import UpstreamRefused
from llmledger.gateway.guard import AllowList
from llmledger.gateway.upstream import (
    MAX_IDLE,
    STALE_RETRY_SECONDS,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
)
from llmledger.gateway.upstream_answer import MAX_WHOLE

Handler = Callable[[int, bytes], Awaitable[bytes | None]]
"""(connection number, request head) -> the raw answer (None: close without answering)."""


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    connections: list[int] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(connections)
        connections.append(number)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                answer = await handler(number, head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", connections


def _run(
    handler: Handler,
    body: Callable[[UpstreamPool, str, list[int]], Awaitable[None]],
    read_timeout: float = 0.5,
) -> None:
    async def main() -> None:
        server, url, connections = await _serve(handler)
        pool = UpstreamPool(AllowList([url]), 2.0, read_timeout)
        try:
            await body(pool, url, connections)
        finally:
            await pool.close()
            server.close()

    asyncio.run(main())


def _answer(body: bytes, *headers: bytes) -> bytes:
    head = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), head, body)


async def _post(pool: UpstreamPool, url: str) -> tuple[int, bytes]:
    response = await pool.request(b"POST", url, b"/v1/x", [(b"content-type", b"application/json")], b"{}")
    try:
        return response.status, await response.read()
    finally:
        response.release()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (b"gzip", gzip.compress(b'{"ok":true}')),
        (b"deflate", zlib.compress(b'{"ok":true}')),
        (b"deflate", zlib.compress(b'{"ok":true}', wbits=-15)),  # raw deflate, as some servers send it
    ],
)
def test_compressed_answers_are_decoded(encoding: bytes, encoded: bytes) -> None:
    async def handler(_: int, head: bytes) -> bytes:
        assert b"accept-encoding: gzip, deflate" in head
        return _answer(encoded, b"content-encoding: " + encoding)

    async def check(pool: UpstreamPool, url: str, _: list[int]) -> None:
        assert await _post(pool, url) == (200, b'{"ok":true}')

    _run(handler, check)


def test_keep_alive_reuses_one_connection_and_chunks_stream_in_order() -> None:
    async def handler(_: int, head: bytes) -> bytes:
        if head.startswith(b"POST /v1/x"):
            return _answer(b"whole")
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"

    async def check(pool: UpstreamPool, url: str, connections: list[int]) -> None:
        assert await _post(pool, url) == (200, b"whole")
        response = await pool.request(b"GET", url, b"/v1/stream", [], None)
        got = [chunk async for chunk in response]
        response.release()
        assert b"".join(got) == b"onetwo"
        assert await _post(pool, url) == (200, b"whole")
        assert connections == [0]

    _run(handler, check)


def test_an_answer_ended_by_close_is_whole() -> None:
    async def handler(_: int, head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end"

    async def check(pool: UpstreamPool, url: str, _: list[int]) -> None:
        assert await _post(pool, url) == (200, b"until the end")

    _run(handler, check)


def test_a_kept_alive_connection_dropped_before_answering_is_retried_once() -> None:
    async def handler(number: int, head: bytes) -> bytes | None:
        if number == 0 and b"second" in head:
            return None  # the upstream drops the kept-alive connection instead of answering
        return _answer(b"fine")

    async def check(pool: UpstreamPool, url: str, connections: list[int]) -> None:
        assert await _post(pool, url) == (200, b"fine")
        response = await pool.request(b"POST", url, b"/v1/x", [(b"x-n", b"second")], b"{}")
        assert (response.status, await response.read()) == (200, b"fine")
        response.release()
        assert connections == [0, 1]

    _run(handler, check)


def test_a_kept_alive_connection_closed_long_after_the_request_is_not_retried() -> None:
    """Review finding: a POST was sent again whenever a reused connection closed before the first
    answer byte, however long after the request (a generation the provider may bill twice)."""

    async def handler(number: int, head: bytes) -> bytes | None:
        if number == 0 and b"second" in head:
            await asyncio.sleep(STALE_RETRY_SECONDS + 0.3)  # worked on it, then dropped the line
            return None
        return _answer(b"fine")

    async def check(pool: UpstreamPool, url: str, connections: list[int]) -> None:
        assert await _post(pool, url) == (200, b"fine")
        with pytest.raises(UpstreamError, match="closed the connection before answering"):
            await pool.request(b"POST", url, b"/v1/x", [(b"x-n", b"second")], b"{}")
        assert connections == [0]  # never sent a second time

    _run(handler, check, read_timeout=5.0)


def test_idle_connections_per_origin_are_capped() -> None:
    async def handler(_: int, head: bytes) -> bytes | None:
        await asyncio.sleep(0.05)
        return _answer(b"fine")

    async def check(pool: UpstreamPool, url: str, connections: list[int]) -> None:
        answers = await asyncio.gather(*(_post(pool, url) for _ in range(MAX_IDLE + 8)))
        assert answers == [(200, b"fine")] * (MAX_IDLE + 8)
        assert sum(len(conns) for conns in pool.idle.values()) <= MAX_IDLE

    _run(handler, check)


def test_a_request_target_with_control_characters_is_refused() -> None:
    async def handler(_: int, head: bytes) -> bytes | None:
        return _answer(b"fine")

    async def check(pool: UpstreamPool, url: str, connections: list[int]) -> None:
        for path in (b"/v1/x HTTP/1.1\r\nx: y", b"/v1/\x00", b"/v1/a b", b"/v1/\xff"):
            with pytest.raises(UpstreamRefused):
                await pool.request(b"GET", url, path, [], None)
        assert connections == []

    _run(handler, check)


def test_a_compressed_answer_past_the_whole_body_bound_fails() -> None:
    """Review finding: a gzip bomb from an allowed upstream was decompressed into memory unbounded."""
    bomb = gzip.compress(b"0" * (MAX_WHOLE + (1 << 20)), compresslevel=9)

    async def handler(_: int, head: bytes) -> bytes | None:
        return _answer(bomb, b"content-encoding: gzip")

    async def check(pool: UpstreamPool, url: str, connections: list[int]) -> None:
        with pytest.raises(UpstreamError, match="larger than"):
            await _post(pool, url)

    _run(handler, check, read_timeout=10.0)


def test_a_new_connection_dropped_before_answering_is_an_error() -> None:
    async def handler(_: int, head: bytes) -> bytes | None:
        return None

    async def check(pool: UpstreamPool, url: str, connections: list[int]) -> None:
        with pytest.raises(UpstreamError, match="closed the connection before answering"):
            await _post(pool, url)
        assert connections == [0]  # not retried: nothing says the upstream did not act on it

    _run(handler, check)


def test_silence_is_a_timeout() -> None:
    async def handler(_: int, head: bytes) -> bytes:
        await asyncio.sleep(5)
        return _answer(b"late")

    async def check(pool: UpstreamPool, url: str, _: list[int]) -> None:
        t0 = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await _post(pool, url)
        assert 0.45 < time.monotonic() - t0 < 2.0  # read_timeout is 0.5 s

    _run(handler, check)


def test_a_name_leading_to_loopback_is_refused_before_connecting() -> None:
    async def handler(_: int, head: bytes) -> bytes:
        raise AssertionError("nothing may reach the upstream")

    async def check(pool: UpstreamPool, url: str, connections: list[int]) -> None:
        port = url.rsplit(":", 1)[1]
        pool.allow.add(f"http://localhost:{port}", private=False)  # like a default entry
        with pytest.raises(UpstreamRefused, match="loopback"):
            await _post(pool, f"http://localhost:{port}")
        assert connections == []

    _run(handler, check)
