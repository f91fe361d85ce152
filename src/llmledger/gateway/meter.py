"""One gateway request's metering: what it asked for, what came back, and the event it becomes.

The usage comes from the wire readers (`gateway/wire.py`); the event is built by the builder every
door shares (`sdk/event_builder.py: usage_event`), priced by the engine's pricer.
No prompt or completion text enters the event: a stream cut short keeps the generated text in
memory only to estimate its tokens, and the estimate is marked (`estimated=True`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson

from llmledger.attribution.context import Attribution
from llmledger.errors import InvalidUsageError
from llmledger.events.checks import check_amount, check_text, check_units
from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.events.schema import MAX_TOKENS, TEXT_LIMITS, Status
from llmledger.instrumentation.hosts import normalise_usage
from llmledger.instrumentation.usage import KEEP_CHARS, Usage
from llmledger.pricing.pricer import Pricer
from llmledger.sdk.event_builder import usage_event
from llmledger.sdk.spool import INTERRUPTED
from llmledger.tokens.estimate import estimate_from_chars, request_text

__all__ = ["INTERRUPTED", "Metering", "begin_line", "interrupted_event"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_INTERRUPTED_REASON = "the gateway stopped while the call was in flight: usage unknown (it may be billed)"


class Metering:
    """The metering state of one request, from its arrival to its one event."""

    __slots__ = (
        "body",
        "endpoint",
        "event_id",
        "held",
        "provider",
        "requested_model",
        "reservation",
        "sent_model",
        "stream",
        "t0",
        "ttft",
        "wall",
        "who",
    )

    def __init__(
        self,
        provider: str,
        endpoint: str,
        requested_model: str | None,
        who: Attribution,
        body: Mapping[str, Any] | None,
        stream: bool,
    ) -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.requested_model = requested_model
        self.sent_model = requested_model
        self.who = who
        self.body = body  # only read to estimate the prompt when usage is missing
        self.stream = stream
        self.wall = datetime.now(timezone.utc)
        self.t0 = time.perf_counter()
        self.ttft: float | None = None
        self.reservation: str | None = None
        self.held: Any = None  # the journal segment of the call's `B` line (`Recorder.begin`)
        self.event_id = uuid7()

    def estimate(self, usage: Usage | None, chars: int, text: str) -> Usage:
        """`usage` (or none) completed by estimates: input from the request's text, output from
        the `chars` characters generated and streamed; marked `estimated`. `text`: the generated
        text kept (the first `KEEP_CHARS`), counted with the model's tokenizer when it has a
        public one (OpenAI's; call from a worker thread: the first use loads it)."""
        from llmledger.tokens import count_tokens

        usage = usage if usage is not None else Usage()
        tokens = usage.tokens
        model = usage.model or self.sent_model
        if not tokens.get("input_tokens"):
            prompt = request_text(self.body)
            counted = count_tokens(prompt[:KEEP_CHARS], model) if prompt else 0
            tokens["input_tokens"] = (
                estimate_from_chars(len(prompt))
                if counted is None
                else counted + estimate_from_chars(len(prompt) - KEEP_CHARS)
            )
        reported = tokens.get("output_tokens", 0)
        counted = count_tokens(text, model) if text else 0
        out = (
            estimate_from_chars(chars)
            if counted is None
            else counted + estimate_from_chars(chars - len(text))
        )
        if out > reported:
            tokens["output_tokens"] = out
        usage.estimated = True
        return usage

    def event(
        self,
        pricer: Pricer,
        usage: Usage | None,
        *,
        complete: bool = True,
        status: Status = "ok",
        error_type: str | None = None,
        unpriced_reason: str | None = None,
    ) -> UsageEvent:
        """Price `usage` and build this request's event (usage None: nothing billable happened,
        e.g. an upstream error, which providers do not bill: recorded at $0)."""
        duration_ms = (time.perf_counter() - self.t0) * 1000.0
        ttft_ms = None if self.ttft is None else (self.ttft - self.t0) * 1000.0
        notes: list[str] = []
        model = self.sent_model or "unknown"
        tokens: dict[str, int] = {}
        units: Mapping[str, int | Decimal] | None = None
        tier = request_id = None
        provider_cost: Decimal | None = None
        estimated = False
        if usage is None:
            provider_cost = Decimal(0)
        else:
            model = usage.model or model
            if usage.tokens:  # the host's usage convention, exactly as the SDK hooks apply it
                normalise_usage(usage, self.provider, self.endpoint)
            tokens, units, tier = usage.tokens, usage.units, usage.service_tier
            request_id, provider_cost, estimated = usage.request_id, usage.provider_cost, usage.estimated
            notes.extend(usage.notes or ())
        event = usage_event(
            pricer,
            self.provider,
            model[:256],
            tokens,
            self.who,
            self.wall,
            units={k: Decimal(v) for k, v in units.items()} if units else None,
            provider_cost=provider_cost,
            requested_model=self.requested_model,
            endpoint=self.endpoint,
            service_tier=tier,
            duration_ms=duration_ms,
            time_to_first_token_ms=ttft_ms,
            stream=self.stream,
            complete=complete,
            status=status,
            error_type=error_type,
            request_id=request_id[:128] if request_id else None,
            estimated=estimated,
            unpriced_reason=unpriced_reason,
            notes=notes,
            event_id=self.event_id,
        )
        problem = _problem(event, tokens) if usage is not None else None
        if problem is not None:  # provider data the ledger cannot hold
            return self.event(
                pricer,
                None,
                complete=complete,
                status=status,
                error_type=error_type,
                unpriced_reason=f"the response's usage could not be stored: {problem}"[:256],
            )
        return event


_VALID: set[tuple[str, str | None]] = set()


def _problem(event: UsageEvent, tokens: Mapping[str, int]) -> str | None:
    """Why the ledger could not hold an event built from provider data (None: it can). Only what
    provider data can make wrong is checked: attribution was validated on arrival, the timestamp
    and durations are the gateway's own, and the readers give non-negative integer counts."""
    try:
        known = (event.model, event.service_tier)
        if known not in _VALID:  # a model and tier checked once (they repeat)
            check_text("model", event.model, TEXT_LIMITS["model"], required=True)
            check_text("service_tier", event.service_tier, TEXT_LIMITS["service_tier"])
            if len(_VALID) >= 4096:
                _VALID.clear()
            _VALID.add(known)
        check_text("request_id", event.request_id, TEXT_LIMITS["request_id"])
        for name, count in tokens.items():
            if count > MAX_TOKENS:
                return f"{name} ({count}) is more than {MAX_TOKENS}"
        if event.units:
            check_units(event.units)
        if event.cost_usd is not None:
            check_amount("cost_usd", event.cost_usd)
    except InvalidUsageError as exc:
        return str(exc)
    return None


def begin_line(meter: Metering, reservation: str | None) -> bytes:
    """The journal line of a call about to be forwarded (`B`, see `gateway/recorder.py`)."""
    who = meter.who
    wall_us = (meter.wall - _EPOCH) // _US
    return b"B" + orjson.dumps(
        [
            meter.event_id,
            wall_us,
            meter.provider,
            meter.endpoint,
            meter.requested_model,
            [who.tenant, who.user, who.org, who.feature, who.agent, who.session, who.tags],
            reservation,
            meter.stream,
        ]
    )


def interrupted_event(pricer: Pricer, fields: list[Any]) -> UsageEvent:
    """The event of a call whose `B` line has no event: the gateway died while it was in flight.
    Recorded unpriced (usage unknown), `estimated`, `status="error"`, `error_type="ProcessExited"`,
    under the call's own event id (so a call whose event was written after all is not doubled)."""
    event_id, wall_us, provider, endpoint, requested_model, who, _reservation, stream = fields
    tenant, user, org, feature, agent, session, tags = who
    attribution = Attribution(tenant, user, org, feature, agent, session, dict(tags or {}))
    meter = Metering(provider, endpoint, requested_model, attribution, None, bool(stream))
    meter.event_id, meter.wall = str(event_id), _EPOCH + int(wall_us) * _US
    return meter.event(
        pricer,
        Usage(estimated=True),
        complete=False,
        status="error",
        error_type=INTERRUPTED,
        unpriced_reason=_INTERRUPTED_REASON,
    )
