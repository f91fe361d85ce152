"""Where the gateway's events go: journaled on disk first (a killed gateway loses nothing it has
answered, nor any call it had started), then written to the engine's ledger in batches by a
background thread.

The journal is the SDK's (`transport/journal.py`). Its lines:

- `B[event_id, wall_us, provider, endpoint, requested_model, attribution, reservation_id, stream]`
  — a metered call is about to be forwarded (written before its reservation is made and before
  anything is sent upstream); acknowledged with the call's event, once that is committed.
- `[...]` — an event: its field values in field order (JSON), acknowledged once committed.
- `R<reservation_id>` — the previous version's reservation line (still read on replay).

At start-up, what a dead gateway process left in the same journal directory is written first
(idempotent by `event_id`): its events, and for each call it had started without an event, an
*interrupted* event (`status="error"`, `error_type="ProcessExited"`, `estimated`, unpriced: its
usage is unknown and the provider may have billed it), under the call's own event id; the
reservations of its calls in flight are released.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from llmledger._internal import internal_error
from llmledger.engine import Engine
from llmledger.errors import InvalidEventError
from llmledger.events.event import UsageEvent
from llmledger.gateway.meter import INTERRUPTED, Metering, begin_line, interrupted_event
from llmledger.sdk.sink import Ready, acknowledge, store
from llmledger.sdk.spool import Replayed, replay_orphans
from llmledger.storage.engine import normalize_url
from llmledger.transport.journal import Journal, Segment
from llmledger.transport.writer import BackgroundWriter

__all__ = ["INTERRUPTED", "Recorder", "decode", "encode", "journal_dir"]

log = logging.getLogger("llmledger.gateway")

_Recorded = tuple[UsageEvent, Segment | None, str | None, Segment | None]
"""An event queued for the ledger: its journal line, the reservation its write drops, and that
reservation's journal line."""

FLUSH_INTERVAL = 0.5
"""Seconds between the writer's batches. Each batch has a fixed cost (a transaction and the
rollups' statements: ~15 ms of the writer thread on the bench machine) whatever its size: at 0.1 s
and one client (~200 calls/s) that was 0.9 ms of CPU per call, more than the event loop's own work;
at 0.5 s, 0.2-0.5 ms (bench note in docs/performance.md). Events are journaled before they are
queued, and a call's reservation holds its actual use until its event is written, so a later write
loses nothing and lets no spend through; only the ledger's view lags by up to this long."""

_NAMES = tuple(f.name for f in dataclasses.fields(UsageEvent))
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
_VALUES = operator.attrgetter(*_NAMES)


def _decimal(value: Any) -> str:
    return str(value)


def encode(event: UsageEvent) -> bytes:
    """One event as a journal line: its field values in field order (JSON; Decimal as strings, the
    timestamp in RFC 3339). A quarter of the wire form's cost: this runs once per request."""
    return orjson.dumps(_VALUES(event), default=_decimal, option=_OPTIONS)


def decode(line: bytes) -> UsageEvent:
    """An event from its journal line, validated as any wire-form event (`InvalidEventError`)."""
    try:
        values = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"not a journal line: {exc}") from None
    if not isinstance(values, list) or len(values) != len(_NAMES):
        raise InvalidEventError("not a journal line of this llmledger version")
    return UsageEvent.from_dict(dict(zip(_NAMES, values, strict=True)))


def journal_dir(ledger: str) -> Path:
    """The gateway's journal for a ledger: `<file>.gateway-journal/` beside a SQLite file, else
    `$XDG_CACHE_HOME/llmledger/gateway-journal/<hash of the URL>/`."""
    url = normalize_url(ledger)
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :] + ".gateway-journal")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "llmledger" / "gateway-journal" / hashlib.sha256(url.encode()).hexdigest()[:16]


