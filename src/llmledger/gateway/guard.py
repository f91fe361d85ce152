"""Which upstream URLs the gateway may call: an allow-list, and no private address behind a name.

The gateway must never be an open relay or an SSRF hole. An upstream URL (a client's
`X-Ledger-Upstream`, or a server-side route) must match an allow-list entry: the same scheme,
host (an entry `https://*.openai.azure.com` matches any one or more labels before the suffix),
port, and a path under the entry's path. No user info, no fragment, http(s) only.

Where the name then leads is checked when the connection is made, on the addresses actually
resolved (a DNS answer changed after the check cannot slip through):
- the **default entries** (the well-known provider hosts) reach globally routable addresses only;
- an **operator's entry** (`--allow-upstream`, `LLMLEDGER_ALLOWED_UPSTREAMS`, a route's upstream)
  may reach private and loopback addresses (a self-hosted model server), but never a link-local
  or cloud-metadata address unless the entry names that address itself.

Redirects are never followed (the relay passes a 3xx back to the client as it came).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from llmledger.errors import ConfigError, UpstreamRefused

__all__ = [
    "DEFAULT_UPSTREAMS",
    "AllowList",
    "Allowed",
    "address_refusal",
    "parse_upstream",
]

DEFAULT_UPSTREAMS: tuple[str, ...] = (
    "https://api.openai.com",
    "https://api.anthropic.com",
    "https://*.openai.azure.com",
    "https://*.cognitiveservices.azure.com",
    "https://*.services.ai.azure.com",
    "https://api.deepseek.com",
    "https://openrouter.ai/api",
    "https://api.mistral.ai",
    "https://api.together.xyz",
    "https://api.together.ai",
    "https://api.groq.com",
    "https://api.fireworks.ai",
    "https://api.x.ai",
    "https://api.perplexity.ai",
    "https://api.cerebras.ai",
    "https://api.moonshot.ai",
    "https://generativelanguage.googleapis.com",
)
"""The well-known provider API hosts, allowed by default (public addresses only)."""

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "192.0.0.192")
)
"""Cloud metadata endpoints (AWS, ECS, Alibaba, AWS IPv6, Oracle): refused unless named literally."""


@dataclass(frozen=True, slots=True)
class Allowed:
    """One allow-list entry."""

    scheme: str
    host: str
    """Lower-case, without a trailing dot; `*.suffix` for a wildcard entry."""
    port: int
    path: str
    """A prefix, without a trailing slash ('' for any path)."""
    private: bool
    """Whether private and loopback addresses may be reached (an operator's entry)."""

    def matches(self, url: SplitResult, host: str, port: int) -> bool:
        if url.scheme != self.scheme or port != self.port:
            return False
        if self.host.startswith("*."):
            if not host.endswith(self.host[1:]) or len(host) <= len(self.host) - 1:
                return False
        elif host != self.host:
            return False
        path = url.path.rstrip("/")
        return not self.path or path == self.path or path.startswith(self.path + "/")


def _host_port(url: SplitResult) -> tuple[str, int]:
    try:
        port = url.port
    except ValueError as exc:
        raise UpstreamRefused(f"upstream {url.geturl()!r} has an invalid port") from exc
    host = (url.hostname or "").rstrip(".").lower()
    return host, port if port is not None else (443 if url.scheme == "https" else 80)


def parse_upstream(text: str) -> SplitResult:
    """Split and check an upstream base URL; raises `UpstreamRefused` naming what is wrong."""
    if not isinstance(text, str) or not text or len(text) > 2048 or any(ord(c) < 33 for c in text):
        raise UpstreamRefused("an upstream must be an http(s) URL without spaces, at most 2048 characters")
    url = urlsplit(text)
    if url.scheme not in ("http", "https"):
        raise UpstreamRefused(f"upstream {text!r}: only http and https URLs are allowed")
    if not url.hostname:
        raise UpstreamRefused(f"upstream {text!r} has no host")
    if "@" in url.netloc:
        raise UpstreamRefused(f"upstream {text!r}: user info in the URL is not allowed")
    if url.fragment or url.query:
        raise UpstreamRefused(f"upstream {text!r}: a base URL takes no query or fragment")
    if _climbs(url.path):
        raise UpstreamRefused(
            f"upstream {text!r}: '.' and '..' path segments (raw or percent-encoded) and backslashes "
            "are not allowed: the path would leave the allowed prefix"
        )
    return url


def _climbs(path: str) -> bool:
    """Whether `path` has a dot segment (`.`, `..`, also `%2e%2E`...) or a backslash, which a server
    may resolve to a path outside the allow-list entry's prefix. Read as a server that decodes
    before it resolves would read it: percent-decoded until nothing changes, so an encoded slash
    (`x%2F..%2F..%2Fadmin`) or a double encoding (`%252e%252e`) climbs too."""
    decoded = path
    for _ in range(4):
        more = unquote(decoded)
        if more == decoded:
            break
        decoded = more
    if "\\" in decoded or ("%" in decoded and decoded != unquote(decoded)):
        return True  # a backslash, or still encoded after four decodings
    return any(segment in (".", "..") for segment in decoded.split("/"))


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_refusal(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, private: bool, named: bool
) -> str | None:
    """Why `address` may not be reached (None: it may). `private`: the entry allows private and
    loopback addresses; `named`: the entry names this very address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if named:
        return None
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "a reserved address"
    if address.is_global:
        return None
    if private:
        return None
    return "a loopback address" if address.is_loopback else "a private address"


class AllowList:
    """The upstreams a gateway may call. `defaults`: public-only entries (the provider hosts);
    `extra`: the operator's entries. Raises `ConfigError` for an entry that is not a URL."""

    def __init__(self, extra: Iterable[str] = (), defaults: Iterable[str] = DEFAULT_UPSTREAMS) -> None:
        self.entries: list[Allowed] = []
        self._checked: dict[str, tuple[SplitResult, Allowed]] = {}
        for text, private in [*((d, False) for d in defaults), *((e, True) for e in extra)]:
            self.add(text, private=private)

    def add(self, text: str, *, private: bool = True) -> None:
        """Allow one more upstream base URL (an operator's entry unless `private` is False)."""
        try:
            url = parse_upstream(text.strip())
        except UpstreamRefused as exc:
            raise ConfigError(f"allowed upstream: {exc}") from None
        host, port = _host_port(url)
        self.entries.append(Allowed(url.scheme, host, port, url.path.rstrip("/"), private))
        self._checked.clear()

    def check(self, text: str) -> tuple[SplitResult, Allowed]:
        """The parsed URL and the entry allowing it; raises `UpstreamRefused` when none does, or
        when the URL names an address the entry may not reach. Allowed URLs are remembered."""
        hit = self._checked.get(text)
        if hit is not None:
            return hit
        found = self._check(text)
        if len(self._checked) >= 1024:
            self._checked.clear()
        self._checked[text] = found
        return found

    def _check(self, text: str) -> tuple[SplitResult, Allowed]:
        url = parse_upstream(text)
        host, port = _host_port(url)
        for entry in self.entries:
            if entry.matches(url, host, port):
                literal = _literal(host)
                if literal is not None:
                    why = address_refusal(literal, entry.private, named=_literal(entry.host) == literal)
                    if why is not None:
                        raise UpstreamRefused(f"upstream {text!r} is {why}")
                return url, entry
        raise UpstreamRefused(
            f"upstream {text!r} is not on the gateway's allow-list; an operator can allow it "
            "with --allow-upstream URL or LLMLEDGER_ALLOWED_UPSTREAMS"
        )

    def policy(self, host: str) -> tuple[bool, bool]:
        """(may reach private addresses, the entry names an address itself) for a host name."""
        host = host.rstrip(".").lower()
        private = named = False
        for entry in self.entries:
            if entry.host == host or (entry.host.startswith("*.") and host.endswith(entry.host[1:])):
                private = private or entry.private
                named = named or _literal(entry.host) is not None
        return private, named

    def screen(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The resolved `addresses` of `host` the gateway may connect to; raises `UpstreamRefused`
        when there is none (every address of a name must be allowed: a name resolving to both a
        public and a private address is refused whole)."""
        private, named = self.policy(host)
        allowed = []
        for text in addresses:
            address = _literal(text.split("%", 1)[0])
            if address is None:
                raise UpstreamRefused(f"upstream host {host!r} resolved to {text!r}, not an address")
            why = address_refusal(address, private, named)
            if why is not None:
                raise UpstreamRefused(f"upstream host {host!r} resolves to {why}; refused")
            allowed.append(text)
        if not allowed:
            raise UpstreamRefused(f"upstream host {host!r} does not resolve")
        return allowed


def family_of(address: str) -> int:
    """`socket.AF_INET` or `socket.AF_INET6` for an address literal."""
    return socket.AF_INET6 if ":" in address else socket.AF_INET
