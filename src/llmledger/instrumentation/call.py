"""One metered call, and the stream loops every provider shares.

The caller's thread only reads the usage; the call is then queued as it is and priced into its
event on the writer thread (`Call.event`), which also runs `on_event` and the debug printer.

A `Call` is made when an instrumented request starts. It ends exactly once, whichever comes first:
a response (`ok`), an error before any response (`failed`), or the end of a stream — consumed,
closed early, broken by an error, or dropped and garbage-collected (`stream_end`). Every method is
guarded: a fault in here is an internal error (logged, counted), never the host app's problem.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from decimal import Decimal
from typing import Any, Protocol

from llmledger._internal import internal_error
from llmledger.attribution.context import Attribution
from llmledger.errors import LimitExceeded, LimitUndecided
from llmledger.events.event import UsageEvent
from llmledger.events.ids import IdStream, uuid7
from llmledger.instrumentation.usage import KEEP_CHARS, Usage
from llmledger.limit.model import scope_of_call
from llmledger.sdk import runtime as _rt
from llmledger.sdk.spool import Held, call_event, end_fields, hold
from llmledger.tokens import count_tokens
from llmledger.tokens.estimate import estimate_from_chars, request_text

__all__ = ["Call", "StreamReader", "meter_async", "meter_sync"]

_ZERO = Decimal(0)


class StreamReader(Protocol):
    """Reads usage from a provider's stream items, one at a time (a provider module implements it)."""

    final: bool
    """True once the provider's final usage has arrived."""

    def chunk(self, item: Any) -> bool:
        """Look at one item; return False to hide it from the caller (the injected usage chunk)."""
        ...

    def usage(self) -> Usage | None:
        """The usage seen so far, or None if the provider has reported none."""
        ...

    @property
    def chars(self) -> int:
        """Characters generated so far (only read to estimate a cut stream's output)."""
        ...

    def text(self) -> str:
        """The generated text kept so far (the first `KEEP_CHARS`), for a tokenizer to count."""
        ...


