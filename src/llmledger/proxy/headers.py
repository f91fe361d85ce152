"""The gateway's request headers for a client: its llmledger key, the provider it goes to, and who
the calls are for (the short attribution names hosted gateways' clients take, mapped)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from llmledger.errors import ConfigError

__all__ = ["DEFAULT_URL", "client_options", "ledger_headers", "ledger_settings"]

DEFAULT_URL = "http://127.0.0.1:8787"
"""Where `llmledger serve` / `llmledger proxy` listen by default."""

_SHORT = {
    "tenant": "X-Ledger-Tenant",
    "user": "X-Ledger-User",
    "org": "X-Ledger-Org",
    "feature": "X-Ledger-Feature",
    "agent": "X-Ledger-Agent",
    "session": "X-Ledger-Session",
    "plan": "X-Ledger-Tag-plan",
    "project": "X-Ledger-Tag-project",
}


def ledger_settings(ledger_key: str | None, ledger_url: str | None) -> tuple[str, str]:
    """(key, base URL) from the arguments, else `LLMLEDGER_API_KEY` / `LLMLEDGER_GATEWAY_URL`, else
    the default URL. Raises `ConfigError` naming the argument that is missing or malformed."""
    key = ledger_key if ledger_key is not None else os.environ.get("LLMLEDGER_API_KEY")
    if not isinstance(key, str) or not key.startswith("llk_"):
        raise ConfigError(
            "ledger_key: pass the llmledger key (llk_...) the gateway gave you, or set LLMLEDGER_API_KEY"
        )
    url = ledger_url if ledger_url is not None else os.environ.get("LLMLEDGER_GATEWAY_URL") or DEFAULT_URL
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"ledger_url must be the gateway's http(s) URL, got {url!r}")
    return key, url.rstrip("/")


def ledger_headers(
    ledger_key: str, provider_api_base: str | None, extra_headers: Mapping[str, str] | None
) -> dict[str, str]:
    """The headers every request of a gateway client carries. `extra_headers`: attribution by
    short name (`user`, `org`, `plan`, `project`, `feature`, `tenant`, `agent`, `session`) or any
    other header, sent as given. Raises `ConfigError` for a value that is not a string."""
    headers = {"X-Ledger-Key": ledger_key}
    if provider_api_base is not None:
        if not isinstance(provider_api_base, str) or not provider_api_base.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"provider_api_base must be the provider's http(s) base URL, got {provider_api_base!r}"
            )
        headers["X-Ledger-Upstream"] = provider_api_base
    for name, value in (extra_headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigError(f"extra_headers: names and values must be strings, got {name!r}: {value!r}")
        headers[_SHORT.get(name.lower(), name)] = value
    return headers


def client_options(
    api_path: str,
    provider_api_key: str | None,
    provider_api_base: str | None,
    ledger_key: str | None,
    ledger_url: str | None,
    extra_headers: Mapping[str, str] | None,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The official client's constructor arguments for a gateway client (`api_path`: `/v1` or
    `/anthropic`). Raises `ConfigError` for a missing key or a malformed URL."""
    if ledger_key is None and "base_url" in kwargs and "api_key" in kwargs:
        return kwargs  # `with_options()` / `copy()`: the copy keeps the headers it was given
    key, url = ledger_settings(ledger_key, ledger_url)
    headers = ledger_headers(key, provider_api_base, extra_headers)
    kwargs["default_headers"] = {**headers, **(kwargs.get("default_headers") or {})}
    kwargs["base_url"] = f"{url}{api_path}"
    kwargs["api_key"] = provider_api_key if provider_api_key is not None else key  # routes hold keys
    return kwargs


class ViaGateway:
    """The gateway clients' constructor, before the official client's in their bases
    (`class OpenAI(ViaGateway, openai.OpenAI)`): `api_path` is where the gateway serves that API."""

    api_path = "/v1"

    def __init__(
        self,
        *,
        provider_api_key: str | None = None,
        provider_api_base: str | None = None,
        ledger_key: str | None = None,
        ledger_url: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        options = client_options(
            self.api_path, provider_api_key, provider_api_base, ledger_key, ledger_url, extra_headers, kwargs
        )
        super().__init__(**options)
