"""Pricing: the genai-prices catalogue, price overrides (TOML) and the pricer that combines them.

The names below load on first use (PEP 562), so that importing a light submodule such as
`llmledger.pricing.call` does not load the catalogue library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmledger.pricing.overrides import Adjustment, Overrides, PriceRule
    from llmledger.pricing.pricer import Pricer, PriceResult, Quote

__all__ = ["Adjustment", "Overrides", "PriceResult", "PriceRule", "Pricer", "Quote"]

_WHERE = {
    "Adjustment": "overrides",
    "Overrides": "overrides",
    "PriceRule": "overrides",
    "PriceResult": "pricer",
    "Pricer": "pricer",
    "Quote": "pricer",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'llmledger.pricing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"llmledger.pricing.{module}"), name)
