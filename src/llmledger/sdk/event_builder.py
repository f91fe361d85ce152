"""The one builder of a metered call's event: priced usage + attribution + timings -> `UsageEvent`.

`usage_event` is shared by every door that meters a call in this process: the SDK's hooks and
`track()` (through `build_usage_event`, which lays the call's attribution over the `init()`
defaults) and the gateway (`gateway/meter.py`), so an event means the same whichever door made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger.attribution.context import Attribution
from llmledger.events.event import UsageEvent, build_event
from llmledger.events.ids import uuid7
from llmledger.events.schema import SCHEMA_VERSION, Status
from llmledger.pricing.call import price_call

if TYPE_CHECKING:  # `import llmledger` stays light: the catalogue loads on the first price
    from llmledger.pricing.pricer import Pricer
    from llmledger.sdk.runtime import Runtime

__all__ = ["build_usage_event", "usage_event"]


def build_usage_event(
    runtime: Runtime,
    provider: str,
    model: str,
    tokens: Mapping[str, int],
    who: Attribution,
    timestamp: datetime,
    **fields: Any,
) -> UsageEvent:
    """Price already-valid usage and build its event (shared by `track()` and the instrumentation):
    `usage_event` with the runtime's pricer, `who` laid over the `init()` defaults. `fields`: the
    keywords of `usage_event`.

    Not public: it trusts its input. `tokens` maps event token fields to counts (missing means 0).
    `unpriced_reason` forces an unpriced event (for calls whose usage could not be known). `notes`
    (normalised usage, from the instrumentation) go into the event's `cost_note`. `event_id`: the
    id fixed when the call was journaled (a new UUIDv7 when None).
    """
    return usage_event(
        runtime.pricer, provider, model, tokens, runtime.config.defaults.merged(who), timestamp, **fields
    )


def usage_event(
    pricer: Pricer,
    provider: str,
    model: str,
    tokens: Mapping[str, int],
    who: Attribution,
    timestamp: datetime,
    *,
    units: Mapping[str, int | Decimal] | None = None,
    provider_cost: Decimal | None = None,
    manual_cost: Decimal | None = None,
    requested_model: str | None = None,
    endpoint: str | None = None,
    service_tier: str | None = None,
    duration_ms: float | None = None,
    time_to_first_token_ms: float | None = None,
    stream: bool = False,
    complete: bool = True,
    status: Status = "ok",
    error_type: str | None = None,
    request_id: str | None = None,
    estimated: bool = False,
    unpriced_reason: str | None = None,
    notes: list[str] | None = None,
    event_id: str | None = None,
) -> UsageEvent:
    """The one builder of a metered call's event from (provider, model, usage, attribution,
    timings): priced by `pricer` with the rule every door shares (`price_call`). Used by the SDK's
    hooks and `track()` (through `build_usage_event`, which lays `who` over the `init()` defaults)
    and by the gateway. It trusts its input, as `build_usage_event`."""
    source: Any
    cost: Decimal | None
    reason: str | None = None
    partial = False
    computed: Decimal | None = None
    notes = list(notes) if notes else []
    if unpriced_reason is not None:
        cost, source, reason = None, None, unpriced_reason
    elif manual_cost is not None and provider_cost is None:
        cost, source = manual_cost, "manual"
    else:
        cost, source, reason, partial, computed = price_call(
            pricer, provider, model, tokens, units, timestamp, service_tier, provider_cost, notes
        )
    if notes and any(n.startswith("usage ") for n in notes):
        pricer.noted("usage_normalised", f"{provider}/{model}", notes[0])
    get = tokens.get
    return build_event(
        (
            uuid7() if event_id is None else event_id,
            timestamp,
            provider,
            model,
            requested_model,
            endpoint,
            service_tier,
            get("input_tokens", 0),
            get("output_tokens", 0),
            get("cache_read_tokens", 0),
            get("cache_write_tokens", 0),
            get("cache_write_1h_tokens", 0),
            get("reasoning_tokens", 0),
            get("input_audio_tokens", 0),
            get("output_audio_tokens", 0),
            get("cache_audio_read_tokens", 0),
            get("input_image_tokens", 0),
            get("output_image_tokens", 0),
            dict(units) if units else {},
            cost,
            source,
            reason,
            partial,
            "; ".join(notes) if notes else None,
            computed,
            duration_ms,
            time_to_first_token_ms,
            stream,
            complete,
            status,
            error_type,
            request_id,
            estimated,
            who.tenant,
            who.user,
            who.org,
            who.feature,
            who.agent,
            who.session,
            who.tags,
            SCHEMA_VERSION,
        )
    )
