"""Which provider a client talks to, from its base URL (an OpenAI client can reach many providers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["KNOWN_HOSTS", "configure_hosts", "provider_for_url"]

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