class Call:
    """The state of one instrumented request, from its start to its one recorded event."""

    __slots__ = (
        "built",
        "done",
        "duration",
        "endpoint",
        "estimate",
        "event_id",
        "held",
        "ids",
        "journaled",
        "outcome",
        "provider",
        "reader",
        "request",
        "requested_model",
        "reservation",
        "runtime",
        "seq",
        "t0",
        "ttft",
        "usage",
        "wall_us",
        "who",
    )

    def __init__(
        self,
        provider: str,
        endpoint: str,
        requested_model: str | None,
        who: Attribution,
        request: Mapping[str, Any] | None,
    ) -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.requested_model = requested_model
        self.who = who
        self.request = request  # the JSON body, only read to estimate tokens when usage is missing
        self.runtime: _rt.Runtime | None = None
        self.wall_us = time.time_ns() // 1000
        self.t0 = time.perf_counter()
        self.event_id: str | None = None
        """Fixed on the writer thread (`event()`): derived from `ids` and `seq`."""
        self.ids: IdStream | None = None
        self.seq = 0
        """This call's number in `ids` (0: none taken), written in its journal records."""
        self.journaled: Any = None  # the journal segment of this call's start record
        self.ttft: float | None = None
        self.reader: StreamReader | None = None
        self.reservation: str | None = None
        self.held: Held | None = None  # the journal record naming the reservation until `sent()`
        self.built: UsageEvent | None = None
        self.done = False
        self.duration = 0.0
        self.usage: Usage | None = None
        self.estimate: tuple[str, int, str, int, int] | None = None
        """(prompt text kept, its characters, generated text kept, its characters, output the
        provider reported) of an estimated call, for the writer thread to count with a tokenizer."""
        self.outcome: tuple[bool, bool, Any, str | None, Decimal | None, str | None] | None = None

    def sent(self) -> None:
        """The request is about to go out: fix the event id and journal the call's start, so that
        the call is accounted even if the process dies before it returns (see `sdk/spool.py`)."""
        runtime = _rt._runtime
        if runtime is not None and runtime.config.enabled:
            runtime.begin(self)
        held = self.held
        if held is not None:  # the start record names the reservation now
            self.held = None
            held.done()

    # -- endings ---------------------------------------------------------------------------------

    def ok(self, usage: Usage | None) -> None:
        """A complete (non-stream) response; `usage` None means the response carried none."""
        if self.done:
            return
        self.done = True
        try:
            if usage is None:
                self._emit(self._estimate(None, None), complete=True)
            else:
                self._emit(usage, complete=True)
        except Exception as exc:
            internal_error(exc, "recording a response")

    def failed(self, exc: BaseException) -> None:
        """The request failed before any response: nothing was generated, so nothing is billed."""
        if self.done:
            return
        self.done = True
        try:
            self._emit(
                Usage(),
                complete=False,
                status=_status_of(exc),
                error_type=type(exc).__name__,
                provider_cost=_ZERO,
            )
        except Exception as err:
            internal_error(err, "recording a failed request")

    def unknown(self, reason: str) -> None:
        """The response's usage could not be read (e.g. a raw body never parsed): record it unpriced."""
        if self.done:
            return
        self.done = True
        try:
            self._emit(Usage(estimated=True), complete=False, unpriced_reason=reason)
        except Exception as exc:
            internal_error(exc, "recording an unread response")

    def stream_end(self, complete: bool, exc: BaseException | None = None) -> None:
        """The stream ended: fully read, closed early, broken by `exc`, or garbage-collected."""
        if self.done:
            return
        if exc is not None and self.ttft is None:  # failed before its first chunk: nothing generated
            self.failed(exc)
            return
        self.done = True
        try:
            reader = self.reader
            partial = reader.usage() if reader is not None else None
            if reader is not None and reader.final and partial is not None:
                usage = partial
            else:  # no final usage: estimate what was generated and streamed; the stream was cut
                usage = self._estimate(partial, reader)
                complete = False
            if exc is None:
                self._emit(usage, complete=complete, stream=True)
            else:
                self._emit(
                    usage, complete=False, stream=True, status=_status_of(exc), error_type=type(exc).__name__
                )
        except Exception as err:
            internal_error(err, "recording a stream")

    def close_stream(self) -> None:
        """The caller closed the stream (possibly early); a no-op once the call has ended."""
        self.stream_end(complete=False)

    # -- helpers ---------------------------------------------------------------------------------

    def _estimate(self, partial: Usage | None, reader: StreamReader | None) -> Usage:
        """The usage of a call whose provider reported none (or only part): input from the request
        text, output from everything generated and streamed (text, reasoning, tool-call arguments,
        refusals), ~4 characters a token here on the caller's thread; the writer thread then counts
        them with the model's tokenizer where one is public (`_count_estimate`). Marked `estimated`."""
        usage = partial if partial is not None else Usage()
        tokens = usage.tokens
        prompt, prompt_chars = "", 0
        if not tokens.get("input_tokens"):
            prompt = request_text(self.request)
            prompt_chars = len(prompt)
            tokens["input_tokens"] = estimate_from_chars(prompt_chars)
        reported = tokens.get("output_tokens", 0)
        text, chars = (reader.text(), reader.chars) if reader is not None else ("", 0)
        if estimate_from_chars(chars) > reported:
            tokens["output_tokens"] = estimate_from_chars(chars)
        if prompt or text:  # the writer thread counts them with the model's tokenizer, if public
            self.estimate = (prompt[:KEEP_CHARS], prompt_chars, text[:KEEP_CHARS], chars, reported)
        usage.estimated = True
        return usage

    def _count_estimate(self, usage: Usage) -> None:
        """Replace ~4-characters-a-token estimates by the model's tokenizer count where it has a
        public one (`llmledger.tokens`, loaded here on the writer thread on first need)."""
        assert self.estimate is not None
        prompt, prompt_chars, text, chars, reported = self.estimate
        self.estimate = None
        model = usage.model or self.requested_model
        tokens = usage.tokens
        if prompt:
            counted = count_tokens(prompt, model)
            if counted is not None:
                tokens["input_tokens"] = counted + estimate_from_chars(prompt_chars - len(prompt))
        if text:
            counted = count_tokens(text, model)
            if counted is not None:
                tokens["output_tokens"] = max(reported, counted + estimate_from_chars(chars - len(text)))

    def _emit(
        self,
        usage: Usage,
        *,
        complete: bool,
        stream: bool = False,
        status: Any = "ok",
        error_type: str | None = None,
        provider_cost: Decimal | None = None,
        unpriced_reason: str | None = None,
    ) -> None:
        # Only capture here; pricing and building the event happen on the writer thread (`event()`),
        # so the caller pays for reading the usage and one queue append.
        self.duration = time.perf_counter() - self.t0
        self.request = self.reader = None  # the prompt is not kept while the call waits in the queue
        self.usage = usage
        self.outcome = (complete, stream, status, error_type, provider_cost, unpriced_reason)
        runtime = _rt._runtime  # the current one (init() may have replaced it since the call began)
        if runtime is not None:  # None: shut down since, so record nothing (and never revive one)
            self.runtime = runtime
            if self.reservation is not None:
                self._settle(runtime, self.reservation)
            runtime.record_later(self)

    def _settle(self, runtime: _rt.Runtime, reservation: str) -> None:
        # The call has ended: its reservation holds its actual cost from now on, not its worst case
        # until the writer commits the event (issue 8 part 4). The event is built here, once.
        try:
            self.built = self.event()
            runtime.enforcer.settle(reservation, self.built)
        except Exception as exc:
            internal_error(exc, "settling a reservation")

    def event(self) -> UsageEvent:
        """Price this finished call and build its event (once: by the writer thread, or at the end of
        a limited call, to settle its reservation)."""
        if self.built is not None:
            return self.built
        assert self.runtime is not None and self.usage is not None
        if self.estimate is not None:  # counted here, with the tokenizer (the journal has no text)
            self._count_estimate(self.usage)
        event_id = self.event_id
        if event_id is None:
            ids = self.ids
            event_id = self.event_id = uuid7() if ids is None else ids.id_at(self.wall_us, self.seq)
        return call_event(
            self.runtime,
            event_id,
            self.wall_us,
            self.provider,
            self.endpoint,
            self.requested_model,
            self.who,
            end_fields(self),
        )


