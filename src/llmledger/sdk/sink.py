"""The writer thread's side of a runtime: items in, events in the ledger, bad rows in quarantine.

`LedgerSink` is the `BackgroundWriter`'s sink. For each batch it builds the events of finished calls
(once: the writer keeps the built batch when it retries), checks each event against the bounds
every store holds (`event_problem`), and writes the good ones in one transaction, with the
quarantined rows and the reservations the batch settles. If the ledger refuses the batch for a
reason of the data (not the database being unavailable), it splits the batch to find the rows at
fault and quarantines them, so everything else is written. Then it acknowledges the batch's
journal records. It also replays what dead processes left in the journal (`replay`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from llmledger._internal import internal_error
from llmledger.events.checks import event_problem
from llmledger.events.event import UsageEvent
from llmledger.sdk import spool
from llmledger.transport.journal import Journal, Segment
from llmledger.transport.writer import describe_error

if TYPE_CHECKING:
    from llmledger.sdk.runtime import Runtime
    from llmledger.storage.ledger import Ledger

__all__ = ["LedgerSink", "Ready", "Tracked", "acknowledge", "is_transient", "store"]

log = logging.getLogger("llmledger")


class Tracked:
    """A `track()` event (already announced), with the reservation it settles inside `guard()` and
    its journal segment."""

    __slots__ = ("_event", "journaled", "reservation")
    announce = False

    def __init__(self, event: UsageEvent, reservation: str | None, segment: Segment | None) -> None:
        self._event = event
        self.reservation = reservation
        self.journaled = (segment,)

    def event(self) -> UsageEvent:
        return self._event


class Ready:
    """A writer item whose event is built: what to write, settle, acknowledge — or quarantine."""

    __slots__ = ("event", "journaled", "problem", "reservation")

    def __init__(
        self, event: Any, reservation: str | None, journaled: tuple[Segment | None, ...], problem: str | None
    ) -> None:
        self.event = event
        self.reservation = reservation
        self.journaled = journaled
        self.problem = problem


def is_transient(exc: BaseException) -> bool:
    """True when a write failed because the database is unavailable (locked, full, gone...): the
    batch is retried as it is. Anything else is a fault of the data: the batch is split."""
    import sqlalchemy as sa  # not at import time: `import llmledger` stays light

    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, OSError))


def store(ledger: Ledger, rows: list[Ready], releases: list[str]) -> list[Any]:
    """Write the events of `rows` in one transaction, with the rows that have a `problem` into the
    quarantine and the reservations in `releases` dropped; returns the alerts the write fired.

    If the ledger refuses them for a reason of the data (not the database being unavailable: that
    raises, for the writer to retry the batch), the rows at fault are found (their `problem` set)
    and quarantined, so that nothing valid is lost because of a bad neighbour. Shared by every
    writer of the ledger (the SDK's runtime, the gateway's recorder)."""
    good = [r for r in rows if r.problem is None]
    try:
        return ledger.write([r.event for r in good], releases, LedgerSink._quarantine(rows))
    except Exception as exc:
        if is_transient(exc):
            raise
    alerts = LedgerSink._isolate(ledger, good)  # marks the rows at fault; writes the others
    try:
        ledger.write([], releases, LedgerSink._quarantine(rows))
    except Exception as again:
        if is_transient(again):
            raise
        log.error("llmledger: quarantining failed (%s); rows dropped", describe_error(again))
        ledger.write([], releases)
    return alerts


def acknowledge(journal: Journal | None, rows: Sequence[Ready]) -> None:
    """The rows are committed (or delivered): acknowledge their journal records."""
    if journal is not None:
        counts: dict[Segment, int] = {}
        for row in rows:
            for segment in row.journaled:
                if segment is not None:
                    counts[segment] = counts.get(segment, 0) + 1
        journal.done_all(counts)


class LedgerSink:
    """The `BackgroundWriter` sink of a runtime (runs on the writer thread only)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.quarantined = 0
        """Events this process moved to the quarantine."""
        self.replayed = 0
        """Events this process recovered from the journals of dead processes."""
        self._full = False

    def __call__(self, batch: Sequence[Any]) -> None:
        # Build in place, in the writer's own list: a batch that fails to write is retried as it is,
        # so each call is priced, announced and given its event exactly once.
        items = cast("list[Any]", batch)
        for i, item in enumerate(items):
            if item.__class__ is not Ready:
                items[i] = self._ready(item)
        rows = cast("list[Ready]", items)
        self._store(self.runtime.ledger, rows)
        self._acknowledge(rows)
        enforcer = self.runtime._enforcer
        if enforcer is not None:
            for row in rows:
                if row.problem is None:
                    enforcer.learn(row.event)

    def _acknowledge(self, rows: list[Ready]) -> None:
        """The batch is committed (or delivered): acknowledge its journal records."""
        acknowledge(self.runtime.journal, rows)

    def _ready(self, item: Any) -> Ready:
        reservation = getattr(item, "reservation", None)
        journaled = getattr(item, "journaled", None)
        segments = journaled if isinstance(journaled, tuple) else ()
        if isinstance(item, UsageEvent):
            return Ready(item, None, (), event_problem(item))
        try:
            event = item.event()
        except Exception as exc:
            with contextlib.suppress(Exception):  # re-raised under pytest; never kill the writer
                internal_error(exc, "building a call's event")
            reason = f"building the event failed: {type(exc).__name__}: {exc}"
            return Ready(_Unbuilt(getattr(item, "event_id", None), repr(item)), reservation, segments, reason)
        if getattr(item, "announce", True):
            self.runtime._announce(event)
        return Ready(event, reservation, segments, event_problem(event))

    def _store(self, ledger: Ledger, rows: list[Ready]) -> None:
        releases = [r.reservation for r in rows if r.reservation is not None]
        if self._full:  # the last write found the disk full: give the WAL's space back first
            with contextlib.suppress(Exception):
                ledger.checkpoint()
        try:
            alerts = store(ledger, rows, releases)
            self._full = False
        except Exception as exc:
            if is_transient(exc):
                self._full = "full" in str(exc)
            raise
        if alerts:  # thresholds the committed spend crossed (issue 8 part 5): announce once written
            self.runtime.enforcer.announce(alerts)
        bad = sum(1 for r in rows if r.problem is not None)
        if bad:
            self.quarantined += bad
            log.warning(
                "llmledger: %d event(s) quarantined (see `llmledger quarantine list`): %s",
                bad,
                next(r.problem for r in rows if r.problem is not None),
            )

    @staticmethod
    def _isolate(ledger: Ledger, rows: list[Ready]) -> list[Any]:
        # Split until each failing part is one row; a transient failure stops the search (the
        # batch is retried, and rows found at fault so far stay marked). Returns the alerts fired.
        stack = [rows]
        alerts: list[Any] = []
        while stack:
            part = stack.pop()
            try:
                alerts += ledger.write([r.event for r in part])
            except Exception as exc:
                if is_transient(exc):
                    raise
                if len(part) == 1:
                    part[0].problem = describe_error(exc)
                else:
                    mid = len(part) // 2
                    stack += [part[mid:], part[:mid]]
        return alerts

    @staticmethod
    def _quarantine(rows: list[Ready]) -> list[tuple[str | None, str, str]]:
        from llmledger.storage.quarantine import record_of

        return [
            (getattr(r.event, "event_id", None), r.problem, record_of(r.event))
            for r in rows
            if r.problem is not None
        ]

    # -- replay -----------------------------------------------------------------------------------

    def replay(self) -> int:
        """Write what dead processes left in the journal (idempotent by event id); returns how
        many events were recovered. Never raises: a ledger fault leaves the files for next time."""
        runtime = self.runtime
        journal = runtime.journal
        if journal is None or runtime._ledger is None:
            return 0
        recovered = spool.replay_orphans(runtime, journal, self._replayed)
        self.replayed += recovered
        return recovered

    def _replayed(self, found: spool.Replayed) -> None:
        # One dead owner's records: its events (and its unreadable records, quarantined) in
        # batches, then the reservations it held.
        ledger = self.runtime.ledger
        rows = [Ready(e, None, (), event_problem(e)) for e in found.events]
        for line, reason in found.bad:
            rows.append(Ready(_Unbuilt(None, line.decode("utf-8", "replace")), None, (), reason))
        size = self.runtime.config.batch_size
        for i in range(0, len(rows), size):
            self._store(ledger, rows[i : i + size])
        ledger.write([], found.releases)

    def tick(self) -> None:
        """The writer thread, every few seconds: rotate a grown journal, replay dead processes'."""
        journal = self.runtime.journal
        if journal is not None:
            journal.maintain()
            if self.runtime._ledger is not None:
                self.replay()


class _Unbuilt:
    """What is kept of an item whose event could not be built (for the quarantine)."""

    def __init__(self, event_id: str | None, what: str) -> None:
        self.event_id = event_id
        self.what = what

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "unbuilt": self.what[:100_000]}
