"""llmledger's settings: `init()` (every argument checked, then handed to the runtime as a `Config`),
the `Stats` snapshot, and the default configuration read from the environment.

A bad `init()` argument is a `ConfigError` naming the setting and the range it must be in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llmledger.attribution.context import EMPTY, Attribution, make_attribution
from llmledger.errors import ConfigError
from llmledger.events.event import UsageEvent

if TYPE_CHECKING:
    from llmledger.sdk.runtime import Runtime

__all__ = ["DEFAULT_DB", "Config", "Deferred", "Stats", "default_config", "env_disabled", "init"]

log = logging.getLogger("llmledger")

DEFAULT_DB = "llmledger.db"


@dataclass(frozen=True)
class Config:
    """Runtime settings (see `llmledger.init`)."""

    ledger: str
    prices: str | None = None
    defaults: Attribution = EMPTY
    enabled: bool = True
    debug: bool = False
    on_event: Callable[[UsageEvent], object] | None = None
    max_buffer: int = 100_000
    batch_size: int = 5_000
    flush_interval: float = 0.2
    instrument: bool = True
    providers: tuple[str, ...] | None = None
    base_url_providers: tuple[tuple[str, str], ...] = ()
    on_threshold: Callable[[Any], object] | None = None
    default_output_cap: int = 4096
    reservation_ttl: float = 900.0
    journal: bool = True
    limit_timeout: float = 0.5
    on_ledger_fault: str = "open"
    server: str | None = None
    """Remote mode: the llmledger server events go to (no local ledger is opened)."""
    api_key: str | None = field(default=None, repr=False)


class Deferred(Protocol):
    """A finished call whose event is built on the writer thread (pricing off the caller's thread)."""

    def event(self) -> UsageEvent:
        """Price the call and build its event."""
        ...


@dataclass(frozen=True)
class Stats:
    """A snapshot of what this process's llmledger has done (`llmledger.stats()`)."""

    events_recorded: int
    events_pending: int
    events_dropped: int
    events_unpriced: int
    write_errors: int
    internal_errors: int
    last_write_error: str | None = None
    unpriced_models: Mapping[str, int] = field(default_factory=dict)
    calls_refused: int = 0
    """Calls a hard limit (or a throttle) refused before they were sent."""
    pricing_notes: Mapping[str, int] = field(default_factory=dict)
    """Events with a pricing note, by kind: `partially_priced` (a rate the price record lacks),
    `cost_disagreement` (a provider-reported cost differs from llmledger's price),
    `usage_normalised` (usage a host reported impossibly, normalised or clamped)."""
    journal_errors: int = 0
    """Records the journal could not write (disk full...): those calls were kept in memory only."""
    events_replayed: int = 0
    """Events this process recovered from the journals of processes that died."""
    events_quarantined: int = 0
    """Events this process could not store (a value no store holds): kept in the ledger's
    quarantine with the reason (`llmledger quarantine list|retry`)."""
    calls_unchecked: int = 0
    """Calls a limit applied to but the ledger could not decide (locked past `limit_timeout`, disk
    full...): sent under `on_ledger_fault="open"`, refused (and counted in `calls_refused` too)
    under `"closed"`."""
    last_limit_fault: str | None = None
    events_deferred: int = 0
    """Events the in-memory buffer had no room for (`max_buffer` reached while the ledger or the
    server was unreachable): kept only in the journal, delivered when it is replayed (by the next
    llmledger process that opens the same journal). Also counted in `events_dropped`."""


def env_disabled() -> bool:
    return os.environ.get("LLMLEDGER_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")


def default_config(remote: bool = True) -> Config:
    from llmledger.sdk.remote import server_settings

    server = api_key = None
    try:
        if remote:
            server, api_key = server_settings(None, None)
    except ConfigError as exc:  # from the environment: say so, and meter into the local ledger
        log.error("llmledger: LLMLEDGER_SERVER ignored: %s", exc)
    return Config(
        ledger=os.environ.get("LLMLEDGER_DB") or f"sqlite:///{DEFAULT_DB}",
        prices=os.environ.get("LLMLEDGER_PRICES") or None,
        enabled=not env_disabled(),
        server=server,
        api_key=api_key,
    )


def init(
    *,
    ledger: str | None = None,
    prices: str | os.PathLike[str] | None = None,
    enabled: bool | None = None,
    debug: bool = False,
    on_event: Callable[[UsageEvent], object] | None = None,
    tenant: str | None = None,
    user: str | None = None,
    org: str | None = None,
    feature: str | None = None,
    agent: str | None = None,
    tags: Mapping[str, str] | None = None,
    max_buffer: int = 100_000,
    flush_interval: float = 0.2,
    instrument: bool = True,
    providers: Iterable[str] | None = None,
    base_url_providers: Mapping[str, str] | None = None,
    on_threshold: Callable[[Any], object] | None = None,
    default_output_cap: int = 4096,
    reservation_ttl: float = 900.0,
    journal: bool = True,
    limit_timeout: float = 0.5,
    on_ledger_fault: str = "open",
    server: str | None = None,
    api_key: str | None = None,
) -> Runtime:
    """Configure llmledger for this process. Idempotent and thread-safe: the same settings keep the
    same runtime.

    `ledger`: a database URL or SQLite file path (default `LLMLEDGER_DB`, else `./llmledger.db`).
    `prices`: a price overrides TOML file (default `LLMLEDGER_PRICES`). `enabled=False` or the
    environment variable `LLMLEDGER_DISABLED=1` records nothing and removes the instrumentation.
    `tenant=`... `tags=` are defaults beneath every `attribute()` block. `on_event` receives every
    event; `debug` prints one line each. `instrument` patches the provider SDKs (`providers` limits
    which: "openai", "anthropic", "google"); `base_url_providers` names the provider behind other
    base URLs (`{"llm.internal:8000": "openai"}`; keys are a host, `host:port` or a URL prefix).
    Spend limits: `on_threshold(alert)` is called when a call crosses a limit's threshold (once per
    window); `default_output_cap` is the output a call without `max_tokens` is assumed to use at
    most; `reservation_ttl` (seconds) frees the reservations of a process that died mid-call.
    `journal` (default True) writes every call to the local journal before it returns, so that
    nothing is lost if the process dies (see docs/concepts.md, "Durability"); False keeps events
    in memory only until they are written.
    `limit_timeout` (seconds, default 0.5) bounds the wait for a limit decision (the ledger's write
    lock); when the ledger cannot decide in time (or at all: disk full, an internal fault),
    `on_ledger_fault` chooses: `"open"` (default) sends the call, counts it in
    `stats().calls_unchecked` and meters it; `"closed"` raises `LimitUndecided` (nothing is sent).
    Remote mode: `server` (a `llmledger serve` URL, default `LLMLEDGER_SERVER`) and `api_key` (a key
    with the ingest scope, default `LLMLEDGER_API_KEY`) send events to that server instead of a
    local ledger (none is opened); queries read it. `ConfigError` for a bad URL, a missing key,
    or both `server` and `ledger`. See docs/server.md, "Remote mode".
    """
    _check_int("max_buffer", max_buffer, 1, 10_000_000, "events")
    _check_number("flush_interval", flush_interval, 0.001, 3600.0)
    _check_int("default_output_cap", default_output_cap, 1, 10_000_000, "tokens")
    _check_number("reservation_ttl", reservation_ttl, 1.0, 30 * 86400.0)
    for name, flag in (("debug", debug), ("instrument", instrument), ("journal", journal)):
        if not isinstance(flag, bool):
            raise ConfigError(f"{name} must be True or False, got {flag!r:.80}")
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError(f"enabled must be True, False or None, got {enabled!r:.80}")
    for name, hook in (("on_event", on_event), ("on_threshold", on_threshold)):
        if hook is not None and not callable(hook):
            raise ConfigError(f"{name} must be a function (or None), got {type(hook).__name__}")
    if ledger is not None and not isinstance(ledger, (str, os.PathLike)):
        raise ConfigError(f"ledger must be a database URL or a file path, got {type(ledger).__name__}")
    if prices is not None and not isinstance(prices, (str, os.PathLike)):
        raise ConfigError(f"prices must be a file path, got {type(prices).__name__}")
    for name, path in (("ledger", ledger), ("prices", prices)):
        if path is not None and "\x00" in str(os.fspath(path)):
            raise ConfigError(f"{name} must not contain a NUL character")
    if isinstance(ledger, str) and not ledger.strip():
        raise ConfigError(
            f"ledger must be a database URL or a file path, got {ledger!r}; "
            "leave it out to use LLMLEDGER_DB or ./llmledger.db"
        )
    _check_number("limit_timeout", limit_timeout, 0.001, 60.0)
    if on_ledger_fault not in ("open", "closed"):
        raise ConfigError(
            f"on_ledger_fault must be 'open' (send unchecked calls, counted) or 'closed' (refuse them), "
            f"got {on_ledger_fault!r:.80}"
        )
    if isinstance(providers, str):
        raise ConfigError(f"providers must be a list of names, e.g. [{providers!r}], not a string")
    try:
        provider_names = None if providers is None else tuple(providers)
    except TypeError as exc:
        raise ConfigError(f"providers must be a list of names, got {type(providers).__name__}") from exc
    if base_url_providers is not None and not isinstance(base_url_providers, Mapping):
        raise ConfigError(
            f"base_url_providers must be a dict of host to provider id, got {base_url_providers!r:.80}"
        )
    hosts = tuple(sorted((base_url_providers or {}).items()))
    for key, value in hosts:
        if not isinstance(key, str) or not key.strip() or not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"base_url_providers maps non-empty strings to provider ids, got {key!r}: {value!r}"
            )
    from llmledger.sdk.remote import choose_mode

    server, api_key = choose_mode(ledger, server, api_key)
    defaults = make_attribution(tenant=tenant, user=user, org=org, feature=feature, agent=agent, tags=tags)
    base = default_config(remote=False)
    config = Config(
        ledger=os.fspath(ledger) if ledger else base.ledger,
        prices=os.fspath(prices) if prices is not None else base.prices,
        defaults=defaults,
        enabled=base.enabled if enabled is None else (enabled and not env_disabled()),
        debug=debug,
        on_event=on_event,
        max_buffer=max_buffer,
        flush_interval=flush_interval,
        instrument=instrument,
        providers=provider_names,
        base_url_providers=hosts,
        on_threshold=on_threshold,
        default_output_cap=default_output_cap,
        reservation_ttl=float(reservation_ttl),
        journal=journal,
        limit_timeout=float(limit_timeout),
        on_ledger_fault=on_ledger_fault,
        server=server,
        api_key=api_key,
    )
    from llmledger.sdk import runtime

    return runtime.configure(config)


def _check_int(name: str, value: object, low: int, high: int, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{name} must be a whole number of {unit} in [{low:,}, {high:,}], got {value!r:.80}"
        )


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number of seconds in [{low:g}, {high:g}], got {value!r:.80}")
