"""The pricer: turns usage into exact USD using overrides first, then the catalogue.

Order of precedence for an event's cost: a provider-reported cost (`cost_source="provider"`) or a
manual one (`"manual"`) is taken as given; otherwise an override rule (`"override"`); otherwise the
catalogue (`"catalog"`) times any adjustments (discounts / markups). A model that none of them prices
is recorded with `cost_usd=None` and the reason — never as $0.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from genai_prices.types import ModelPrice

from llmledger.events.event import CostSource
from llmledger.pricing.catalog import Catalog, UnknownPrice
from llmledger.pricing.compiled import UsageCounts
from llmledger.pricing.overrides import Overrides

__all__ = ["PriceResult", "Pricer", "Quote"]

_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class PriceResult:
    """The outcome of pricing one call: a cost and its source, or `None` and the reason."""

    cost: Decimal | None
    source: CostSource | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """The price that would be used for a model, and where it comes from (`llmledger prices`)."""

    provider: str
    model: str
    matched: str
    source: CostSource
    origin: str
    at: datetime
    service_tier: str | None
    prices: ModelPrice
    multiplier: Decimal = _ONE
    adjustments: tuple[str, ...] = field(default_factory=tuple)

    def price_lines(self) -> list[tuple[str, str]]:
        """(price key, value) pairs, e.g. ("input_mtok", "$2.5"), tiers spelled out."""
        out = []
        for key, value in self.prices.__dict__.items():
            if value is None or key.startswith("_"):
                continue
            if isinstance(value, Decimal):
                out.append((key, f"${value}"))
            else:
                tiers = ", ".join(f"${t.price} above {t.start:,} input tokens" for t in value.tiers)
                out.append((key, f"${value.base} ({tiers})"))
        return out


class Pricer:
    """Prices usage. Thread-safe; the catalogue (genai-prices data) is loaded on first use."""

    def __init__(self, overrides: Overrides | None = None) -> None:
        self.overrides = overrides or Overrides()
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()

    @property
    def catalog(self) -> Catalog:
        """The price catalogue (loaded once)."""
        catalog = self._catalog
        if catalog is None:
            with self._lock:
                if self._catalog is None:
                    self._catalog = Catalog()
                catalog = self._catalog
        return catalog

    def price(
        self, provider: str, model: str, usage: UsageCounts, at: datetime, service_tier: str | None = None
    ) -> PriceResult:
        """Price `usage` of `provider`/`model` at time `at`. Never raises for an unknown model."""
        overrides = self.overrides
        if overrides.rules:
            rule = overrides.rule_for(provider, model, at)
            if rule is not None:
                try:
                    return PriceResult(rule.compiled.cost(usage), "override")
                except ValueError as exc:
                    return PriceResult(None, None, f"override {rule.origin} cannot price this usage: {exc}")
        catalog = self.catalog
        entry = catalog.lookup(provider, model)
        if isinstance(entry, UnknownPrice):
            return PriceResult(None, None, str(entry))
        try:
            cost = catalog.compiled(catalog.model_price(entry, at, service_tier)).cost(usage)
        except ValueError as exc:
            return PriceResult(
                None, None, f"catalogue price of {entry.model.id} cannot price this usage: {exc}"
            )
        if overrides.adjustments:
            multiplier, _ = overrides.multiplier(provider, model, at)
            cost *= multiplier
        return PriceResult(cost, "catalog")

    def quote(self, provider: str | None, model: str, at: datetime, service_tier: str | None = None) -> Quote:
        """The price that `price()` would use. Raises `UnknownPrice` if there is none."""
        if provider is not None:
            rule = self.overrides.rule_for(provider, model, at)
            if rule is not None:
                return Quote(
                    provider, model, rule.model, "override", rule.origin, at, service_tier, rule.prices
                )
        entry = self.catalog.entry(provider, model)
        prov = provider or entry.provider.id
        multiplier, adjustments = self.overrides.multiplier(prov, model, at)
        return Quote(
            provider=prov,
            model=model,
            matched=f"{entry.provider.id}/{entry.model.id}",
            source="catalog",
            origin=f"genai-prices {self.catalog.version}",
            at=at,
            service_tier=service_tier,
            prices=self.catalog.model_price(entry, at, service_tier),
            multiplier=multiplier,
            adjustments=tuple(a.origin for a in adjustments),
        )
