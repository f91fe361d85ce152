"""Where one request goes: the client's own upstream (`X-Ledger-Upstream` and its provider key), a
server-side route for its model (the server's key; several routes are tried in order), or the
API's default host with the client's key. Every URL passes the allow-list first.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from llmledger.errors import ConfigError
from llmledger.gateway.guard import AllowList
from llmledger.gateway.settings import GatewaySettings, RouteConfig
from llmledger.instrumentation.hosts import asks_usage, provider_for_url

__all__ = ["DEFAULT_BASES", "NoUpstream", "Router", "Target"]

DEFAULT_BASES = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
"""The base URL each API's requests go to when neither the client nor a route names one."""


class NoUpstream(Exception):
    """The request names no upstream, no route serves its model and it carries no provider key."""


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream to try: its base URL, the provider id it bills as, and the auth header to send
    (None: forward the client's own provider key)."""

    base: str
    provider: str
    asks_usage: bool
    auth: tuple[bytes, bytes] | None = None
    route: bool = False


def _auth(route: RouteConfig, api: str, secret: str) -> tuple[bytes, bytes]:
    kind = route.auth or ("x-api-key" if api == "anthropic" else "bearer")
    if any(c in secret for c in "\r\n\0"):  # it is written into the request's head as it is
        raise ConfigError(f"route for {route.model!r}: the key holds a line break or a NUL")
    if kind == "bearer":
        return b"authorization", f"Bearer {secret}".encode("latin-1")
    return kind.encode(), secret.encode("latin-1")


class Router:
    """The upstreams of one gateway. Raises `ConfigError` when a route's URL is not a URL, its key
    is missing, or its key cannot be sent in a header."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.allow = AllowList(settings.allow_upstreams)
        self.providers = {k.rstrip("/"): v for k, v in settings.providers.items()}
        self.routes: list[tuple[str, str, Target]] = []  # (api, model glob, target)
        self._named: dict[tuple[str, str], tuple[int, list[Target]]] = {}
        """(api, a client's upstream) -> (allow-list size when checked, its target)."""
        for route in settings.routes:
            self.allow.add(route.upstream)  # an operator's route is an operator's allow-list entry
            api = route.api or ("anthropic" if "api.anthropic.com" in route.upstream else "openai")
            secret = route.secret()
            if secret is None:
                where = f"${route.key_env}" if route.key_env else "key or key_env"
                raise ConfigError(f"route for {route.model!r} -> {route.upstream}: no key ({where} is empty)")
            try:
                auth = _auth(route, api, secret)
            except UnicodeEncodeError:
                raise ConfigError(f"route for {route.model!r}: the key is not plain ASCII") from None
            provider = route.provider or self._provider(route.upstream, api)
            asks = route.include_usage if route.include_usage is not None else self._asks(route.upstream)
            target = Target(route.upstream.rstrip("/"), provider, asks, auth, route=True)
            self.routes.append((api, route.model, target))

    def _provider(self, base: str, api: str) -> str:
        for prefix, provider in self.providers.items():
            if base.startswith(prefix):
                return provider
        return provider_for_url(base, api)

    def _asks(self, base: str) -> bool:
        for prefix, provider in self.providers.items():
            if base.startswith(prefix):
                return asks_usage(provider)
        return asks_usage(provider_for_url(base, ""))

    def models(self, api: str) -> list[str]:
        """The models the routes of `api` name exactly (globs are not listed)."""
        seen: dict[str, None] = {}
        for route_api, glob, _ in self.routes:
            if route_api == api and not any(c in glob for c in "*?["):
                seen[glob] = None
        return list(seen)

    def targets(self, api: str, model: str | None, upstream: str | None, has_key: bool) -> list[Target]:
        """The upstreams to try for one request, in order. `upstream`: the client's
        `X-Ledger-Upstream`; `has_key`: the client sent a provider key. Raises `UpstreamRefused`
        for an upstream off the allow-list, `NoUpstream` when there is nowhere to send it."""
        if upstream is not None:
            known = self._named.get((api, upstream))
            if known is not None and known[0] == len(self.allow.entries):
                return known[1]
            self.allow.check(upstream)
            base = upstream.rstrip("/")
            found = [Target(base, self._provider(base, api), self._asks(base))]
            if len(self._named) >= 1024:
                self._named.clear()
            self._named[(api, upstream)] = (len(self.allow.entries), found)  # until the list changes
            return found
        if model is not None:
            found = [t for a, glob, t in self.routes if a == api and fnmatch.fnmatchcase(model, glob)]
            if found:
                return found
        if has_key:
            base = DEFAULT_BASES[api]
            return [Target(base, self._provider(base, api), self._asks(base))]
        raise NoUpstream(
            f"no route serves model {model!r} and the request carries no provider key: send your "
            "provider key (Authorization or x-api-key) and X-Ledger-Upstream, or ask the operator "
            "for a route"
        )

    def route_table(self) -> Mapping[str, list[str]]:
        """model glob -> upstream base URLs (for logs and `/v1/models`; never the keys)."""
        table: dict[str, list[str]] = {}
        for api, glob, target in self.routes:
            table.setdefault(f"{api}:{glob}", []).append(target.base)
        return table
