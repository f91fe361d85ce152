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
from llmledger.transport.journal import Journal, Segment

if TYPE_CHECKING:
    from llmledger.instrumentation.call import Call
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

INTERRUPTED = "ProcessExited"
"""`error_type` of the event of a call whose process died while it was in flight."""

_INTERRUPTED_REASON = "the process ended while the call was in flight: usage unknown (it may be billed)"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
_dumps_any = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


class _WhoCache:
    """The JSON of the last attribution seen: calls of one `attribute()` block share one object.
    One tuple, replaced whole: another thread never reads one attribution's text for another."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[Attribution | None, str] = (None, "null")

    def __call__(self, who: Attribution) -> str:
        last, text = self.last
        if who is last:
            return text
        text = "null" if who is EMPTY else _dumps(_who_list(who))
        self.last = (who, text)
        return text


def _who_list(who: Attribution) -> list[Any]:
    return [who.tenant, who.user, who.org, who.feature, who.agent, who.session, dict(who.tags)]


_who_json = _WhoCache()


_quoted: dict[str | None, str] = {}


def _q(text: str | None) -> str:
    """The JSON text of a short string that repeats (provider, endpoint, model), cached."""
    out = _quoted.get(text)
    if out is None:
        out = _dumps(text)
        if len(_quoted) < 4096:
            _quoted[text] = out
    return out


class _BeginCache:
    """The `B` record's fixed part (provider, endpoint, model, attribution, no reservation) of the
    last call, as a bytes template with the sequence number and start time left to fill: calls of
    one client, model and `attribute()` block share the same objects, so one identity check
    replaces the formatting of five fields. The entry is one tuple, replaced whole (threads never
    see a template beside another call's keys), and holds its objects, so no identity is reused."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[object, object, object, object, bytes] = (None, None, None, None, b"")

    def template_of(self, call: Call) -> bytes:
        provider, endpoint, model, who, template = self.last
        if (
            call.provider is provider
            and call.endpoint is endpoint
            and call.requested_model is model
            and call.who is who
        ):
            return template
        fixed = f"{_q(call.provider)},{_q(call.endpoint)},{_q(call.requested_model)},{_who_json(call.who)}"
        template = b"B[%d,%d," + fixed.replace("%", "%%").encode() + b",null]"
        self.last = (call.provider, call.endpoint, call.requested_model, call.who, template)
        return template


_begin_cache = _BeginCache()


def begin_record(call: Call, seq: int, wall_us: int) -> bytes:
    """The `B` record of a call about to be sent (the caller's thread: one bytes format)."""
    reservation = call.reservation
    if reservation is None and seq.__class__ is int and wall_us.__class__ is int:
        return _begin_cache.template_of(call) % (seq, wall_us)
    held = "null" if reservation is None else _dumps(reservation)
    who = _who_json(call.who)
    return (
        f"B[{seq:d},{wall_us:d},{_q(call.provider)},{_q(call.endpoint)},{_q(call.requested_model)},"
        f"{who},{held}]"
    ).encode()


def end_fields(call: Call) -> list[Any]:
    """What a finished call adds to its start (after `Call._emit` captured usage and outcome)."""
    usage = call.usage
    assert usage is not None and call.outcome is not None
    complete, stream, status, error_type, provider_cost, unpriced_reason = call.outcome
    return [
        call.seq or call.event_id,  # what its `B` record starts with
        usage.model,
        usage.tokens,
        usage.units or None,
        usage.provider_cost if provider_cost is None else provider_cost,
        usage.service_tier,
        call.duration,
        None if call.ttft is None else call.ttft - call.t0,
        complete,
        stream,
        status,
        error_type,
        unpriced_reason,
        usage.request_id,
        usage.estimated,
        usage.total,
        usage.notes or None,
    ]


_esc = json.encoder.encode_basestring_ascii  # the C string escaper


def _s(text: Any) -> str:
    return "null" if text is None else _esc(text)


_end_templates: dict[tuple[Any, ...], str] = {}
"""`E` record templates by the fields that repeat from call to call (model, tier, outcome, which
token counts): the counts, sequence number, durations and request id are filled in (`%`)."""
_MAX_TEMPLATES = 1024


def end_record_of(call: Call) -> bytes:
    """The `E` record of a finished call (the caller's thread: one `%` format of a cached template).

    The same bytes as `_end_record_text` (the same JSON as `end_record(end_fields(call))`,
    durations to the microsecond) for the common shapes: tokens, no units, no notes, sane
    durations; anything else goes through it."""
    usage = call.usage
    outcome = call.outcome
    assert usage is not None and outcome is not None
    complete, stream, status, error_type, provider_cost, unpriced_reason = outcome
    cost = usage.provider_cost if provider_cost is None else provider_cost
    duration, ttft, seq = call.duration, call.ttft, call.seq
    if (
        usage.units
        or usage.notes
        or duration.__class__ is not float
        or not (0.0 <= duration < 1e12)
        or seq.__class__ is not int
        or not seq
        or status.__class__ is not str
    ):
        return _end_record_text(call)
    tokens = usage.tokens
    rid = usage.request_id
    key = (usage.model, usage.service_tier, complete, stream, status, error_type, unpriced_reason,
           usage.estimated, ttft is None, cost is None, *tokens)  # fmt: skip
    try:
        template = _end_templates.get(key)
        if template is None:
            template = _end_template(key, len(tokens))
        whole = int(duration * 1e6 + 0.5)
        rid_json = "null" if rid is None else _esc(rid)
        if cost is None and ttft is None:
            args: tuple[Any, ...] = (
                seq,
                *tokens.values(),
                whole // 1_000_000,
                whole % 1_000_000,
                rid_json,
                usage.total,
            )
        else:
            parts: list[Any] = [seq, *tokens.values()]
            if cost is not None:
                parts.append(_esc(str(cost)))
            parts += (whole // 1_000_000, whole % 1_000_000)
            if ttft is not None:
                since = ttft - call.t0
                if ttft.__class__ is not float or not (0.0 <= since < 1e12):
                    return _end_record_text(call)
                lag = int(since * 1e6 + 0.5)
                parts += (lag // 1_000_000, lag % 1_000_000)
            args = (*parts, rid_json, usage.total)
        return (template % args).encode()
    except (TypeError, ValueError):  # an odd value (a non-int count, a non-str id): the slow path
        return _end_record_text(call)


def _end_template(key: tuple[Any, ...], count: int) -> str:
    model, tier, complete, stream, status, error_type, unpriced_reason, estimated, no_ttft, no_cost = key[:10]
    names = key[10:]
    assert len(names) == count

    def fixed(text: str) -> str:
        return text.replace("%", "%%")

    template = (
        f"E[%d,{fixed(_s(model))},{{{','.join(fixed(_q(k)) + ':%d' for k in names)}}},null,"
        f"{'null' if no_cost else '%s'},{fixed(_s(tier))},%d.%06d,{'null' if no_ttft else '%d.%06d'},"
        f"{'true' if complete else 'false'},{'true' if stream else 'false'},{fixed(_esc(status))},"
        f"{fixed(_s(error_type))},{fixed(_s(unpriced_reason))},%s,{'true' if estimated else 'false'},%d,null]"
    )
    if len(_end_templates) < _MAX_TEMPLATES:
        _end_templates[key] = template
    return template


def _end_record_text(call: Call) -> bytes:
    """The `E` record of any finished call, formatted field by field (no encoder object for the
    common shapes; anything else goes through the encoder)."""
    usage = call.usage
    assert usage is not None and call.outcome is not None
    complete, stream, status, error_type, provider_cost, unpriced_reason = call.outcome
    cost = usage.provider_cost if provider_cost is None else provider_cost
    duration, ttft = call.duration, call.ttft
    if (
        usage.units
        or usage.notes
        or duration.__class__ is not float
        or not (0.0 <= duration < 1e12)
        or (ttft is not None and ttft.__class__ is not float)
        or status.__class__ is not str
    ):
        return end_record(end_fields(call))
    tokens = ",".join([f"{_q(k)}:{int(v)}" for k, v in usage.tokens.items()])
    seq = call.seq
    return (
        f"E[{seq if seq else _s(call.event_id)},{_s(usage.model)},{{{tokens}}},null,"
        f"{'null' if cost is None else _esc(str(cost))},{_s(usage.service_tier)},{_seconds(duration)},"
        f"{'null' if ttft is None else _seconds(ttft - call.t0)},{'true' if complete else 'false'},"
        f"{'true' if stream else 'false'},{_esc(status)},{_s(error_type)},{_s(unpriced_reason)},"
        f"{_s(usage.request_id)},{'true' if usage.estimated else 'false'},{int(usage.total)},null]"
    ).encode()


def _seconds(value: float) -> str:
    """A duration in seconds as a JSON number to the microsecond, without the shortest-repr float
    formatter (`repr(float)`: ~5,000 instructions, a sixth of the whole record). A negative or
    non-finite value (never a real duration) goes through `repr`."""
    if 0.0 <= value < 1e12:
        return "%d.%06d" % divmod(int(value * 1e6 + 0.5), 1_000_000)  # noqa: UP031 (one C call)
    return repr(value)


def end_record(fields: list[Any]) -> bytes:
    """The `E` record of a finished call's `end_fields`."""
    units, cost = fields[3], fields[4]
    if units or cost is not None:
        fields = list(fields)
        fields[3] = {k: str(v) for k, v in units.items()} if units else None
        fields[4] = None if cost is None else str(cost)
    return b"E" + _dumps(fields).encode()


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


def track_record(event: UsageEvent, reservation: str | None) -> bytes:
    """The `T` record of a `track()` event: its JSON wire form, and the reservation it settles."""
    return b"T" + _dumps_any([event.to_dict(), reservation]).encode()


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
