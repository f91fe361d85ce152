"""The price of one call's usage: the one rule the SDK (`track()`, the instrumentation) and the
engine (events ingested without a cost) share.

A provider-reported cost is the call's cost (it is the bill) and llmledger's own price is kept beside
it; otherwise overrides or the catalogue price it, and a usage breakdown without a rate makes the
event partially priced (never priced at another modality's rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger._internal import internal_error
from llmledger.events.schema import TOKEN_FIELDS

if TYPE_CHECKING:  # `import llmledger` stays light: the catalogue loads on the first price
    from llmledger.pricing.pricer import Pricer

__all__ = ["PRICE_KEYS", "price_call"]

PRICE_KEYS: dict[str, str] = {name: name for name in TOKEN_FIELDS}
"""Event token field -> genai-prices usage key."""
PRICE_KEYS["reasoning_tokens"] = "output_reasoning_tokens"


def price_call(
    pricer: Pricer,
    provider: str,
    model: str,
    tokens: Mapping[str, int],
    units: Mapping[str, int | Decimal] | None,
    timestamp: datetime,
    service_tier: str | None,
    provider_cost: Decimal | None,
    notes: list[str],
) -> tuple[Decimal | None, Any, str | None, bool, Decimal | None]:
    """(cost, source, unpriced reason, partially priced, llmledger's own price beside a provider's).

    A provider-reported cost is the call's cost (it is the bill); llmledger's own price is computed
    beside it and a difference of more than 1 % is noted and counted. Otherwise the price comes from
    overrides or the catalogue; a breakdown without a rate makes the event partially priced."""
    usage: dict[str, int | Decimal] = {PRICE_KEYS[k]: v for k, v in tokens.items() if v}
    if units:
        usage.update(units)
    try:
        priced = pricer.price(provider, model, usage, timestamp, service_tier)
    except Exception as exc:
        internal_error(exc, "pricing")
        if provider_cost is not None:
            return provider_cost, "provider", None, False, None
        return None, None, f"internal pricing error: {type(exc).__name__}: {exc}", False, None
    if provider_cost is not None:
        ours = priced.cost
        if (
            ours is not None
            and not priced.missing
            and abs(ours - provider_cost) > max(ours, provider_cost) / 100
        ):
            differs = f"provider-reported cost ${provider_cost} differs from llmledger's price ${ours}"
            notes.append(differs)
            pricer.noted("cost_disagreement", f"{provider}/{model}", differs)
        return provider_cost, "provider", None, False, ours
    note = priced.note()
    if note is not None and priced.cost is not None:
        notes.insert(0, note)
        pricer.noted("partially_priced", f"{provider}/{model}", note)
        return priced.cost, priced.source, None, True, None
    return priced.cost, priced.source, priced.reason, False, None
