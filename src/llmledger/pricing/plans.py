"""The pricer's cache: what prices a (provider, model, service tier), per price period.

Resolving a price means finding the catalogue model, picking its prices in force at the call's
time (price history, time-of-day prices, service-tier variants), the override rule in force and
the adjustments that apply, and compiling the result. All of that depends on the call's time only
through a few yes/no questions: is each dated or time-of-day constraint of the model active, has
each matching override rule started, does each matching adjustment apply. The answers are the
*price period* of the call; a `Plan` keeps one resolved price per period it has seen, so a call
pays for those questions (none for most models) and one dictionary look-up, not a resolution.

A plan is exact by construction: two calls with the same answers get the same prices from the
uncached resolution (`Pricer._resolve`, run once per period).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from genai_prices.types import ModelPrice, StartDateConstraint, TimeOfDateConstraint

from llmledger.events.schema import CostSource
from llmledger.pricing.catalog import CatalogEntry, UnknownPrice
from llmledger.pricing.compiled import CompiledPrice
from llmledger.pricing.overrides import Adjustment, Overrides, PriceRule

__all__ = ["Plan", "Resolved", "plan_for"]

_MAX_PERIODS = 64


@dataclass(frozen=True, slots=True)
class Resolved:
    """A price resolved for one period: how to price usage, or why it cannot be priced."""

    compiled: CompiledPrice | None
    source: CostSource = "catalog"
    tier: str | None = None
    """`service_tier:<tier>` when the reported tier has no price of its own."""
    multiplier: Decimal = Decimal(1)
    reason: str | None = None
    """Why nothing prices this call (`compiled` is None)."""
    origin: str = ""
    """What `compiled` is (a rule's origin or the catalogue model's id), for error messages."""


Constraint = StartDateConstraint | TimeOfDateConstraint


class Plan:
    """The time-dependent parts of one (provider, model, service tier)'s price and the prices
    resolved so far per period. Safe to share across threads (a race resolves a period twice)."""

    __slots__ = ("adjustments", "constraints", "entry", "generation", "overrides", "periods", "rules")

    def __init__(
        self,
        overrides: Overrides,
        entry: CatalogEntry | UnknownPrice,
        constraints: tuple[Constraint, ...],
        rules: tuple[PriceRule, ...],
        adjustments: tuple[Adjustment, ...],
    ) -> None:
        self.overrides = overrides
        self.entry = entry
        self.generation = entry.generation if isinstance(entry, UnknownPrice) else None
        self.constraints = constraints
        self.rules = rules
        self.adjustments = adjustments
        self.periods: dict[tuple[bool, ...], Resolved] = {}

    def period(self, at: datetime) -> tuple[bool, ...]:
        """The price period of a call at `at`: the answer to each time-dependent question."""
        if not (self.constraints or self.rules or self.adjustments):
            return ()
        out = [c.active(at) for c in self.constraints]
        out += [r.since <= at for r in self.rules]
        out += [a.since <= at and (a.until is None or at < a.until) for a in self.adjustments]
        return tuple(out)

    def store(self, period: tuple[bool, ...], resolved: Resolved) -> Resolved:
        """Keep the price resolved for `period` (what `period(at)` answered); returns it."""
        if len(self.periods) >= _MAX_PERIODS:
            self.periods.clear()
        self.periods[period] = resolved
        return resolved


def plan_for(
    overrides: Overrides,
    provider: str,
    model: str,
    service_tier: str | None,
    entry: CatalogEntry | UnknownPrice,
) -> Plan:
    """The plan of `provider`/`model` at `service_tier`, whose catalogue entry is `entry`."""
    constraints: list[Constraint] = []
    if isinstance(entry, CatalogEntry):
        info = entry.model
        if not isinstance(info.prices, ModelPrice):
            constraints += [c.constraint for c in info.prices if c.constraint is not None]
        if service_tier:  # the variants `get_prices` applies for this tier (see Catalog.model_price)
            context = {"service_tier": service_tier}
            for variant in info.price_variants or ():
                if variant.constraint is not None and all(
                    context.get(k) == v for k, v in variant.when.items()
                ):
                    constraints.append(variant.constraint)
    rules = tuple(r for r in overrides.rules if r.matches(provider, model))
    adjustments = tuple(a for a in overrides.adjustments if a.matches(provider, model))
    return Plan(overrides, entry, tuple(constraints), rules, adjustments)
