"""What the journal holds for llmledger, and how a dead process's journal becomes events.

Three kinds of record, each one JSON array on one line after a one-letter kind:

- `B` — a metered call is about to be sent (written on the caller's thread before the request):
  `[seq, wall_us, provider, endpoint, requested_model, attribution, reservation_id]`. `seq` is the
  call's number in its journal's `IdStream`: the event id is derived from it, the start time and
  the journal's owner (`IdStream.id_at`), by the live writer and by a replay alike. (Records of
  earlier versions carry the event id itself, a string, in its place: still read.)
- `E` — that call finished (written before the metered call returns):
  `[seq, model, tokens, units, provider_cost, service_tier, duration_s, ttft_s, complete,
  stream, status, error_type, unpriced_reason, request_id, estimated, total, notes]`.
- `T` — a finished event from `track()`: `[event wire form (UsageEvent.to_dict), reservation_id]`.
- `R` — a reservation held by `guard()` around a call the application makes itself:
  `[reservation_id]`, acknowledged when the block ends (the reservation released, or settled by the
  `track()` inside, whose `T` record names it). A dead process's `R` is released on replay.

Prompt and completion text are never part of a record. Replay builds the event of a `B`+`E` pair
exactly as the live writer does (priced then, on the replaying process); a `B` without its `E` is a
call that was in flight when its process died: it becomes an event flagged `estimated`,
`status="error"`, `error_type="ProcessExited"`, unpriced (its usage is unknown; the provider may
have billed it), and its reservation is released. Event ids are fixed when the record is written,
so a replay (or a second replay) never writes an event twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger._internal import internal_error
from llmledger.attribution.context import EMPTY, Attribution
from llmledger.events.event import UsageEvent
from llmledger.events.ids import IdStream
from llmledger.sdk.records import begin_record, end_fields, end_record, end_record_of, track_record
from llmledger.sdk.records import dumps as _dumps
from llmledger.sdk.records import esc as _esc
from llmledger.transport.journal import Journal, Segment

if TYPE_CHECKING:
    from llmledger.sdk.runtime import Runtime

__all__ = [
    "INTERRUPTED",
    "Held",
    "Replayed",
    "begin_record",
    "call_event",
    "end_fields",
    "end_record",
    "end_record_of",
    "events_of",
    "hold",
    "replay_orphans",
    "track_record",
]

log = logging.getLogger("llmledger")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

INTERRUPTED = "ProcessExited"
"""`error_type` of the event of a call whose process died while it was in flight."""

_INTERRUPTED_REASON = "the process ended while the call was in flight: usage unknown (it may be billed)"


class Held:
    """The journal record of a reservation `guard()` holds (`hold`); `done()` when the block ends."""

    __slots__ = ("journal", "segment")

    def __init__(self, journal: Journal, segment: Segment) -> None:
        self.journal = journal
        self.segment = segment

    def done(self) -> None:
        self.journal.done(self.segment)


def hold(runtime: Runtime, reservation: str | None) -> Held | None:
    """Journal the reservation a `guard()` block holds, so that the death of the process inside the
    block releases it on replay instead of holding it until `reservation_ttl`."""
    journal = runtime.journal
    if reservation is None or journal is None:
        return None
    segment = journal.append(b"R[" + _esc(reservation).encode() + b"]")
    return None if segment is None else Held(journal, segment)


class Replayed:
    """What one orphan journal yields: events to write, reservations to drop, records unreadable."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.releases: list[str] = []
        self.bad: list[tuple[bytes, str]] = []
        self.interrupted = 0


def events_of(runtime: Runtime, records: Sequence[bytes], owner: str | None = None) -> Replayed:
    """Turn a dead process's records into events (see the module docstring). `owner`: the journal
    owner that wrote them (its files' name), whose `IdStream` numbered the calls. Never raises: a
    record that cannot be read is returned in `bad` with the reason."""
    out = Replayed()
    ids = IdStream(owner) if owner is not None else None
    begins: dict[Any, list[Any]] = {}
    ends: dict[Any, list[Any]] = {}
    for line in records:
        try:
            kind, data = line[:1], json.loads(line[1:])
            if kind == b"B":
                begins[data[0]] = data
            elif kind == b"E":
                ends[data[0]] = data
            elif kind == b"R":
                out.releases.append(data[0])
            elif kind == b"T":
                out.events.append(_tracked(data))
                if data[-1]:
                    out.releases.append(data[-1])
            else:
                raise ValueError(f"unknown record kind {kind!r}")
        except Exception as exc:
            out.bad.append((line, f"{type(exc).__name__}: {exc}"))
    for key, begin in begins.items():
        end = ends.get(key)
        try:
            out.events.append(_call_event(runtime, begin, end, ids))
            if end is None:
                out.interrupted += 1
        except Exception as exc:
            out.bad.append((b"B" + _dumps(begin).encode(), f"{type(exc).__name__}: {exc}"))
        if begin[6]:
            out.releases.append(begin[6])
    # An `E` whose `B` is gone was committed with it (a start is acknowledged only with its end).
    return out


