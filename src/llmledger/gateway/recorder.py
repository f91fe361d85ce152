"""Where the gateway's events go: journaled on disk first (a killed gateway loses nothing it has
answered), then written to the engine's ledger in batches by a background thread.

The journal is the SDK's (`transport/journal.py`): one line per event (its JSON wire form),
acknowledged once the batch holding it is committed. At start-up, what a dead gateway process
left in the same journal directory is written first (idempotent by `event_id`).
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
        self.writer: BackgroundWriter[tuple[UsageEvent, Segment | None, str | None]] = BackgroundWriter(
            self._write, batch_size=2_000, flush_interval=0.1, name="llmledger-gateway-writer"
        )
        if self.journal is not None:
            self._replay()

    def record(self, event: UsageEvent, reservation: str | None = None) -> None:
        """Journal `event` and queue it for the ledger (its write drops `reservation`)."""
        segment = None
        if self.journal is not None:
            try:  # a failed append (disk full) is counted by the journal; the event stays queued
                segment = self.journal.append(encode(event))
            except Exception as exc:
                internal_error(exc, "journaling a gateway event")
        self.writer.submit((event, segment, reservation))  # a full buffer drops and counts (journal keeps it)

    def _write(self, batch: Sequence[tuple[UsageEvent, Segment | None, str | None]]) -> None:
        events = [event for event, _, _ in batch]
        releases = [reservation for _, _, reservation in batch if reservation is not None]
        enforcer = self.engine.enforcer
        alerts = self.engine.ledger.write(events, releases)
        if self.journal is not None:
            counts: dict[Segment, int] = {}
            for _, segment, _ in batch:
                if segment is not None:
                    counts[segment] = counts.get(segment, 0) + 1
            self.journal.done_all(counts)
        for event in events:  # estimate-mode limits learn their averages from written events
            enforcer.learn(event)
        if alerts:  # thresholds the committed spend crossed, announced once written
            enforcer.announce(alerts)

    def _replay(self) -> None:
        assert self.journal is not None
        for orphan in self.journal.orphans():
            events = []
            for line in orphan.records():
                try:
                    events.append(decode(line))
                except InvalidEventError as exc:
                    log.warning("llmledger gateway: a journaled event is unreadable, skipped: %s", exc)
            if events:
                self.engine.ledger.write(events)
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
