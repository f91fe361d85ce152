"""`Anthropic` / `AsyncAnthropic` for the gateway: the official clients with the gateway's constructor."""

from __future__ import annotations

import anthropic

from llmledger.proxy.headers import ViaGateway

__all__ = ["Anthropic", "AsyncAnthropic"]


class Anthropic(ViaGateway, anthropic.Anthropic):
    """`anthropic.Anthropic` through the llmledger gateway.

    `provider_api_key`: your Anthropic key, passed through to the provider (omit it
    when the gateway's routes hold the keys); `provider_api_base`: the provider's base URL (default:
    the gateway's route for the model, else `https://api.anthropic.com`); `ledger_key`: your
    llmledger key (else `LLMLEDGER_API_KEY`); `ledger_url`: the gateway (else
    `LLMLEDGER_GATEWAY_URL`, else http://127.0.0.1:8787); `extra_headers`: attribution by short name
    (`user`, `org`, `plan`, `project`, `feature`, ...). Other arguments go to `anthropic.Anthropic`.
    Raises `llmledger.errors.ConfigError` for a missing key or a malformed URL."""

    api_path = "/anthropic"


class AsyncAnthropic(ViaGateway, anthropic.AsyncAnthropic):
    """`anthropic.AsyncAnthropic` through the llmledger gateway (arguments as `Anthropic`'s)."""

    api_path = "/anthropic"