class Recorder:
    """Journal, then write, the events of one gateway. `journal`: its directory (None: no journal,
    events wait in memory only). Never raises into a request: faults are logged and counted."""

    def __init__(self, engine: Engine, journal: Path | None) -> None:
        self.engine = engine
        self.journal = Journal(journal) if journal is not None else None
        self.quarantined = 0
        """Events of this gateway the ledger refused, kept in the quarantine instead."""
        self.writer: BackgroundWriter[_Recorded] = BackgroundWriter(
            self._write, batch_size=2_000, flush_interval=FLUSH_INTERVAL, name="llmledger-gateway-writer"
        )
        if self.journal is not None:
            self._replay()

    def record(self, event: UsageEvent, reservation: str | None = None, held: Segment | None = None) -> None:
        """Journal `event` and queue it for the ledger (its write drops `reservation`; `held`, the
        reservation's `R` line, is acknowledged with the event's own line, once committed)."""
        segment = None
        if self.journal is not None:
            try:  # a failed append (disk full) is counted by the journal; the event stays queued
                segment = self.journal.append(encode(event))
            except Exception as exc:
                internal_error(exc, "journaling a gateway event")
        self.writer.submit(
            (event, segment, reservation, held)
        )  # a full buffer drops and counts (journal keeps it)

    def begin(self, meter: Metering, reservation: str | None) -> Segment | None:
        """Journal a call about to be forwarded and the reservation about to be made for it (a `B`
        line), so that a gateway killed at any instant before the call's event is journaled has
        the call recorded as interrupted and the reservation released at the next start. Pass the
        returned segment to `record` with the call's event, or `unhold` it when the call is
        refused before anything was sent (its reservation released or never made)."""
        if self.journal is None:
            return None
        try:
            return self.journal.append(begin_line(meter, reservation))
        except Exception as exc:
            internal_error(exc, "journaling a gateway call's start")
            return None

    def unhold(self, segment: Segment | None) -> None:
        """The call `begin` journaled was refused before it was sent (nothing to record)."""
        if segment is not None and self.journal is not None:
            self.journal.done(segment)

    def _write(self, batch: Sequence[_Recorded]) -> None:
        rows = [Ready(event, None, (segment, held), None) for event, segment, _, held in batch]
        self._store(rows, [item[2] for item in batch if item[2] is not None])
        acknowledge(self.journal, rows)
        enforcer = self.engine.enforcer
        for row in rows:  # estimate-mode limits learn their averages from written events
            if row.problem is None:
                enforcer.learn(row.event)

    def _store(self, rows: list[Ready], releases: list[str]) -> None:
        """Write `rows` in one transaction, the rows at fault (if the ledger refuses some) kept in
        the quarantine: the SDK writer's rule (`sdk/sink.py: store`)."""
        alerts = store(self.engine.ledger, rows, releases)
        bad = [row.problem for row in rows if row.problem is not None]
        if bad:
            self.quarantined += len(bad)
            log.warning(
                "llmledger gateway: %d event(s) quarantined (see `llmledger quarantine list`): %s",
                len(bad),
                bad[0],
            )
        if alerts:  # thresholds the committed spend crossed, announced once written
            self.engine.enforcer.announce(alerts)

    def _replay(self) -> None:
        """Write what dead gateways left in the journal (the SDK's replay loop: a ledger fault
        leaves their files for the next start)."""
        assert self.journal is not None
        replay_orphans(None, self.journal, self._deliver, read=self._read)

    def _read(self, records: Sequence[bytes]) -> Replayed:
        """A dead gateway's journal lines as events (see the module docstring)."""
        out = Replayed()
        begun: dict[str, list[Any]] = {}
        for line in records:
            kind = line[:1]
            try:
                if kind == b"B":  # a call the dead gateway had started
                    fields = orjson.loads(line[1:])
                    begun[fields[0]] = fields
                    if fields[6]:
                        out.releases.append(fields[6])
                elif kind == b"R":  # a reservation journaled by the previous version
                    out.releases.append(line[1:].decode("ascii", "replace"))
                else:
                    out.events.append(decode(line))
            except (InvalidEventError, ValueError, TypeError, IndexError) as exc:
                log.warning("llmledger gateway: an unreadable journal line was skipped: %s", exc)
        ended = {event.event_id for event in out.events}
        for event_id, fields in begun.items():
            if event_id not in ended:  # written already if its event was committed: same id
                try:
                    out.events.append(interrupted_event(self.engine.pricer, fields))
                    out.interrupted += 1
                except Exception as exc:
                    log.warning("llmledger gateway: a journaled call start was skipped: %s", exc)
        return out

    def _deliver(self, found: Replayed) -> None:
        self._store([Ready(event, None, (), None) for event in found.events], found.releases)

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything recorded so far; False when `timeout` ran out first."""
        return self.writer.flush(timeout)

    def close(self) -> None:
        """Flush and stop; a journal keeps whatever could not be written, for the next start."""
        self.writer.close()
        if self.journal is not None:
            self.journal.close()
