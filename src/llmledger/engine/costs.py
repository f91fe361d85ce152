"""What one call may use at most of a limit's metric: requests, tokens or USD at the dearest price.

Pure arithmetic over a `Shape` and the pricer (no I/O, no state): the enforcer decides which input
bound a limit uses (strict: the upper bound; estimate: the estimate or a learned average).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

from llmledger.limit import worst
from llmledger.limit.model import Limit
from llmledger.limit.shape import Shape
from llmledger.pricing.catalog import UnknownPrice
from llmledger.pricing.pricer import Pricer

__all__ = ["UNPRICED", "dearest_cost", "for_limit", "limit_amount"]

UNPRICED = Decimal(-1)
"""What `limit_amount` returns for a USD limit and a model without a price (see `Limit.unpriced`)."""
_TIERS_OF_AUTO = (None, "priority", "flex", "scale")


def for_limit(limit: Limit, shape: Shape) -> Shape:
    """The shape a limit reserves: strict limits the input bound, estimate limits the estimate."""
    if limit.enforcement == "strict" or shape.input_estimate is None:
        return shape
    return replace(shape, input_tokens=shape.input_estimate)


def dearest_cost(pricer: Pricer, provider: str, model: str | None, shape: Shape) -> Decimal | None:
    """The most `shape` can cost in USD at any tier it may be served at; None without a price."""
    now = datetime.now(timezone.utc)
    tiers = _TIERS_OF_AUTO if shape.tier == "auto" else (shape.tier,)
    dearest: Decimal | None = None
    for tier in tiers:
        try:
            quote = pricer.quote(provider, model or "unknown", now, tier)
        except UnknownPrice:
            continue
        cost = worst.rates_cost(quote.prices, shape, quote.multiplier)
        if tier == "priority":
            standard = pricer.quote(provider, model or "unknown", now, None)
            if standard.prices == quote.prices:  # the catalogue has no priority price
                cost *= worst.PRIORITY_FACTOR
        dearest = cost if dearest is None else max(dearest, cost)
    return dearest


def limit_amount(limit: Limit, pricer: Pricer, provider: str, model: str | None, shape: Shape) -> Decimal:
    """What one call of `shape` may use at most of `limit`'s metric (requests: 1; tokens: input bound
    plus tool input plus every choice's cap; USD: the dearest cost, or the limit's fallback price).
    Returns `UNPRICED` for a USD limit, a model without a price and no fallback price."""
    if limit.metric == "requests":
        return Decimal(1)
    shape = for_limit(limit, shape)
    tokens_in = shape.input_tokens + shape.tool_calls * worst.TOOL_INPUT_TOKENS
    if limit.metric == "tokens":
        return Decimal(tokens_in + shape.choices * shape.output_tokens)
    cost = dearest_cost(pricer, provider, model, shape)
    if cost is not None:
        return cost
    if limit.unpriced == "fallback" and limit.fallback_price is not None:
        per_in, per_out = limit.fallback_price
        return (tokens_in * per_in + shape.choices * shape.output_tokens * per_out) / 1_000_000
    return UNPRICED
