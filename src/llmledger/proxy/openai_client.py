"""`OpenAI` / `AsyncOpenAI` for the gateway: the official clients with the gateway's constructor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from llmledger.proxy.headers import client_options

__all__ = ["AsyncOpenAI", "OpenAI"]


class OpenAI(openai.OpenAI):
    """`openai.OpenAI` through the llmledger gateway.

    `provider_api_key`: your OpenAI (or compatible) key, passed through to the provider (omit it
    when the gateway's routes hold the keys); `provider_api_base`: the provider's base URL (default:
    the gateway's route for the model, else `https://api.openai.com/v1`); `ledger_key`: your
    llmledger key (else `LLMLEDGER_API_KEY`); `ledger_url`: the gateway (else
    `LLMLEDGER_GATEWAY_URL`, else http://127.0.0.1:8787); `extra_headers`: attribution by short name
    (`user`, `org`, `plan`, `project`, `feature`, ...). Other arguments go to `openai.OpenAI`.
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
                "/v1", provider_api_key, provider_api_base, ledger_key, ledger_url, extra_headers, kwargs
            )
        )


class AsyncOpenAI(openai.AsyncOpenAI):
    """`openai.AsyncOpenAI` through the llmledger gateway (arguments as `OpenAI`'s)."""

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
                "/v1", provider_api_key, provider_api_base, ledger_key, ledger_url, extra_headers, kwargs
            )
        )
