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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llmledger._internal import internal_error, internal_error_count
from llmledger.attribution.context import EMPTY, Attribution, make_attribution
from llmledger.errors import ConfigError
from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.events.schema import TOKEN_FIELDS
from llmledger.identity import forget_learned
from llmledger.sdk import spool
from llmledger.sdk.sink import LedgerSink, Tracked
from llmledger.transport.journal import Journal
from llmledger.transport.writer import BackgroundWriter

if TYPE_CHECKING:
    from llmledger.engine.limits import Enforcer
    from llmledger.instrumentation.call import Call
    from llmledger.pricing.pricer import Pricer
    from llmledger.sdk.remote import Remote
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
        self.deferred = 0
        self.remote: Remote | None = None
        journaled = config.enabled and config.journal
        self.journal: Journal | None
        if config.server is not None:
            from llmledger.sdk.remote import Remote
            from llmledger.sdk.remote_sink import RemoteSink

            self.remote = Remote(config.server, config.api_key or "")
            self.journal = spool.journal_for(config.ledger, self.remote.journal_dir) if journaled else None
            self.sink: LedgerSink = RemoteSink(self, self.remote)
        else:
            self.journal = spool.journal_for(config.ledger) if journaled else None
            self.sink = LedgerSink(self)
        self.writer: BackgroundWriter[UsageEvent | Deferred] = BackgroundWriter(
            self.sink,
            max_buffer=config.max_buffer,
            batch_size=config.batch_size,
            flush_interval=config.flush_interval,
            tick=self.sink.tick,
        )
        if open_now and config.enabled:
            if self.remote is None:
                _ = self.ledger
            else:  # the writer replays what dead processes left, off the caller's thread
                self.writer._start()

    @property
    def ledger(self) -> Ledger:
        """The ledger, opened (and migrated) on first use. `ConfigError` in remote mode (the
        server holds the ledger)."""
        ledger = self._ledger
        if ledger is None:
            if self.remote is not None:
                raise ConfigError(
                    f"this process meters into the llmledger server at {self.remote.server} (remote "
                    "mode): there is no local ledger; use the server's API for this"
                )
            with self._ledger_lock:
                if self._ledger is None:
                    from llmledger.storage.ledger import Ledger

                    self._ledger = Ledger(self.config.ledger)
                    self.sink.replay()
                ledger = self._ledger
        return ledger

    # -- the journal ------------------------------------------------------------------------------

    def begin(self, call: Call) -> None:
        """Journal the start of a call about to be sent (the caller's thread; one `write`)."""
        call.runtime = self
        call.event_id = event_id = uuid7()
        journal = self.journal
        if journal is not None:
            call.journaled = journal.append(spool.begin_record(call, event_id, call.wall_us))

    @property
    def enforcer(self) -> Enforcer:
        """Spend-limit enforcement for this runtime (created on first use)."""
        enforcer = self._enforcer
        if enforcer is None:
            if self.remote is not None:
                from llmledger.sdk.remote_limits import RemoteEnforcer

                with self._ledger_lock:
                    if self._enforcer is None:
                        self._enforcer = RemoteEnforcer(self)  # type: ignore[assignment]
                    enforcer = self._enforcer
                assert enforcer is not None
                return enforcer
            from llmledger.engine.limits import EnforcementPolicy, Enforcer

            config = self.config
            policy = EnforcementPolicy(
                limit_timeout=config.limit_timeout,
                on_ledger_fault=config.on_ledger_fault,
                default_output_cap=config.default_output_cap,
                reservation_ttl=config.reservation_ttl,
            )
            ledger = self.ledger  # opened outside the lock (opening takes it)
            with self._ledger_lock:
                if self._enforcer is None:
                    self._enforcer = Enforcer(ledger.limits, self.pricer, policy, config.on_threshold)
                enforcer = self._enforcer
                assert enforcer is not None
        return enforcer

    def record(self, event: UsageEvent, reservation: str | None = None) -> None:
        """Hand a finished event to the writer, the `on_event` hook and the debug printer.

        `reservation`: the spend-limit reservation the event settles (dropped when it is written).
        """
        if self.config.enabled:
            journal = self.journal
            segment = None if journal is None else journal.append(spool.track_record(event, reservation))
            if segment is None and reservation is None:
                self.writer.submit(event)
            elif not self.writer.submit(Tracked(event, reservation, segment)) and segment is not None:
                self._deferred()
        self._announce(event)

    def record_later(self, call: Call) -> None:
        """Journal a finished call, then hand it to the writer thread, which builds, announces and
        writes its event."""
        if self.config.enabled:
            journal = self.journal
            if journal is not None:
                end = journal.append(spool.end_record_of(call))
                call.journaled = (call.journaled, end)
            if not self.writer.submit(call) and journal is not None and None not in call.journaled:
                self._deferred()

    def _deferred(self) -> None:
        # The buffer is full, but the journal holds the event: it is delivered when the journal is
        # replayed (by the next process), not lost.
        with self._unpriced_lock:
            self.deferred += 1
            first = self.deferred == 1
        if first:
            log.warning(
                "llmledger: the event buffer is full (%d; the %s is slow or unreachable): further events "
                "are kept in the journal only and delivered when it is replayed (stats().events_deferred)",
                self.config.max_buffer,
                "server" if self.remote is not None else "ledger",
            )

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
            journal_errors=self.journal.errors if self.journal is not None else 0,
            events_replayed=self.sink.replayed,
            events_quarantined=self.sink.quarantined,
            calls_unchecked=self._enforcer.unchecked if self._enforcer is not None else 0,
            last_limit_fault=self._enforcer.last_fault if self._enforcer is not None else None,
            events_deferred=self.deferred,
        )

    def after_fork(self) -> None:
        """In a forked child: locks another thread of the parent may have held at the fork are
        replaced, and limit enforcement starts afresh (the writer, journal and database pool
        reset themselves)."""
        self._ledger_lock = threading.Lock()
        self._unpriced_lock = threading.Lock()
        self._enforcer = None
        pricer: Any = self.pricer
        for owner in (pricer, getattr(pricer, "_catalog", None)):
            if owner is not None and hasattr(owner, "_lock"):
                owner._lock = threading.Lock()

    def close(self, timeout: float = 10.0) -> bool:
        """Flush pending events, stop the writer and release the ledger."""
        remote = self.remote
        if remote is not None and getattr(self.sink, "failing", False) and self.journal is not None:
            timeout = min(timeout, 1.0)  # the server is down: the journal keeps what is not delivered
        done = self.writer.close(timeout)
        if self.journal is not None:
            spool.release_journal(self.journal)
        if self._ledger is not None:
            self._ledger.close()
        if remote is not None:
            remote.close()
        return done


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


