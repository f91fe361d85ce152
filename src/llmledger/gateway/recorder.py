"""Where the gateway's events go: journaled on disk first (a killed gateway loses nothing it has
answered), then written to the engine's ledger in batches by a background thread.

The journal is the SDK's (`transport/journal.py`): one line per event (its field values as JSON),
acknowledged once the batch holding it is committed, and one `R<id>` line per reservation held by
a call in flight, acknowledged once that call's event is journaled. At start-up, what a dead gateway process
left in the same journal directory is written first (idempotent by `event_id`) and the
reservations of its calls in flight are released.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from llmledger._internal import internal_error
from llmledger.engine import Engine
from llmledger.errors import InvalidEventError
from llmledger.events.event import UsageEvent
from llmledger.storage.engine import normalize_url
from llmledger.transport.journal import Journal, Segment
from llmledger.transport.writer import BackgroundWriter

__all__ = ["Recorder", "decode", "encode", "journal_dir"]

log = logging.getLogger("llmledger.gateway")

_Recorded = tuple[UsageEvent, Segment | None, str | None, Segment | None]
"""An event queued for the ledger: its journal line, the reservation its write drops, and that
reservation's journal line."""

_NAMES = tuple(f.name for f in dataclasses.fields(UsageEvent))
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _decimal(value: Any) -> str:
    return str(value)


def encode(event: UsageEvent) -> bytes:
    """One event as a journal line: its field values in field order (JSON; Decimal as strings, the
    timestamp in RFC 3339). A quarter of the wire form's cost: this runs once per request."""
    return orjson.dumps([getattr(event, name) for name in _NAMES], default=_decimal, option=_OPTIONS)


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
        self.writer: BackgroundWriter[_Recorded] = BackgroundWriter(
            self._write, batch_size=2_000, flush_interval=0.1, name="llmledger-gateway-writer"
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

    def hold(self, reservation: str) -> Segment | None:
        """Journal a reservation about to be made (an `R` line), so that a gateway killed at any
        instant before its call's event is journaled has it released at the next start; `unhold`
        the returned segment once it is released, or pass it to `record` with the call's event."""
        if self.journal is None:
            return None
        try:
            return self.journal.append(b"R" + reservation.encode())
        except Exception as exc:
            internal_error(exc, "journaling a gateway reservation")
            return None

    def unhold(self, segment: Segment | None) -> None:
        """The reservation `hold` journaled was released (or never made)."""
        if segment is not None and self.journal is not None:
            self.journal.done(segment)

    def _write(self, batch: Sequence[_Recorded]) -> None:
        events = [item[0] for item in batch]
        releases = [item[2] for item in batch if item[2] is not None]
        enforcer = self.engine.enforcer
        alerts = self.engine.ledger.write(events, releases)
        if self.journal is not None:
            counts: dict[Segment, int] = {}
            for _, segment, _, held in batch:
                for seg in (segment, held):
                    if seg is not None:
                        counts[seg] = counts.get(seg, 0) + 1
            self.journal.done_all(counts)
        for event in events:  # estimate-mode limits learn their averages from written events
            enforcer.learn(event)
        if alerts:  # thresholds the committed spend crossed, announced once written
            enforcer.announce(alerts)

    def _replay(self) -> None:
        assert self.journal is not None
        for orphan in self.journal.orphans():
            events, releases = [], []
            for line in orphan.records():
                if line[:1] == b"R":  # a reservation of a call the dead gateway never finished
                    releases.append(line[1:].decode("ascii", "replace"))
                    continue
                try:
                    events.append(decode(line))
                except InvalidEventError as exc:
                    log.warning("llmledger gateway: a journaled event is unreadable, skipped: %s", exc)
            if events or releases:
                self.engine.ledger.write(events, releases)
                log.info("llmledger gateway: %d event(s) of a stopped gateway written", len(events))
            orphan.remove()

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything recorded so far; False when `timeout` ran out first."""
        return self.writer.flush(timeout)

    def close(self) -> None:
        """Flush and stop; a journal keeps whatever could not be written, for the next start."""
        self.writer.close()
        if self.journal is not None:
            self.journal.close()
