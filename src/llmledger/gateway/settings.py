"""Settings of the gateway (`llmledger proxy`, and the gateway `llmledger serve` mounts).

From arguments, then `LLMLEDGER_*` environment variables, then the `[gateway]` table of the TOML
settings file (`--config`):

| setting | environment | default |
|---|---|---|
| `allow_upstreams` | `LLMLEDGER_ALLOWED_UPSTREAMS` (URLs, comma- or space-separated) | provider hosts only |
| `routes` | (file only: `[[gateway.routes]]`) | none |
| `providers` | (file only: `[gateway.providers]`, URL prefix = provider id) | none |
| `connect_timeout` | `LLMLEDGER_UPSTREAM_CONNECT_TIMEOUT` | 10 s |
| `read_timeout` | `LLMLEDGER_UPSTREAM_TIMEOUT` (seconds without a byte from the upstream) | 600 s |
| `max_body_bytes` | `LLMLEDGER_GATEWAY_MAX_BODY_BYTES` | 32 MiB |
| `journal` | `LLMLEDGER_GATEWAY_JOURNAL` (0 to disable) | on |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from llmledger.server.settings import layered, validated

__all__ = ["GatewaySettings", "RouteConfig"]

_ENV = {
    "allow_upstreams": "LLMLEDGER_ALLOWED_UPSTREAMS",
    "connect_timeout": "LLMLEDGER_UPSTREAM_CONNECT_TIMEOUT",
    "read_timeout": "LLMLEDGER_UPSTREAM_TIMEOUT",
    "max_body_bytes": "LLMLEDGER_GATEWAY_MAX_BODY_BYTES",
    "journal": "LLMLEDGER_GATEWAY_JOURNAL",
}


class RouteConfig(BaseModel):
    """One server-side route: requests for `model` go to `upstream` with the server's key.

    Several routes for the same model are tried in the order given: the next one when an upstream
    answers 429 or 5xx, or cannot be reached, before anything was sent to the client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    """A model name, or a glob (`gpt-4o*`, `*`)."""
    upstream: str
    """The provider base URL as its SDK takes it (`https://api.openai.com/v1`,
    `https://api.anthropic.com`)."""
    key: SecretStr | None = None
    key_env: str | None = None
    """The environment variable holding the key (preferred to `key` in a file)."""
    api: Literal["openai", "anthropic"] | None = None
    """Which API the upstream speaks (default: anthropic for api.anthropic.com, else openai)."""
    provider: str | None = None
    """The provider id for pricing (default: from the host, else the API's name)."""
    auth: Literal["bearer", "x-api-key", "api-key"] | None = None
    """How the key is sent (default: x-api-key for the anthropic API, else a bearer token)."""
    include_usage: bool | None = None
    """Whether the upstream accepts `stream_options.include_usage` (default: known hosts only)."""

    def secret(self) -> str | None:
        """The route's provider key (from `key_env` when set), or None."""
        if self.key_env:
            return os.environ.get(self.key_env) or None
        return self.key.get_secret_value() if self.key is not None else None


class GatewaySettings(BaseModel):
    """Validated gateway settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_upstreams: tuple[str, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    providers: Mapping[str, str] = Field(default_factory=dict)
    connect_timeout: float = Field(10.0, gt=0, le=600)
    read_timeout: float = Field(600.0, gt=0, le=86_400)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, le=1024**3)
    journal: bool = True

    @field_validator("allow_upstreams", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v for v in re.split(r"[\s,]+", value) if v)
        return value

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        file: str | Path | None = None,
    ) -> GatewaySettings:
        """Settings from `overrides` (None values ignored; `allow_upstreams` are added to the
        others), then `env` (default `os.environ`), then the TOML `file`'s `[gateway]` table.
        Raises `ConfigError` naming the bad setting."""
        values = layered(file, "gateway", _ENV, env)
        extra = list((overrides or {}).get("allow_upstreams") or ())
        values.update(
            {k: v for k, v in (overrides or {}).items() if v is not None and k != "allow_upstreams"}
        )
        if extra:
            values["allow_upstreams"] = (*cls._split(values.get("allow_upstreams") or ()), *extra)
        return validated(cls, values, "gateway")
