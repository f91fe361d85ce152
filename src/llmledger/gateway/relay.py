"""The upstream side of the gateway: one aiohttp session whose connections go only where the
allow-list lets them (`gateway/guard.py`), and the headers that cross the hop.

aiohttp was measured against httpx2 as the upstream client (docs/performance.md): about a third of
the CPU per request, and a much lower added latency under concurrency. Redirects are never
followed; proxies from the environment are never used; responses are decompressed here (the
client gets them plain, so usage can be read on the way).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from llmledger.gateway.guard import AllowList

__all__ = ["HOP_BY_HOP", "GuardedResolver", "open_session", "response_headers"]

HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
"""Headers that describe one hop, never forwarded (RFC 9110 §7.6.1)."""

_DROP_DOWN = (
    frozenset((b"content-length", b"content-encoding", b"set-cookie", b"date", b"server")) | HOP_BY_HOP
)
"""Not relayed to the client: the body's framing is ours, cookies are the upstream's business, and
`date` / `server` are set once by the server in front (uvicorn): relaying them too sent each twice."""


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses a host whose addresses the allow-list
    does not let the gateway reach (raises `UpstreamRefused`, an `OSError`, which aiohttp reports
    as a connection error carrying it)."""

    def __init__(self, allow: AllowList) -> None:
        self.allow = allow
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = set(self.allow.screen(host, [r["host"] for r in found]))
        return [r for r in found if r["host"] in kept]

    async def close(self) -> None:
        await self._inner.close()


def open_session(allow: AllowList, connect_timeout: float, read_timeout: float) -> aiohttp.ClientSession:
    """The gateway's upstream session (call inside the running event loop)."""
    connector = aiohttp.TCPConnector(
        limit=0,
        limit_per_host=0,
        resolver=GuardedResolver(allow),
        ttl_dns_cache=10,
        keepalive_timeout=30,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout),
        auto_decompress=True,
        trust_env=False,
        skip_auto_headers=("User-Agent",),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def response_headers(upstream: Any, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream response's headers for the client (raw, in order), without hop-by-hop ones, the
    length and encoding (the body is sent decoded), and cookies; then `extra`."""
    out = [(k.lower(), v) for k, v in upstream.raw_headers if k.lower() not in _DROP_DOWN]
    out.extend(extra)
    return out


async def cancel(response: Any) -> None:
    """Drop an upstream response mid-body: its connection is closed, which cancels the request."""
    response.close()
    await asyncio.sleep(0)
