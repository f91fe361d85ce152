"""The writer thread's side of remote mode: items in, events delivered to the server, journal acked.

`RemoteSink` is the `BackgroundWriter`'s sink when `init(server=...)`. For each batch it builds the
events of finished calls (once, kept across retries, exactly as `LedgerSink`), checks each against
the bounds every store holds, and posts the good ones to `POST /api/v1/events` in one gzipped
request over a kept-alive connection. Only once the server answered are the batch's journal
records acknowledged: while the server is unreachable the events stay in the journal (and in the
writer's bounded buffer) and the writer retries with backoff; the server stores each `event_id`
once, so a batch retried after a lost answer is never counted twice.

Items the server refuses (its per-item `rejected` list) and events that fail the local bounds are
counted in `stats().events_quarantined` and logged with the reason (there is no local quarantine
table in remote mode). What dead processes left in the journal is replayed to the server too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from llmledger.errors import ServerError, ValidationError
from llmledger.events.checks import event_problem
from llmledger.sdk import spool
from llmledger.sdk.sink import LedgerSink, Ready
from llmledger.transport.writer import describe_error

if TYPE_CHECKING:
    from llmledger.sdk.remote import Remote
    from llmledger.sdk.runtime import Runtime

__all__ = ["RemoteSink"]

log = logging.getLogger("llmledger")


class RemoteSink(LedgerSink):
    """The `BackgroundWriter` sink of a remote-mode runtime (runs on the writer thread only)."""

    def __init__(self, runtime: Runtime, remote: Remote) -> None:
        super().__init__(runtime)
        self.remote = remote
        self.failing = False
        """True from a failed delivery until the next one succeeds (`close()` then waits less)."""

    def __call__(self, batch: Sequence[Any]) -> None:
        items = cast("list[Any]", batch)
        for i, item in enumerate(items):
            if item.__class__ is not Ready:
                items[i] = self._ready(item)
        rows = cast("list[Ready]", items)
        self._deliver(rows)
        self._acknowledge(rows)

    def _deliver(self, rows: list[Ready]) -> None:
        """Post the good rows; mark those the server refuses. Raises (the writer retries the batch)
        when the server cannot be reached or refuses the whole request."""
        good = [r for r in rows if r.problem is None]
        if good:
            try:
                answer = self.remote.http.request(
                    "POST", "/api/v1/events", json_body={"events": [_wire(r) for r in good]}
                ).body
            except ValidationError as exc:
                if len(good) > 1 or exc.status == 413:
                    self._failed(exc)
                    raise  # the writer halves the batch and retries: the item at fault is found
                good[0].problem = f"the server refused the event: {exc}"
            except ServerError as exc:
                self._failed(exc)
                raise
            else:
                for item in (answer or {}).get("rejected") or []:
                    index = item.get("index") if isinstance(item, dict) else None
                    if isinstance(index, int) and 0 <= index < len(good):
                        good[index].problem = f"the server refused the event: {item.get('error')}"
        if self.failing:
            log.warning("llmledger: the server at %s answers again; delivering", self.remote.server)
        self.failing = False
        bad = [r for r in rows if r.problem is not None]
        self._release([r.reservation for r in bad if r.reservation is not None])
        if bad:
            self.quarantined += len(bad)
            log.warning(
                "llmledger: %d event(s) not stored (counted in stats().events_quarantined): %s",
                len(bad),
                bad[0].problem,
            )

    def _release(self, reservations: list[str]) -> None:
        """Drop reservations whose events the server will never ingest (best effort: they expire)."""
        for reservation in reservations:
            self.runtime.enforcer.release(reservation)

    def _drop(self, reservations: list[str]) -> None:
        """Drop a dead process's reservations on the server; raises `ServerError` when one could not
        be (the journal file is kept and replayed again)."""
        if reservations:
            from llmledger.sdk.remote_limits import RemoteEnforcer

            enforcer = self.runtime.enforcer
            assert isinstance(enforcer, RemoteEnforcer)
            for reservation in dict.fromkeys(reservations):
                enforcer.drop(reservation)

    def _failed(self, exc: Exception) -> None:
        if not self.failing:
            log.warning(
                "llmledger: delivering events to %s failed (%s); they stay in the journal and are retried",
                self.remote.server,
                describe_error(exc),
            )
        self.failing = True

    # -- replay -----------------------------------------------------------------------------------

    def replay(self) -> int:
        """Deliver what dead processes left in this server's journal (idempotent by event id);
        returns how many events were recovered. Never raises: a failure leaves the files for the
        next attempt (all of them while the server is unreachable)."""
        journal = self.runtime.journal
        if journal is None:
            return 0
        recovered = spool.replay_orphans(self.runtime, journal, self._replayed, unreachable=(ServerError,))
        self.replayed += recovered
        return recovered

    def _replayed(self, found: spool.Replayed) -> None:
        rows = [Ready(e, None, (), event_problem(e)) for e in found.events]
        size = self.runtime.config.batch_size
        for i in range(0, len(rows), size):
            self._deliver(rows[i : i + size])
        self._drop(found.releases)  # before its files go: a kill while holding one releases it
        if found.bad:
            self.quarantined += len(found.bad)
            log.warning(
                "llmledger: %d unreadable journal record(s) dropped: %s", len(found.bad), found.bad[0][1]
            )

    def tick(self) -> None:
        """The writer thread, every few seconds: rotate a grown journal, replay dead processes'."""
        journal = self.runtime.journal
        if journal is not None:
            journal.maintain()
            self.replay()


def _wire(row: Ready) -> dict[str, Any]:
    """An event's wire form; with the reservation it settles, which the server drops on ingest."""
    data: dict[str, Any] = row.event.to_dict()
    if row.reservation is not None:
        data["reservation_id"] = row.reservation
    return data
