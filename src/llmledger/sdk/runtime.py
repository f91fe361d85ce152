"""The process-wide runtime: configuration, pricer, ledger and background writer.

`init()` sets it up explicitly; without it, the first `track()` builds a default one (SQLite ledger
at `LLMLEDGER_DB` or `./llmledger.db`, opened by the writer thread so the caller never waits).
The settings and their checks are in `sdk/config.py`, what is done with each event besides storing
it (hook, debug line, unpriced counts) in `sdk/announce.py`, the writer thread's side in `sdk/sink.py`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from llmledger._internal import internal_error, internal_error_count
from llmledger.errors import ConfigError
from llmledger.events.event import UsageEvent
from llmledger.events.ids import IdStream
from llmledger.identity import forget_learned
from llmledger.sdk import journals, spool
from llmledger.sdk.announce import Announcer, debug_line
from llmledger.sdk.config import (
    DEFAULT_DB,
    Config,
    Deferred,
    Stats,
    default_config,
    init,
)
from llmledger.sdk.sink import LedgerSink, Tracked
from llmledger.transport.journal import Journal
from llmledger.transport.writer import BackgroundWriter

if TYPE_CHECKING:
    from llmledger.engine.limits import Enforcer
    from llmledger.instrumentation.call import Call
    from llmledger.pricing.pricer import Pricer
    from llmledger.sdk.remote import Remote
    from llmledger.storage.ledger import Ledger

__all__ = [
    "DEFAULT_DB",
    "Config",
    "Deferred",
    "Runtime",
    "Stats",
    "configure",
    "current",
    "debug_line",
    "init",
    "shutdown",
]

log = logging.getLogger("llmledger")


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
        self.announcer = Announcer(config)
        self.deferred = 0
        self.ids = IdStream()
        """The ids of calls metered without a journal (with one: the journal's)."""
        self.remote: Remote | None = None
        journaled = config.enabled and config.journal
        self.journal: Journal | None
        if config.server is not None:
            from llmledger.sdk.remote import Remote
            from llmledger.sdk.remote_sink import RemoteSink

            self.remote = Remote(config.server, config.api_key or "")
            self.journal = journals.journal_for(config.ledger, self.remote.journal_dir) if journaled else None
            self.sink: LedgerSink = RemoteSink(self, self.remote)
        else:
            self.journal = journals.journal_for(config.ledger) if journaled else None
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
        """Journal the start of a call about to be sent (the caller's thread: a sequence number and
        one memory copy; the event id is derived from them later, on the writer thread)."""
        call.runtime = self
        journal = self.journal
        if journal is None:
            call.ids = ids = self.ids
            call.seq = ids.next()
        else:
            call.ids = ids = journal.ids
            call.seq = seq = ids.next()
            call.journaled = journal.append(spool.begin_record(call, seq, call.wall_us))

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
                start = call.journaled
                call.journaled = end.pair if start is end and end is not None else (start, end)
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
        self.announcer(event)

    def stats(self) -> Stats:
        """Counters of this runtime."""
        c = self.writer.counters
        unpriced = self.announcer.unpriced()
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
        self.announcer.after_fork()
        self._enforcer = None
        self.ids = IdStream()  # never the parent's numbers
        pricer: Any = self.pricer
        for owner in (pricer, getattr(pricer, "_catalog", None)):
            if owner is not None and hasattr(owner, "_lock"):
                owner._lock = threading.Lock()

    def close(self, timeout: float = 10.0) -> bool:
        """Flush pending events, stop the writer and release the ledger."""
        remote = self.remote
        give_up = None
        if remote is not None and self.journal is not None:
            # the server is down or refuses the key: the journal keeps what is not delivered, and a
            # failure will not heal while the process exits (a wrong key waited out the timeout)
            sink = self.sink
            give_up = lambda: bool(getattr(sink, "failing", False))  # noqa: E731
            if give_up():
                timeout = min(timeout, 1.0)
        done = self.writer.close(timeout, give_up)
        if self.journal is not None:
            journals.release_journal(self.journal)
        if self._ledger is not None:
            self._ledger.close()
        if remote is not None:
            remote.close()
        return done


_lock = threading.RLock()
_runtime: Runtime | None = None
_last_config: Config | None = None
"""The configuration of the runtime `shutdown()` closed: a later call reopens ITS ledger or server,
never the default `./llmledger.db` (events would be split across two ledgers)."""


def current() -> Runtime:
    """The active runtime; on first use the default one, or after `shutdown()` the last one's
    configuration again (its ledger or server)."""
    runtime = _runtime
    if runtime is None:
        with _lock:
            if _runtime is None:
                if _last_config is not None:
                    log.warning(
                        "llmledger was shut down; reopening the ledger of the last init() for this call"
                    )
                _install(_last_config or default_config(), open_now=False)
            runtime = _runtime
            assert runtime is not None
    return runtime


def _install(config: Config, *, open_now: bool) -> Runtime:
    global _runtime
    runtime = Runtime(config, open_now=open_now)
    old, _runtime = _runtime, runtime
    if old is not None:
        old.close()
    forget_learned()  # after the old writer's last events: names it learned never admit ours
    return runtime


def configure(config: Config) -> Runtime:
    """Instrument the SDKs as `config` says and install its runtime (`init()`'s last step); the same
    settings keep the same runtime."""
    from llmledger import instrumentation
    from llmledger.instrumentation.hosts import configure_hosts

    global _last_config
    with _lock:
        _last_config = None
        if config.enabled and config.instrument:
            configure_hosts(dict(config.base_url_providers))
            instrumentation.instrument(config.providers)
        else:
            instrumentation.uninstrument()
        if _runtime is not None and _runtime.config == config:
            return _runtime
        return _install(config, open_now=True)


def shutdown(timeout: float = 10.0) -> bool:
    """Remove the instrumentation, flush and close the runtime. A later `track()` or query reopens
    the same ledger (or server) with a warning; `init()` starts anew."""
    global _runtime, _last_config
    from llmledger import instrumentation

    with _lock:
        instrumentation.uninstrument()
        runtime, _runtime = _runtime, None
        if runtime is not None:
            _last_config = runtime.config
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
