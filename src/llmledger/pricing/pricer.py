"""The pricer: turns usage into exact USD using overrides first, then the catalogue.

Order of precedence for an event's cost: a provider-reported cost (`cost_source="provider"`) or a
manual one (`"manual"`) is taken as given; otherwise an override rule (`"override"`); otherwise the
catalogue (`"catalog"`) times any adjustments (discounts / markups). A model that none of them prices
is recorded with `cost_usd=None` and the reason — never as $0.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from genai_prices.types import ModelPrice

from llmledger.events.schema import NON_TOKEN_UNITS, CostSource
from llmledger.identity import generation
from llmledger.pricing.catalog import Catalog, CatalogEntry, UnknownPrice
from llmledger.pricing.compiled import CompiledPrice, UsageCounts
from llmledger.pricing.overrides import Overrides, PriceRule
from llmledger.pricing.plans import Plan, Resolved, plan_for

__all__ = ["PriceResult", "Pricer", "Quote"]

_ONE = Decimal(1)
log = logging.getLogger("llmledger")

# Breakdowns whose rate differs from their parent's: without a rate of their own they would be
# charged at the parent's (text, 5-minute cache write) rate, so they are reported missing instead.
# Reasoning is not among them: every provider bills it as output.
_OWN_RATE = (
    "input_audio_tokens",
    "output_audio_tokens",
    "cache_audio_read_tokens",
    "input_image_tokens",
    "output_image_tokens",
)
_SIDE = {
    "input_audio_tokens": "input_tokens",
    "output_audio_tokens": "output_tokens",
    "cache_audio_read_tokens": "cache_read_tokens",
    "input_image_tokens": "input_tokens",
    "output_image_tokens": "output_tokens",
}
_MAY_MISS = frozenset((*_OWN_RATE, "cache_write_1h_tokens", *NON_TOKEN_UNITS))
"""Usage keys `_result` may find without a rate (any other key is priced or has none to miss)."""
_MAX_PLANS = 4096
_STANDARD_TIERS = frozenset(("standard", "default", "auto", "on_demand", "ondemand"))


def _result(
    compiled: CompiledPrice, usage: UsageCounts, source: CostSource, tier: str | None, multiplier: Decimal
) -> PriceResult:
    if tier is None and usage.keys().isdisjoint(_MAY_MISS):  # nothing can lack a rate
        cost = compiled.cost(usage)
        return PriceResult(cost * multiplier if multiplier != _ONE else cost, source, None, ())
    keys = compiled.keys
    # a breakdown that is its whole side (an image model's output) is priced by the side's rate
    missing = [k for k in _OWN_RATE if usage.get(k) and k not in keys and usage.get(k) != usage.get(_SIDE[k])]
    if (
        usage.get("cache_write_1h_tokens")
        and "cache_write_1h_tokens" not in keys
        and "cache_write_tokens" in keys
    ):
        missing.append("cache_write_1h_tokens")
    missing += sorted(k for k, v in usage.items() if v and k in NON_TOKEN_UNITS and k not in keys)
    if tier is not None:
        missing.append(tier)
    if missing:  # what has no rate is left out, never charged at its parent's (text) rate
        usage = _without(usage, missing)
    cost = compiled.cost(usage)
    return PriceResult(cost * multiplier if multiplier != _ONE else cost, source, None, tuple(missing))


_PARENTS = {
    "input_audio_tokens": ("input_tokens",),
    "input_image_tokens": ("input_tokens",),
    "output_audio_tokens": ("output_tokens",),
    "output_image_tokens": ("output_tokens",),
    "cache_audio_read_tokens": ("cache_read_tokens", "input_audio_tokens", "input_tokens"),
    "cache_write_1h_tokens": ("cache_write_tokens", "input_tokens"),
}


def _without(usage: UsageCounts, missing: list[str]) -> dict[str, int | Decimal]:
    """`usage` less the breakdowns in `missing` (and their counts in the totals above them)."""
    out = dict(usage)
    for key in missing:
        count = out.pop(key, 0) if key in _PARENTS else 0
        if key == "input_audio_tokens" and "cache_audio_read_tokens" not in missing:
            cached = out.pop("cache_audio_read_tokens", 0)
            out["cache_read_tokens"] = max(0, out.get("cache_read_tokens", 0) - cached)
        for parent in _PARENTS.get(key, ()):
            if parent in out:
                out[parent] = max(0, out[parent] - count)
    return out


def _missing_tier(entry: CatalogEntry, tier: str | None) -> str | None:
    """`service_tier:<tier>` when the provider reported a tier the catalogue has no price for."""
    if not tier or tier.lower() in _STANDARD_TIERS:
        return None
    for variant in entry.model.price_variants or ():
        if variant.when.get("service_tier") == tier:
            return None
    return f"service_tier:{tier}"


@dataclass(frozen=True, slots=True)
class PriceResult:
    """The outcome of pricing one call: a cost and its source, or `None` and the reason."""

    cost: Decimal | None
    source: CostSource | None
    reason: str | None = None
    missing: tuple[str, ...] = ()
    """Usage keys (or `service_tier:<tier>`) the price had no rate for: `cost` covers the rest."""

    def note(self) -> str | None:
        """What `missing` means, for the event's `cost_note`; None when nothing is missing."""
        if not self.missing:
            return None
        return "partially priced: no rate for " + ", ".join(self.missing) + " in the price record"


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
        self._extensions: dict[tuple[int, str], tuple[CompiledPrice, ModelPrice]] = {}
        self._noted: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()
        self._plans: dict[tuple[str, str, str | None], Plan] = {}

    def noted(self, kind: str, key: str, message: str) -> None:
        """Count one event with a pricing note of `kind` (`partially_priced`, `cost_disagreement`,
        `usage_normalised`) and log a warning the first time for `key` (e.g. provider/model)."""
        with self._lock:
            self._noted[kind] = self._noted.get(kind, 0) + 1
            first = len(self._warned) < 4096 and (kind, key) not in self._warned
            if first:
                self._warned.add((kind, key))
        if first:
            log.warning("llmledger: %s for %s: %s", kind.replace("_", " "), key, message)

    def notes(self) -> dict[str, int]:
        """How many events had each kind of pricing note in this process."""
        with self._lock:
            return dict(self._noted)

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
        """Price `usage` of `provider`/`model` at time `at`. Never raises for an unknown model.

        A usage breakdown the chosen price has no rate for (an audio or image count, a 1-hour cache
        write, a tool fee, a reported service tier) is never charged at another modality's rate
        silently: the result lists it in `missing` (the event is then partially priced).

        The price is resolved once per (provider, model, service tier, price period) and cached
        (`pricing/plans.py`); replace `overrides` (assign a new `Overrides`) to change them."""
        key = (provider, model, service_tier)
        plan = self._plans.get(key)
        if (
            plan is None
            or plan.overrides is not self.overrides
            or (plan.generation is not None and plan.generation != generation())
        ):
            plan = plan_for(
                self.overrides, provider, model, service_tier, self.catalog.lookup(provider, model)
            )
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        period = plan.period(at)
        found = plan.periods.get(period)
        if found is None:
            found = plan.store(period, self._resolve(plan, provider, model, at, service_tier))
        compiled = found.compiled
        if compiled is None:
            return PriceResult(None, None, found.reason)
        try:
            return _result(compiled, usage, found.source, found.tier, found.multiplier)
        except ValueError as exc:
            return PriceResult(None, None, f"{found.origin} cannot price this usage: {exc}")

    def _resolve(
        self, plan: Plan, provider: str, model: str, at: datetime, service_tier: str | None
    ) -> Resolved:
        """The price of `provider`/`model` at `at`, resolved without the cache (what `plan`
        caches for the period of `at`)."""
        overrides = plan.overrides
        rule = overrides.rule_for(provider, model, at) if overrides.rules else None
        if rule is not None and not rule.extends:
            return Resolved(rule.compiled, "override", origin=f"override {rule.origin}")
        entry = plan.entry
        if isinstance(entry, UnknownPrice):
            if rule is not None:
                return Resolved(None, reason=f"override {rule.origin} extends a catalogue price, but {entry}")
            return Resolved(None, reason=str(entry))
        catalog = self.catalog
        model_price = catalog.model_price(entry, at, service_tier)
        compiled = catalog.compiled(model_price) if rule is None else self._extended(model_price, rule)
        multiplier = _ONE
        if overrides.adjustments and rule is None:
            multiplier, _ = overrides.multiplier(provider, model, at)
        return Resolved(
            compiled,
            "catalog" if rule is None else "override",
            _missing_tier(entry, service_tier),
            multiplier,
            origin=f"catalogue price of {entry.model.id}",
        )

    def _extended(self, model_price: ModelPrice, rule: PriceRule) -> CompiledPrice:
        key = (id(model_price), rule.origin)
        hit = self._extensions.get(key)
        if hit is not None and hit[1] is model_price:
            return hit[0]
        merged = {k: v for k, v in model_price.__dict__.items() if v is not None and not k.startswith("_")}
        merged.update(
            {k: v for k, v in rule.prices.__dict__.items() if v is not None and not k.startswith("_")}
        )
        compiled = CompiledPrice(ModelPrice(**merged))
        with self._lock:
            if len(self._extensions) >= 1024:
                self._extensions.clear()
            self._extensions[key] = (compiled, model_price)
        return compiled

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
