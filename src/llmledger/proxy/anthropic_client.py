"""`Anthropic` / `AsyncAnthropic` for the gateway: the official clients with the gateway's constructor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anthropic

from llmledger.proxy.headers import client_options

__all__ = ["Anthropic", "AsyncAnthropic"]


class Anthropic(anthropic.Anthropic):
    """`anthropic.Anthropic` through the llmledger gateway.

    `provider_api_key`: your Anthropic key, passed through to the provider (omit it
    when the gateway's routes hold the keys); `provider_api_base`: the provider's base URL (default:
    the gateway's route for the model, else `https://api.anthropic.com`); `ledger_key`: your
    llmledger key (else `LLMLEDGER_API_KEY`); `ledger_url`: the gateway (else
    `LLMLEDGER_GATEWAY_URL`, else http://127.0.0.1:8787); `extra_headers`: attribution by short name
    (`user`, `org`, `plan`, `project`, `feature`, ...). Other arguments go to `anthropic.Anthropic`.
    Raises `llmledger.errors.ConfigError` for a missing key or a malformed URL."""

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
        super().__init__(
            **client_options(
                "/anthropic",
                provider_api_key,
                provider_api_base,
                ledger_key,
                ledger_url,
                extra_headers,
                kwargs,
            )
        )


class AsyncAnthropic(anthropic.AsyncAnthropic):
    """`anthropic.AsyncAnthropic` through the llmledger gateway (arguments as `Anthropic`'s)."""

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
        super().__init__(
            **client_options(
                "/anthropic",
                provider_api_key,
                provider_api_base,
                ledger_key,
                ledger_url,
                extra_headers,
                kwargs,
            )
        )