def _default_config(remote: bool = True) -> Config:
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
        enabled=not _env_disabled(),
        server=server,
        api_key=api_key,
    )


def _install(config: Config, *, open_now: bool) -> Runtime:
    global _runtime
    runtime = Runtime(config, open_now=open_now)
    old, _runtime = _runtime, runtime
    if old is not None:
        old.close()
    forget_learned()  # after the old writer's last events: names it learned never admit ours
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
    base = _default_config(remote=False)
    config = Config(
        ledger=os.fspath(ledger) if ledger else base.ledger,
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
        journal=journal,
        limit_timeout=float(limit_timeout),
        on_ledger_fault=on_ledger_fault,
        server=server,
        api_key=api_key,
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


def _check_int(name: str, value: object, low: int, high: int, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{name} must be a whole number of {unit} in [{low:,}, {high:,}], got {value!r:.80}"
        )


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number of seconds in [{low:g}, {high:g}], got {value!r:.80}")


def shutdown(timeout: float = 10.0) -> bool:
    """Remove the instrumentation, flush and close the runtime (a later `track()` starts a default one)."""
    global _runtime
    from llmledger import instrumentation

    with _lock:
        instrumentation.uninstrument()
        runtime, _runtime = _runtime, None
    closed = runtime.close(timeout) if runtime is not None else True
    forget_learned()
    return closed


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    runtime = _runtime
    if runtime is not None:
        runtime.after_fork()


def _before_fork() -> None:
    # Load the price catalogue in the parent before a fork: a child that had to load it would
    # import modules, and an import another parent thread was in the middle of at the fork would
    # leave the child waiting for its module lock forever (CPython does not reset those locks).
    runtime = _runtime
    if runtime is not None and runtime.config.enabled:
        with contextlib.suppress(Exception):
            _ = runtime.pricer.catalog


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


@atexit.register
def _flush_at_exit() -> None:
    runtime = _runtime
    if runtime is not None:
        try:
            runtime.close(timeout=10.0)
        except Exception as exc:
            internal_error(exc, "flush at exit")
