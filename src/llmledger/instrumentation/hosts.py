"""Which provider a client talks to, from its base URL (an OpenAI client can reach many providers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmledger.identity import known_model
from llmledger.instrumentation.usage import Usage, normalise

__all__ = [
    "CONVENTIONS",
    "KNOWN_HOSTS",
    "UNKNOWN",
    "Convention",
    "asks_usage",
    "billed_model",
    "configure_hosts",
    "convention",
    "normalise_usage",
    "provider_for_url",
]

KNOWN_HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
    "api.mistral.ai": "mistral",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.groq.com": "groq",
    "api.fireworks.ai": "fireworks",
    "api.x.ai": "xai",
    "api.perplexity.ai": "perplexity",
    "api.cerebras.ai": "cerebras",
    "api.moonshot.ai": "moonshot",
    "generativelanguage.googleapis.com": "gemini",
}
"""Exact API hosts and the llmledger provider id of each."""

_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".openai.azure.com", "azure"),
    (".cognitiveservices.azure.com", "azure"),
    (".services.ai.azure.com", "azure"),
    ("aiplatform.googleapis.com", "google-vertex"),
)

_user: tuple[tuple[str, str], ...] = ()


def configure_hosts(mapping: Mapping[str, str] | None) -> None:
    """Set `init(base_url_providers=...)`: keys are a host, `host:port`, or a URL prefix."""
    global _user
    _user = tuple((k.rstrip("/").lower(), v) for k, v in (mapping or {}).items())


def provider_for_url(url: Any, default: str) -> str:
    """The provider id for a base URL (an `httpx2.URL` or a string); `default` when unknown."""
    text = str(url).lower()
    host = text.split("://", 1)[-1].split("/", 1)[0]
    bare = host.rsplit("@", 1)[-1]
    for key, provider in _user:
        if "://" in key:
            if text.startswith(key):
                return provider
        elif key == bare or key == bare.split(":", 1)[0]:
            return provider
    name = bare.split(":", 1)[0]
    known = KNOWN_HOSTS.get(name)
    if known is not None:
        return known
    for suffix, provider in _SUFFIXES:
        if name.endswith(suffix):
            return provider
    return default


@dataclass(frozen=True, slots=True)
class Convention:
    """How one OpenAI-compatible host counts usage (what its `usage` fields include), as data."""

    docs: str
    """The host's API reference this convention was checked against."""
    reasoning_beside: bool = False
    """`completion_tokens` EXCLUDES `reasoning_tokens` (total = prompt + completion + reasoning)."""
    asks_usage: bool = False
    """The host accepts `stream_options.include_usage` (llmledger adds it only then)."""
    min_api_version: str | None = None
    """The oldest dated `api-version` that accepts `stream_options` (Azure: 2024-09-01; older ones
    answer 400 to it). Undated versions (`preview`, `v1`) accept it."""
    bills_invoked_id: bool = False
    """The host bills the model id (or inference profile) the request invoked, while its response
    names the base model (Bedrock: `global.anthropic.claude-sonnet-4-5-20250929-v1:0` is answered
    as `claude-sonnet-4-5-20250929`): the event's model is the invoked id."""
    thoughts_in_total: bool = False
    """`total_tokens` includes thinking that neither `completion_tokens` nor a `reasoning_tokens`
    detail reports (Gemini's OpenAI-compatible endpoint): the difference is reasoning, in the output."""
    cost: str | None = None
    """Where the host reports its own charge: `ticks` (xAI `usage.cost_in_usd_ticks`, 1e-10 USD) or
    `usd` (OpenRouter `usage.cost`, plus `cost_details.upstream_inference_cost` when `is_byok`)."""


CONVENTIONS: dict[str, Convention] = {
    "openai": Convention("https://platform.openai.com/docs/api-reference/chat/object", asks_usage=True),
    "azure": Convention(
        "https://learn.microsoft.com/azure/ai-foundry/openai/reference",
        asks_usage=True,
        min_api_version="2024-09-01",
    ),
    "deepseek": Convention("https://api-docs.deepseek.com/api/create-chat-completion", asks_usage=True),
    "openrouter": Convention(
        "https://openrouter.ai/docs/use-cases/usage-accounting", asks_usage=True, cost="usd"
    ),
    "xai": Convention(
        "https://docs.x.ai/developers/cost-tracking", reasoning_beside=True, asks_usage=True, cost="ticks"
    ),
    "groq": Convention("https://console.groq.com/docs/api-reference#chat-create", asks_usage=True),
    "mistral": Convention("https://docs.mistral.ai/api/#tag/chat"),
    "together": Convention("https://docs.together.ai/reference/chat-completions-1"),
    "fireworks": Convention("https://docs.fireworks.ai/api-reference/post-chatcompletions"),
    "perplexity": Convention("https://docs.perplexity.ai/api-reference/chat-completions-post"),
    "cerebras": Convention("https://inference-docs.cerebras.ai/api-reference/chat-completions"),
    "moonshot": Convention("https://platform.moonshot.ai/docs/api/chat"),
    "anthropic": Convention("https://docs.anthropic.com/en/api/openai-sdk"),
    "aws-bedrock": Convention(
        "https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles.html", bills_invoked_id=True
    ),
    "gemini": Convention(
        "https://ai.google.dev/gemini-api/docs/openai", reasoning_beside=True, thoughts_in_total=True
    ),
}
"""Every host llmledger names. A host not listed (a relay at an unknown URL) gets `UNKNOWN`: no
request change, reasoning inside completion unless its `total_tokens` says otherwise."""

UNKNOWN = Convention("")


def convention(provider: str) -> Convention:
    """The usage convention of a provider id (`UNKNOWN` for one llmledger does not name)."""
    return CONVENTIONS.get(provider, UNKNOWN)


_NATIVE_ENDPOINTS = frozenset(("messages", "generate_content", "embed_content"))
"""Endpoints of the providers' own SDKs (Anthropic, google-genai): their readers already put the
usage in the event convention; a host's OpenAI-compatible convention is not theirs."""


def normalise_usage(usage: Usage, provider: str, endpoint: str | None) -> None:
    """`usage.normalise()` by the convention of `provider` for an OpenAI-shaped `endpoint` (the
    provider's own SDK endpoints get only the impossible-event checks)."""
    host = UNKNOWN if endpoint in _NATIVE_ENDPOINTS else convention(provider)
    normalise(usage, host.reasoning_beside, thoughts_in_total=host.thoughts_in_total)


def billed_model(provider: str, requested: str | None, answered: str | None) -> str:
    """The model an event is priced, limited and reported as: the one the response names, except
    at a host that bills the id invoked (`Convention.bills_invoked_id`) when the catalogue knows that
    id (a Bedrock application-inference-profile ARN keeps the model answered, so it stays priced)."""
    if requested and convention(provider).bills_invoked_id and known_model(requested, provider):
        return requested
    return answered or requested or "unknown"


def asks_usage(provider: str, api_version: Any = None) -> bool:
    """Whether llmledger may add `stream_options.include_usage` to a stream request to `provider`
    (an empty provider: a host llmledger does not know) sent with `api_version`."""
    found = CONVENTIONS.get(provider) if provider else None
    if found is None or not found.asks_usage:
        return False
    oldest = found.min_api_version
    if oldest and isinstance(api_version, str) and api_version[:4].isdigit():
        return api_version >= oldest
    return True