def gate(call: Call) -> str | None:
    """Reserve the call's worst case against the spend limits that apply.

    Returns the model to send instead when a soft limit's `downgrade` applies (None otherwise); the
    event keeps the model the application asked for in `requested_model`. Raises `LimitExceeded`
    when a limit refuses, and `LimitUndecided` when the ledger cannot decide and
    `on_ledger_fault="closed"`; under `"open"` (the default) any other fault lets the call go on,
    counted in `stats().calls_unchecked`. Nothing is sent before this returns.
    """
    runtime = _rt.current()
    enforcer = runtime.enforcer
    try:
        if not enforcer.limits():
            return None
        who = runtime.config.defaults.merged(call.who)
        scope = scope_of_call(
            who, call.requested_model, call.provider, requested=call.requested_model, admitting=True
        )
        if not enforcer.applies(scope):  # no limit matches this call: no id, no record, no transaction
            return None
        # The reservation is journaled under its id before it exists: a process killed at any
        # instant between the commit and the call's start record still has it released on replay.
        rid = uuid7()
        held = hold(runtime, rid)
        try:
            call.reservation, swap = enforcer.admit(
                scope,
                provider=call.provider,
                model=call.requested_model,
                feature=who.feature,
                body=call.request,
                reservation_id=rid,
            )
        finally:
            if held is not None and call.reservation is None:
                held.done()
        call.held = held
    except (LimitExceeded, LimitUndecided):
        raise
    except Exception as exc:  # e.g. the limits could not be read: the on_ledger_fault policy
        enforcer.undecided(exc)
        return None
    if call.reservation is not None:
        # the call is counted when it is admitted (inside the lock or after), never earlier: a
        # rolling window or throttle must not see it roll out before its time (issue 8 part 4)
        call.wall_us = time.time_ns() // 1000
    return swap


def _status_of(exc: BaseException) -> str:
    name = type(exc).__name__
    return "cancelled" if name in ("CancelledError", "KeyboardInterrupt", "GeneratorExit") else "error"


def _keep(item: Any) -> bool:
    return True


def meter_sync(call: Call, reader: StreamReader, inner: Iterator[Any]) -> Iterator[Any]:
    """Yield `inner`'s items (those `reader` does not hide), ending `call` exactly once."""
    call.reader = reader
    chunk = reader.chunk
    try:
        for item in inner:
            if call.ttft is None:
                call.ttft = time.perf_counter()
            try:
                keep = chunk(item)
            except Exception as exc:  # a reader fault: stop reading, keep streaming
                internal_error(exc, "reading a stream chunk")
                chunk, keep = _keep, True
            if keep:
                yield item
    except GeneratorExit:
        call.stream_end(complete=False)
        raise
    except BaseException as exc:
        call.stream_end(complete=False, exc=exc)
        raise
    call.stream_end(complete=True)


async def meter_async(call: Call, reader: StreamReader, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The async twin of `meter_sync`."""
    call.reader = reader
    chunk = reader.chunk
    try:
        async for item in inner:
            if call.ttft is None:
                call.ttft = time.perf_counter()
            try:
                keep = chunk(item)
            except Exception as exc:
                internal_error(exc, "reading a stream chunk")
                chunk, keep = _keep, True
            if keep:
                yield item
    except GeneratorExit:
        call.stream_end(complete=False)
        raise
    except BaseException as exc:
        call.stream_end(complete=False, exc=exc)
        raise
    call.stream_end(complete=True)
