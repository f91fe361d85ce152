"""The process-wide runtime: configuration, pricer, ledger and background writer.

`init()` sets it up explicitly; without it, the first `track()` builds a default one (SQLite ledger
at `LLMLEDGER_DB` or `./llmledger.db`, opened by the writer thread so the caller never waits).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from llmledger._internal import internal_error, internal_error_count
from llmledger.attribution.context import EMPTY, Attribution, make_attribution
from llmledger.errors import ConfigError
from llmledger.events.event import TOKEN_FIELDS, UsageEvent
from llmledger.transport.writer import BackgroundWriter

if TYPE_CHECKING:
    from llmledger.limit.enforce import Enforcer
    from llmledger.pricing.pricer import Pricer
    from llmledger.storage.ledger import Ledger

__all__ = ["Config", "Deferred", "Runtime", "Stats", "current", "init", "shutdown"]

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


class Runtime:
    """One configured llmledger: pricer, ledger, writer and counters."""

    def __init__(self, config: Config, *, open_now: bool) -> None:
        from llmledger.pricing.overrides import Overrides
        from llmledger.pricing.pricer import Pricer

        self.config = config
        overrides = Overrides.load(config.prices) if config.prices else None
        self.pricer: Pricer = Pricer(overrides)
        self._ledger: Ledger | None = None
        self._ledger_lock = threading.Lock()
        self._unpriced_lock = threading.Lock()
        self._enforcer: Enforcer | None = None
        self.unpriced: dict[str, int] = {}
        self.writer: BackgroundWriter[UsageEvent | Deferred] = BackgroundWriter(
            self._write,
            max_buffer=config.max_buffer,
            batch_size=config.batch_size,
            flush_interval=config.flush_interval,
        )
        if open_now and config.enabled:
            _ = self.ledger

    @property
    def ledger(self) -> Ledger:
        """The ledger, opened (and migrated) on first use."""
        ledger = self._ledger
        if ledger is None:
            with self._ledger_lock:
                if self._ledger is None:
                    from llmledger.storage.ledger import Ledger

                    self._ledger = Ledger(self.config.ledger)
                ledger = self._ledger
        return ledger

    @property
    def enforcer(self) -> Enforcer:
        """Spend-limit enforcement for this runtime (created on first use)."""
        enforcer = self._enforcer
        if enforcer is None:
            from llmledger.limit.enforce import Enforcer

            with self._ledger_lock:
                if self._enforcer is None:
                    self._enforcer = Enforcer(self)
                enforcer = self._enforcer
        return enforcer

    def _write(self, batch: Sequence[UsageEvent | Deferred]) -> None:
        # Build the events of deferred calls first, in place in the writer's own list: a batch that
        # fails to write is retried as it is, so each call is priced, announced and given its event
        # id exactly once.
        items = cast("list[UsageEvent | Deferred | None]", batch)
        dropped = False
        releases = [r for item in items if (r := getattr(item, "reservation", None)) is not None]
        for i, item in enumerate(items):
            if item is not None and not isinstance(item, UsageEvent):
                try:
                    event: UsageEvent | None = item.event()
                except Exception as exc:
                    event, dropped = None, True
                    with contextlib.suppress(Exception):  # re-raised under pytest; never kill the writer
                        internal_error(exc, "building a call's event")
                items[i] = event
                if event is not None and getattr(item, "announce", True):
                    self._announce(event)
        if dropped:
            items[:] = [e for e in items if e is not None]
        written = cast("list[UsageEvent]", items)
        self.ledger.write(written, releases)
        enforcer = self._enforcer
        if enforcer is not None:
            for event in written:
                enforcer.learn(event)

    def record(self, event: UsageEvent, reservation: str | None = None) -> None:
        """Hand a finished event to the writer, the `on_event` hook and the debug printer.

        `reservation`: the spend-limit reservation the event settles (dropped when it is written).
        """
        if self.config.enabled:
            self.writer.submit(event if reservation is None else _Settling(event, reservation))
        self._announce(event)

    def record_later(self, call: Deferred) -> None:
        """Hand a finished call to the writer thread, which builds, announces and writes its event."""
        if self.config.enabled:
            self.writer.submit(call)

    def _announce(self, event: UsageEvent) -> None:
        config = self.config
        if event.cost_usd is None:
            self._note_unpriced(event)
        if not config.enabled:
            return
        if config.on_event is not None:
            try:
                config.on_event(event)
            except Exception as exc:  # the user's hook: log and go on, never break the call
                log.warning("llmledger: on_event hook raised %s: %s", type(exc).__name__, exc)
        if config.debug:
            print(debug_line(event), file=sys.stderr)

    def _note_unpriced(self, event: UsageEvent) -> None:
        key = f"{event.provider}/{event.model}"
        # An unread response (a raw response never parsed) has no usage to price: its model may well
        # have a price, so say what is unknown instead of "no price".
        unread = not event.complete and not any(getattr(event, f) for f in TOKEN_FIELDS)
        if unread:
            key += " (usage unknown)"
        with self._unpriced_lock:
            seen = self.unpriced.get(key, 0)
            self.unpriced[key] = seen + 1
        if seen:
            return
        if unread:
            log.warning(
                "llmledger: the usage of a %s/%s call is unknown; recorded without cost (cost_usd=None): %s",
                event.provider,
                event.model,
                event.unpriced_reason,
            )
        else:
            log.warning(
                "llmledger: no price for %s; recorded as unpriced (cost_usd=None): %s",
                key,
                event.unpriced_reason,
            )

    def stats(self) -> Stats:
        """Counters of this runtime."""
        c = self.writer.counters
        with self._unpriced_lock:
            unpriced = dict(self.unpriced)
        return Stats(
            events_recorded=c.written,
            events_pending=self.writer.pending,
            events_dropped=c.dropped,
            events_unpriced=sum(unpriced.values()),
            write_errors=c.write_errors,
            internal_errors=internal_error_count(),
            last_write_error=c.last_error,
            unpriced_models=unpriced,
            calls_refused=self._enforcer.refused if self._enforcer is not None else 0,
            pricing_notes=self.pricer.notes(),
        )

    def close(self, timeout: float = 10.0) -> bool:
        """Flush pending events, stop the writer and release the ledger."""
        done = self.writer.close(timeout)
        if self._ledger is not None:
            self._ledger.close()
        return done


class _Settling:
    """A `track()` event inside `guard()`: written with the reservation it settles (already announced)."""

    __slots__ = ("_event", "reservation")
    announce = False

    def __init__(self, event: UsageEvent, reservation: str) -> None:
        self._event = event
        self.reservation = reservation

    def event(self) -> UsageEvent:
        return self._event


def debug_line(e: UsageEvent) -> str:
    """One human line per event: `[llmledger] openai gpt-4o-mini tenant=acme 1234→56 tok $0.00042`."""
    who = " ".join(f"{k}={getattr(e, k)}" for k in ("tenant", "user", "feature") if getattr(e, k))
    cost = f"${e.cost_usd:.6f}".rstrip("0").rstrip(".") if e.cost_usd is not None else "unpriced"
    parts = ["[llmledger]", e.provider, e.model, who, f"{e.input_tokens}→{e.output_tokens} tok", cost]
    if e.status != "ok":
        parts.append(f"{e.status}:{e.error_type}")
    return " ".join(p for p in parts if p)


_lock = threading.RLock()
_runtime: Runtime | None = None


def _env_disabled() -> bool:
    return os.environ.get("LLMLEDGER_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")


def current() -> Runtime:
    """The active runtime, creating the default one on first use."""
    runtime = _runtime
    if runtime is None:
        with _lock:
            if _runtime is None:
                _install(_default_config(), open_now=False)
            runtime = _runtime
            assert runtime is not None
    return runtime


def _default_config() -> Config:
    return Config(
        ledger=os.environ.get("LLMLEDGER_DB") or f"sqlite:///{DEFAULT_DB}",
        prices=os.environ.get("LLMLEDGER_PRICES") or None,
        enabled=not _env_disabled(),
    )


def _install(config: Config, *, open_now: bool) -> Runtime:
    global _runtime
    runtime = Runtime(config, open_now=open_now)
    old, _runtime = _runtime, runtime
    if old is not None:
        old.close()
    return runtime


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
    """
    if max_buffer < 1 or flush_interval <= 0:
        raise ConfigError("max_buffer must be >= 1 and flush_interval > 0")
    if ledger is not None and (not isinstance(ledger, str) or not ledger.strip()):
        raise ConfigError(
            f"ledger must be a database URL or a file path, got {ledger!r}; "
            "leave it out to use LLMLEDGER_DB or ./llmledger.db"
        )
    if (
        isinstance(default_output_cap, bool)
        or not isinstance(default_output_cap, int)
        or default_output_cap < 1
    ):
        raise ConfigError(
            f"default_output_cap must be a positive number of tokens, got {default_output_cap!r}"
        )
    if not isinstance(reservation_ttl, (int, float)) or reservation_ttl <= 0:
        raise ConfigError(f"reservation_ttl must be a positive number of seconds, got {reservation_ttl!r}")
    provider_names = None if providers is None else tuple(providers)
    if isinstance(providers, str):
        raise ConfigError(f"providers must be a list of names, e.g. [{providers!r}], not a string")
    hosts = tuple(sorted((base_url_providers or {}).items()))
    for key, value in hosts:
        if not isinstance(key, str) or not key.strip() or not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"base_url_providers maps non-empty strings to provider ids, got {key!r}: {value!r}"
            )
    defaults = make_attribution(tenant=tenant, user=user, org=org, feature=feature, agent=agent, tags=tags)
    base = _default_config()
    config = Config(
        ledger=ledger or base.ledger,
        prices=os.fspath(prices) if prices is not None else base.prices,
        defaults=defaults,
        enabled=base.enabled if enabled is None else (enabled and not _env_disabled()),
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
    )
    from llmledger import instrumentation
    from llmledger.instrumentation.hosts import configure_hosts

    with _lock:
        if config.enabled and config.instrument:
            configure_hosts(dict(hosts))
            instrumentation.instrument(provider_names)
        else:
            instrumentation.uninstrument()
        if _runtime is not None and _runtime.config == config:
            return _runtime
        return _install(config, open_now=True)


def shutdown(timeout: float = 10.0) -> bool:
    """Remove the instrumentation, flush and close the runtime (a later `track()` starts a default one)."""
    global _runtime
    from llmledger import instrumentation

    with _lock:
        instrumentation.uninstrument()
        runtime, _runtime = _runtime, None
    return runtime.close(timeout) if runtime is not None else True


@atexit.register
def _flush_at_exit() -> None:
    runtime = _runtime
    if runtime is not None:
        try:
            runtime.close(timeout=10.0)
        except Exception as exc:
            internal_error(exc, "flush at exit")
