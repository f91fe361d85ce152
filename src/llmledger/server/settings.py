"""Settings of `llmledger serve`: arguments, then `LLMLEDGER_*` environment variables, then a TOML file.

| setting | environment | default |
|---|---|---|
| host | `LLMLEDGER_HOST` | 127.0.0.1 |
| port | `LLMLEDGER_PORT` | 8787 |
| ledger | `LLMLEDGER_DB` | sqlite:///llmledger.db |
| prices | `LLMLEDGER_PRICES` | none |
| admin_key | `LLMLEDGER_ADMIN_KEY` | none (seeds an admin key at start-up) |
| max_body_bytes | `LLMLEDGER_MAX_BODY_BYTES` | 8 MiB (after gzip decoding too) |
| max_batch | `LLMLEDGER_MAX_BATCH` | 10,000 events per request |
| rate_limit | `LLMLEDGER_RATE_LIMIT` | 200 requests per second per key (burst: twice that) |
| limit_timeout | `LLMLEDGER_LIMIT_TIMEOUT` | 0.5 s: the most a limit decision waits for the ledger |
| on_ledger_fault | `LLMLEDGER_ON_LEDGER_FAULT` | open (undecided: granted unchecked; closed: 503) |
| default_output_cap | `LLMLEDGER_DEFAULT_OUTPUT_CAP` | 4096 tokens (a call without an output cap) |
| reservation_ttl | `LLMLEDGER_RESERVATION_TTL` | 900 s (a reservation never settled is dropped) |
| metrics_public | `LLMLEDGER_METRICS_PUBLIC` | false: `/metrics` needs a read key bound to no tenant |
| webhooks | (TOML only) | none: `[[server.webhooks]]` tables `{url, secret}` receive threshold alerts |
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from llmledger.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["ServerSettings", "Webhook", "layered", "validated"]

_TABLES = ("server", "gateway")
"""The tables of a settings file llmledger reads (`[server]`, `[gateway]`)."""

_ENV = {
    "host": "LLMLEDGER_HOST",
    "port": "LLMLEDGER_PORT",
    "ledger": "LLMLEDGER_DB",
    "prices": "LLMLEDGER_PRICES",
    "admin_key": "LLMLEDGER_ADMIN_KEY",
    "max_body_bytes": "LLMLEDGER_MAX_BODY_BYTES",
    "max_batch": "LLMLEDGER_MAX_BATCH",
    "rate_limit": "LLMLEDGER_RATE_LIMIT",
    "limit_timeout": "LLMLEDGER_LIMIT_TIMEOUT",
    "on_ledger_fault": "LLMLEDGER_ON_LEDGER_FAULT",
    "default_output_cap": "LLMLEDGER_DEFAULT_OUTPUT_CAP",
    "reservation_ttl": "LLMLEDGER_RESERVATION_TTL",
    "metrics_public": "LLMLEDGER_METRICS_PUBLIC",
}


class Webhook(BaseModel):
    """Where threshold alerts are POSTed: an http(s) URL and the secret that signs each body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://[^\s/]+", max_length=2048)
    secret: SecretStr = Field(min_length=16, description="HMAC-SHA256 key (at least 16 characters)")


class ServerSettings(BaseModel):
    """Validated settings of one server process."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    ledger: str = "sqlite:///llmledger.db"
    prices: str | None = None
    admin_key: SecretStr | None = None
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=1024**3)
    max_batch: int = Field(10_000, ge=1, le=1_000_000)
    rate_limit: float = Field(200.0, gt=0, le=1e6)
    """Requests per second per key; bursts up to twice that."""
    limit_timeout: float = Field(0.5, ge=0.001, le=60.0)
    on_ledger_fault: Literal["open", "closed"] = "open"
    default_output_cap: int = Field(4096, ge=1, le=10_000_000)
    reservation_ttl: float = Field(900.0, ge=1.0, le=30 * 86400.0)
    metrics_public: bool = False
    """`GET /metrics` without a key (its series name tenants and their spend)."""
    webhooks: tuple[Webhook, ...] = ()

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        file: str | Path | None = None,
    ) -> ServerSettings:
        """Settings from `overrides` (None values ignored), then `env` (default `os.environ`), then
        the TOML `file` (a `[server]` table or top-level keys). Raises `ConfigError` naming the bad
        setting."""
        values = layered(file, "server", _ENV, env, top_level=True)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return validated(cls, values, "server")


_Settings = TypeVar("_Settings", bound=BaseModel)


def layered(
    file: str | Path | None,
    table: str,
    env_map: Mapping[str, str],
    env: Mapping[str, str] | None,
    *,
    top_level: bool = False,
) -> dict[str, Any]:
    """Setting values from the TOML `file`'s `[table]` (with `top_level`, when it has none: its
    top-level keys but the other tables llmledger reads), then from the environment variables
    `env_map` names (`env`, default `os.environ`), the latter winning. Raises `ConfigError` for a
    file that cannot be read or a table that is not one."""
    values: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the settings file {file}: {exc}") from exc
        rest = {k: v for k, v in data.items() if k not in _TABLES} if top_level else {}
        found = data.get(table, rest)
        if not isinstance(found, dict):
            raise ConfigError(f"{file}: [{table}] must be a table")
        values.update(found)
    environ = os.environ if env is None else env
    for name, var in env_map.items():
        if environ.get(var):
            values[name] = environ[var]
    return values


def validated(cls: type[_Settings], values: Mapping[str, Any], what: str) -> _Settings:
    """`cls(**values)`, or `ConfigError` naming each bad setting of the `what` settings."""
    try:
        return cls(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid {what} settings: {problems}") from None
