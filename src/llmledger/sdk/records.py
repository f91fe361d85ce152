"""The journal's records as the caller's thread writes them: `B` (a call about to be sent), `E` (that
call finished) and `T` (a `track()` event) — formats in `sdk/spool.py`'s docstring, read back there.

Written on the hot path of every metered call: the fixed parts of `B` and `E` records are cached
`%` templates (one identity check, one format), with the field-by-field formatting as the path for
every shape the templates do not cover; both give the same bytes (tests/test_journal_records.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llmledger.attribution.context import EMPTY, Attribution
from llmledger.events.event import UsageEvent

if TYPE_CHECKING:
    from llmledger.instrumentation.call import Call

__all__ = ["begin_record", "dumps", "end_fields", "end_record", "end_record_of", "esc", "track_record"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
_dumps_any = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode


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


def track_record(event: UsageEvent, reservation: str | None) -> bytes:
    """The `T` record of a `track()` event: its JSON wire form, and the reservation it settles."""
    return b"T" + _dumps_any([event.to_dict(), reservation]).encode()


dumps = _dumps
"""Compact ASCII JSON of plain values (the records' encoder)."""
esc = _esc
"""A str as a JSON string (the C escaper)."""
