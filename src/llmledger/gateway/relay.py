"""The headers that cross the gateway's hop, both ways (the upstream connections themselves are
`gateway/upstream.py`'s: chosen by measurement over aiohttp and httpx2, docs/performance.md).

Responses are decompressed by the upstream client (the client gets them plain, so usage can be
read on the way): their length and encoding headers are not passed on.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HOP_BY_HOP", "response_headers"]

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


def response_headers(upstream: Any, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream response's headers for the client (raw, in order), without hop-by-hop ones, the
    length and encoding (the body is sent decoded), and cookies; then `extra`."""
    out = [(k.lower(), v) for k, v in upstream.raw_headers if k.lower() not in _DROP_DOWN]
    out.extend(extra)
    return out
