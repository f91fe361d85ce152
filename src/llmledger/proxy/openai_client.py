"""`OpenAI` / `AsyncOpenAI` for the gateway: the official clients with the gateway's constructor."""

from __future__ import annotations

import openai

from llmledger.proxy.headers import ViaGateway

__all__ = ["AsyncOpenAI", "OpenAI"]


class OpenAI(ViaGateway, openai.OpenAI):
    """`openai.OpenAI` through the llmledger gateway.

    `provider_api_key`: your OpenAI (or compatible) key, passed through to the provider (omit it
    when the gateway's routes hold the keys); `provider_api_base`: the provider's base URL (default:
    the gateway's route for the model, else `https://api.openai.com/v1`); `ledger_key`: your
    llmledger key (else `LLMLEDGER_API_KEY`); `ledger_url`: the gateway (else
    `LLMLEDGER_GATEWAY_URL`, else http://127.0.0.1:8787); `extra_headers`: attribution by short name
    (`user`, `org`, `plan`, `project`, `feature`, ...). Other arguments go to `openai.OpenAI`.
    Raises `llmledger.errors.ConfigError` for a missing key or a malformed URL."""


class AsyncOpenAI(ViaGateway, openai.AsyncOpenAI):
    """`openai.AsyncOpenAI` through the llmledger gateway (arguments as `OpenAI`'s)."""
