"""The answer going back to the gateway's client, and the call's event: a JSON body whole (with
`X-Ledger-Cost-USD`), a stream event by event as the upstream sends it (usage read on the way; a
client that leaves stops the upstream and is billed for what was streamed).
"""

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from llmledger._internal import internal_error
from llmledger.events.event import UsageEvent
from llmledger.events.schema import Status
from llmledger.gateway.app import Gateway, Receive, Refusal, Send, freeze_heap
from llmledger.gateway.enforce import settle
from llmledger.gateway.meter import Metering
from llmledger.gateway.relay import response_headers
from llmledger.gateway.upstream import UpstreamResponse
from llmledger.gateway.wire import SSEFramer, WireReader, event_data, loads, read_body
from llmledger.instrumentation.usage import Usage

__all__ = ["finish", "relay_stream", "relay_whole"]


async def finish(gw: Gateway, meter: Metering, event: UsageEvent) -> None:
    """Settle the call's reservation with its event, then record the event (its write drops the
    reservation)."""
    try:
        if meter.reservation is not None:
            await settle(gw, meter, event)
    finally:
        reservation, meter.reservation = meter.reservation, None
        held, meter.held = meter.held, None
        gw.recorder.record(event, reservation, held)
        if not gw.warm:  # the price catalogue and caches the first call loaded: kept for good
            gw.warm = True
            freeze_heap()
        gw.metrics.call(meter.endpoint, event.status)
        if event.status == "error" and event.error_type:
            gw.metrics.upstream_error(event.error_type)


async def relay_whole(
    gw: Gateway, meter: Metering, response: UpstreamResponse, send: Send, t0: float, t_up: float
) -> None:
    try:
        raw = await response.read()
    except OSError as exc:  # TimeoutError is an OSError
        timeout = isinstance(exc, TimeoutError)
        error_type = "Timeout" if timeout else type(exc).__name__
        await finish(
            gw,
            meter,
            meter.event(gw.engine.pricer, None, complete=False, status="error", error_type=error_type),
        )
        raise Refusal(
            504 if timeout else 502, "the upstream broke off its answer", "upstream_broken"
        ) from None
    waited = time.perf_counter() - t_up
    status = response.status
    extra: list[tuple[bytes, bytes]] = []
    if status < 400:
        usage, _ = read_body(meter.endpoint, raw)
        event = meter.event(
            gw.engine.pricer,
            usage if usage is not None else Usage(),
            unpriced_reason=None if usage is not None else "the response carried no usage",
        )
        if event.cost_usd is not None:
            extra.append((b"x-ledger-cost-usd", str(event.cost_usd).encode()))
    else:
        event = meter.event(
            gw.engine.pricer, None, complete=False, status="error", error_type=f"HTTP {status}"
        )
    overhead = (time.perf_counter() - t0 - waited) * 1000.0
    gw.metrics.overhead.observe(overhead / 1000.0)
    extra.append((b"content-length", str(len(raw)).encode()))
    extra.append((b"x-ledger-overhead-ms", f"{overhead:.3f}".encode()))
    await send(
        {"type": "http.response.start", "status": status, "headers": response_headers(response, extra)}
    )
    await send({"type": "http.response.body", "body": raw})
    await finish(gw, meter, event)  # journaled before this request ends, after the client has it


async def _watch(receive: Receive, response: UpstreamResponse, flag: list[bool]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            flag.append(True)
            response.close()  # closes the upstream connection: the provider stops generating
            return


async def relay_stream(
    gw: Gateway,
    meter: Metering,
    response: UpstreamResponse,
    send: Send,
    receive: Receive,
    reader: WireReader,
    t0: float,
    t_up: float,
) -> None:
    overhead = (time.perf_counter() - t0 - (time.perf_counter() - t_up)) * 1000.0
    gw.metrics.overhead.observe(overhead / 1000.0)
    head = response_headers(response, [(b"x-ledger-overhead-ms", f"{overhead:.3f}".encode())])
    await send({"type": "http.response.start", "status": response.status, "headers": head})
    gone: list[bool] = []
    watch = asyncio.ensure_future(_watch(receive, response, gone))
    framer = SSEFramer()
    look, defer = reader.event, reader.defer
    error: str | None = None
    ended = False  # the stream's own end (`data: [DONE]`) was relayed
    try:
        async for chunk in response:
            if meter.ttft is None:
                meter.ttft = time.perf_counter()
            events = framer.feed(chunk)
            if not events:
                continue
            out = []
            for event in events:
                data = event_data(event)
                keep = True
                if data is not None and data[:1] == b"{":
                    try:
                        if not defer(data):  # an event of text only is read if the text is wanted
                            keep = look(loads(data))
                    except ValueError:
                        pass
                    except Exception as exc:  # a reader fault: keep relaying, stop reading
                        internal_error(exc, "reading a gateway stream event")
                        look, defer = _keep, _never
                elif data == b"[DONE]":
                    ended = True
                if keep:
                    out.append(event)
            if out:
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
            if gone:
                break
    except OSError as exc:
        if not gone:
            error = "Timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
    finally:
        watch.cancel()
    if not gone and error is None:
        rest = framer.rest()
        await send({"type": "http.response.body", "body": rest, "more_body": False})
    # A client that hangs up once it has the stream's end (an SDK closes its connection after
    # `[DONE]` or the final usage, before the last chunk of the HTTP body, more often while the
    # server drains for a shutdown) was not cut off: its answer was whole.
    cut = bool(gone) and not (ended or reader.final)
    await _end_stream(gw, meter, reader, cut, error)
    # An upstream that broke off its stream: the response is left unfinished (no last chunk), so
    # the server drops the connection and the client sees the cut as it would have directly (the
    # SDKs raise a connection error), never a clean end of a truncated answer.


def _keep(obj: Mapping[str, Any]) -> bool:
    return True


def _never(data: bytes) -> bool:
    return False


async def _end_stream(
    gw: Gateway, meter: Metering, reader: WireReader, gone: bool, error: str | None
) -> None:
    usage = reader.usage()
    pricer = gw.engine.pricer
    if reader.final and usage is not None:
        event = meter.event(
            pricer,
            usage,
            complete=not gone and error is None,
            status="ok" if error is None else "error",
            error_type=error,
        )
    else:  # cut short: bill input plus what was streamed, estimated (counted off the loop)
        try:
            reader.catch_up()  # the text events kept unread
        except Exception as exc:  # a reader fault: what was read before it is estimated
            internal_error(exc, "reading a gateway stream event")
        loop = asyncio.get_running_loop()
        text, chars = reader.text(), reader.chars
        estimated = await loop.run_in_executor(gw.pool, meter.estimate, usage, chars, text)
        status: Status = "cancelled" if gone else ("error" if error else "ok")
        event = meter.event(
            pricer,
            estimated,
            complete=False,
            status=status,
            error_type="ClientDisconnected" if gone else error,
        )
    await finish(gw, meter, event)