def _attribution(raw: Any) -> Attribution:
    if raw is None:
        return EMPTY
    tenant, user, org, feature, agent, session, tags = raw
    return Attribution(tenant, user, org, feature, agent, session, dict(tags or {}))


def _call_event(
    runtime: Runtime, begin: list[Any], end: list[Any] | None, ids: IdStream | None
) -> UsageEvent:
    key, wall_us, provider, endpoint, requested_model, who_raw, _reservation = begin
    if isinstance(key, str):  # an event id (a record of an earlier version)
        event_id = key
    elif key.__class__ is int and ids is not None:
        event_id = ids.id_at(wall_us, key)
    else:
        raise ValueError(f"a start record without an event id or a sequence number: {key!r}")
    return call_event(
        runtime, event_id, wall_us, provider, endpoint, requested_model, _attribution(who_raw), end
    )


def call_event(
    runtime: Runtime,
    event_id: str,
    wall_us: int,
    provider: str,
    endpoint: str | None,
    requested_model: str | None,
    who: Attribution,
    end: list[Any] | None,
) -> UsageEvent:
    """Price a call and build its event: from its start and `end_fields` (None: interrupted).

    The one builder of a metered call's event, used by the live writer and by replay alike."""
    from llmledger.sdk.track import build_usage_event

    wall = _EPOCH + wall_us * _US
    if end is None:
        return build_usage_event(
            runtime,
            provider,
            requested_model or "unknown",
            {},
            who,
            wall,
            requested_model=requested_model,
            endpoint=endpoint,
            complete=False,
            status="error",
            error_type=INTERRUPTED,
            estimated=True,
            unpriced_reason=_INTERRUPTED_REASON,
            event_id=event_id,
        )
    (
        _,
        model,
        tokens,
        units,
        cost,
        tier,
        duration,
        ttft,
        complete,
        stream,
        status,
        error_type,
        unpriced_reason,
        request_id,
        estimated,
        total,
        notes,
    ) = end
    from llmledger.identity import learn
    from llmledger.instrumentation.hosts import billed_model, normalise_usage
    from llmledger.instrumentation.usage import Usage

    usage = Usage(tokens=dict(tokens), model=model, total=total, notes=list(notes) if notes else None)
    if model is not None:  # an Azure deployment (or a relay's alias) learns its model
        learn(provider, requested_model, model)
    if usage.tokens:  # the host's counting convention, and no impossible event stored silently
        normalise_usage(usage, provider, endpoint)
    return build_usage_event(
        runtime,
        provider,
        billed_model(provider, requested_model, model),  # Bedrock: the profile invoked
        usage.tokens,
        who,
        wall,
        units={k: Decimal(str(v)) for k, v in units.items()} if units else None,
        provider_cost=None if cost is None else Decimal(cost),  # a Decimal live, a string replayed
        requested_model=requested_model,
        endpoint=endpoint,
        service_tier=tier,
        duration_ms=duration * 1000.0,
        time_to_first_token_ms=None if ttft is None else ttft * 1000.0,
        stream=stream,
        complete=complete,
        status=status,
        error_type=error_type,
        request_id=request_id,
        estimated=estimated,
        unpriced_reason=unpriced_reason,
        notes=usage.notes,
        event_id=event_id,
    )


def _tracked(data: list[Any]) -> UsageEvent:
    return UsageEvent.from_dict(data[0])


def replay_orphans(
    runtime: Runtime | None,
    journal: Journal,
    deliver: Callable[[Replayed], None],
    *,
    unreachable: tuple[type[BaseException], ...] = (),
    read: Callable[[Sequence[bytes]], Replayed] | None = None,
) -> int:
    """Replay what dead processes left in `journal`: for each dead owner, `deliver` its records'
    `Replayed` (events to store or send, reservations to release, unreadable records), then
    delete its files. Returns how many events were recovered; never raises.

    The one replay loop of every sink (the ledger's, remote mode's). Replay is idempotent by
    `event_id`, so a `deliver` that fails half-way is simply retried: its owner's files are kept
    (unlocked) for the next attempt. A failure of a kind in `unreachable` (the destination is down)
    stops the whole pass; any other failure skips that owner only. `read`: how a journal of
    another format becomes a `Replayed` (the gateway's; default `events_of(runtime, ...)`).
    """
    recovered = 0
    try:
        for orphan in journal.orphans():
            try:
                records = orphan.records()
                if read is not None:
                    found = read(records)
                else:
                    assert runtime is not None
                    found = events_of(runtime, records, orphan.owner)
                deliver(found)
            except unreachable:
                orphan.release()  # every file waits for the next attempt
                break
            except Exception as exc:
                orphan.release()
                log.warning("llmledger: replaying a journal failed (%s); will retry", _describe(exc))
                continue
            orphan.remove()
            recovered += len(found.events)
            if found.events:
                log.info(
                    "llmledger: recovered %d event(s) (%d interrupted call(s)) from a dead process",
                    len(found.events),
                    found.interrupted,
                )
    except Exception as exc:
        with contextlib.suppress(Exception):
            internal_error(exc, "replaying the journal")
    return recovered


def _describe(exc: BaseException) -> str:
    from llmledger.transport.writer import describe_error

    return describe_error(exc)
