"""Spend limits in the gateway: a reservation before anything is forwarded, settled when the call
ends, released when nothing was sent. Refusals answer in the provider's own error format, so the
official SDKs raise their usual classes:

| refusal | status | SDK error |
|---|---|---|
| a hard limit (`LimitExceeded`) | 429, `Retry-After` = seconds to the window's reset | `RateLimitError` |
| a throttle (`RateLimited`) | 429, `Retry-After`, `x-should-retry: true` | `RateLimitError` |
| exhausted lifetime credit | 402 | `APIStatusError` (status 402) |
| a model without a price under a USD limit (`UnpricedRefused`) | 403 | `PermissionDeniedError` |
| the ledger cannot decide, `on_ledger_fault="closed"` | 503, `Retry-After: 1` | `InternalServerError` |

Limit refusals other than throttles carry `x-should-retry: false`: the SDKs would otherwise retry a
refusal that stands until the window resets. The message names the limit, the scope, what is
spent and reserved, and when it resets.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmledger.errors import LimitExceeded, LimitUndecided, RateLimited, UnpricedRefused
from llmledger.events.ids import uuid7
from llmledger.gateway.app import Refusal
from llmledger.gateway.meter import Metering

if TYPE_CHECKING:
    from llmledger.gateway.app import Gateway

__all__ = ["admit", "refusal_for", "release", "settle"]


def refusal_for(exc: LimitExceeded) -> Refusal:
    """The answer to a limit's refusal."""
    if isinstance(exc, UnpricedRefused):
        return Refusal(403, str(exc), "unpriced_refused", [(b"x-should-retry", b"false")])
    throttle = isinstance(exc, RateLimited)
    credit = exc.resets_at is None and not throttle
    headers = [(b"x-should-retry", b"true" if throttle else b"false")]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    if credit:
        return Refusal(402, str(exc), "credit_exhausted", headers)
    return Refusal(429, str(exc), "rate_limited" if throttle else "limit_exceeded", headers)


async def admit(gw: Gateway, meter: Metering, body: Mapping[str, Any]) -> str | None:
    """Reserve the call's worst case against the limits that apply (before it is forwarded).

    Returns the model to send instead when a soft limit's downgrade applies, else None. Raises
    `Refusal` when a limit refuses or the ledger cannot decide under `on_ledger_fault="closed"`."""
    engine = gw.engine
    limited = bool(engine.enforcer.limits())  # cached: no limit defined, nothing to decide
    rid = uuid7() if limited else None
    # the call and its reservation are journaled before either exists: a kill at any instant
    # leaves the call recorded as interrupted and the reservation released
    meter.held = gw.recorder.begin(meter, rid)
    if not limited:
        return None
    reserve = functools.partial(
        engine.reserve,
        meter.who,
        provider=meter.provider,
        model=meter.requested_model,
        body=body,
        reservation_id=rid,
    )
    try:
        reservation = await asyncio.get_running_loop().run_in_executor(gw.pool, reserve)
    except LimitExceeded as exc:
        _refused(gw, meter)
        raise refusal_for(exc) from None
    except LimitUndecided as exc:
        _refused(gw, meter)
        raise Refusal(503, str(exc), "limit_undecided", [(b"retry-after", b"1")]) from None
    except BaseException:
        _refused(gw, meter)
        raise
    meter.reservation = reservation.id
    if reservation.model is not None and reservation.model != meter.requested_model:
        meter.sent_model = reservation.model
        return reservation.model
    return None


def _refused(gw: Gateway, meter: Metering) -> None:
    held, meter.held = meter.held, None
    gw.recorder.unhold(held)


async def settle(gw: Gateway, meter: Metering, event: Any) -> None:
    """Hold the call's actual use instead of its worst case until its event is written."""
    if meter.reservation is not None:
        await asyncio.get_running_loop().run_in_executor(gw.pool, gw.engine.settle, meter.reservation, event)


async def release(gw: Gateway, meter: Metering) -> None:
    """Drop the reservation of a call that was never sent."""
    reservation, meter.reservation = meter.reservation, None
    held, meter.held = meter.held, None
    try:
        if reservation is not None:
            await asyncio.get_running_loop().run_in_executor(gw.pool, gw.engine.release, reservation)
    finally:
        gw.recorder.unhold(held)
