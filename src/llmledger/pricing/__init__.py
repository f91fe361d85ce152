"""Pricing: the genai-prices catalogue, price overrides (TOML) and the pricer that combines them."""

from llmledger.pricing.overrides import Adjustment, Overrides, PriceRule
from llmledger.pricing.pricer import Pricer, PriceResult, Quote

__all__ = ["Adjustment", "Overrides", "PriceResult", "PriceRule", "Pricer", "Quote"]
