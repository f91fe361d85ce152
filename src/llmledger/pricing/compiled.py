"""A `ModelPrice` compiled once into a fast cost function.

genai-prices resolves its unit registry on every `calc_price` call (about 100 µs), too slow for the
caller's thread. This module does that resolution once per distinct price and keeps the arithmetic
identical to genai-prices' own: each priced unit is charged for its *leaf* count (its usage minus the
leaves of the more specific priced units beneath it, e.g. input minus cache reads), tiers are chosen
by total input tokens, and `requests` counts one per call. Tests check it against `calc_price`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from genai_prices.decompose import is_descendant_or_self
from genai_prices.types import ModelPrice, TieredPrices, _collect_resolved_model_prices
from genai_prices.units import _get_registry
from genai_prices.validation import validate_priced_units

__all__ = ["CompiledPrice", "UsageCounts"]

UsageCounts = Mapping[str, int | Decimal]
"""Usage keyed by genai-prices usage keys (`input_tokens`, `cache_read_tokens`, ...)."""

_ZERO = Decimal(0)


class CompiledPrice:
    """Prices usage with one `ModelPrice`. Immutable and safe to share across threads."""

    __slots__ = ("_terms", "_tiered", "keys", "model_price")

    def __init__(self, model_price: ModelPrice) -> None:
        registry = _get_registry()
        resolved = _collect_resolved_model_prices(model_price, registry)
        validate_priced_units(tuple(unit for unit, _ in resolved), registry)
        self.model_price = model_price
        priced = sorted(
            ((unit, price) for unit, price in resolved),
            key=lambda up: (-len(up[0].dimensions), up[0].usage_key),
        )
        units = [unit for unit, _ in priced]
        terms: list[tuple[str, Decimal | TieredPrices, int, tuple[int, ...]]] = []
        for i, (unit, price) in enumerate(priced):
            below = tuple(
                j
                for j, other in enumerate(units)
                if j != i and other.usage_key != "requests" and is_descendant_or_self(unit, other)
            )
            terms.append((unit.usage_key, price, unit.per, below))
        self._terms = tuple(terms)
        self.keys = frozenset(unit.usage_key for unit in units)
        """The usage keys this price has a rate for."""
        self._tiered = any(isinstance(price, TieredPrices) for _, price, _, _ in terms)

    def cost(self, usage: UsageCounts) -> Decimal:
        """The exact USD cost of `usage`. Raises `ValueError` if a breakdown exceeds its total."""
        total_input = usage.get("input_tokens", 0) if self._tiered else 0
        leaves: list[int | Decimal] = []
        total = _ZERO
        for key, price, per, below in self._terms:
            if key == "requests":
                count: int | Decimal = 1
            else:
                count = usage.get(key, 0)
                for j in below:
                    count -= leaves[j]
                if count < 0:
                    raise ValueError(f"usage breakdowns beneath {key} exceed it ({count} left)")
            leaves.append(count)
            if not count:
                continue
            if isinstance(price, TieredPrices):
                rate = price.base
                for tier in reversed(price.tiers):
                    if total_input > tier.start:
                        rate = tier.price
                        break
            else:
                rate = price
            total += rate * count / per
        return total
