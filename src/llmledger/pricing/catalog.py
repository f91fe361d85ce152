"""The maintained price catalogue (genai-prices), with lookups and compiled prices cached.

Prices are picked at the event's own timestamp (price history) and service tier (price variants).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider

from llmledger.identity import admission_identity, generation
from llmledger.pricing.compiled import CompiledPrice

__all__ = ["PROVIDER_ALIASES", "Catalog", "CatalogEntry", "UnknownPrice"]

PROVIDER_ALIASES: dict[str, str] = {
    "xai": "x-ai",
    "bedrock": "aws",
    "anthropic-bedrock": "aws",
    "aws-bedrock": "aws",
    "gemini": "google",
    "google-vertex": "google",
    "vertex": "google",
    "anthropic-vertex": "anthropic",
    "azure-openai": "azure",
    "moonshot": "moonshotai",
}
"""llmledger provider ids that the catalogue knows under another name."""

_MAX_CACHE = 4096


class UnknownPrice(LookupError):
    """The catalogue has no price for this provider/model; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.generation = generation()


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A catalogue model matched for a provider and model name."""

    provider: Provider
    model: ModelInfo


class Catalog:
    """Thread-safe, cached access to the genai-prices snapshot bundled with the installed package."""

    def __init__(self) -> None:
        self._snapshot = data_snapshot.get_snapshot()
        self._entries: dict[tuple[str | None, str], CatalogEntry | UnknownPrice] = {}
        self._compiled: dict[tuple[tuple[str, int], ...], tuple[CompiledPrice, tuple[object, ...]]] = {}
        self._by_identity: dict[int, tuple[CompiledPrice, ModelPrice]] = {}
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        """The genai-prices version whose data this catalogue uses."""
        return str(genai_prices.__version__)

    def entry(self, provider: str | None, model: str) -> CatalogEntry:
        """Find the catalogue model for `provider`/`model`. Raises `UnknownPrice` with the reason."""
        found = self.lookup(provider, model)
        if isinstance(found, UnknownPrice):
            raise UnknownPrice(str(found))  # a fresh exception: never re-raise the cached one
        return found

    def lookup(self, provider: str | None, model: str) -> CatalogEntry | UnknownPrice:
        """Like `entry()`, but returns the (cached) `UnknownPrice` instead of raising it: the hot
        path must not pay for an exception, nor grow one cached exception's traceback."""
        key = (provider, model)
        found = self._entries.get(key)
        if isinstance(found, UnknownPrice) and found.generation != generation():
            found = None  # an alias was set or a name learned since: look again
        if found is None:
            found = self._find(provider, model)
            with self._lock:
                if len(self._entries) >= _MAX_CACHE:
                    self._entries.clear()
                self._entries[key] = found
        return found

    def _find(self, provider: str | None, model: str, follow: bool = True) -> CatalogEntry | UnknownPrice:
        provider_id = PROVIDER_ALIASES.get(provider, provider) if provider else None
        try:
            prov, info = self._snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError as exc:
            identity = admission_identity(model, provider)  # an alias or a learned Azure deployment
            if follow and identity is not None and identity != model:
                found = self._find(provider, identity, follow=False)  # one step: never a loop
                if not isinstance(found, UnknownPrice):
                    return found
            where = f"provider {provider!r}" if provider else "any provider"
            return UnknownPrice(
                f"model {model!r} of {where} is not in the price catalogue "
                f"(genai-prices {self.version}): {exc}; add it to a price overrides file"
            )
        return CatalogEntry(prov, info)

    def model_price(self, entry: CatalogEntry, at: datetime, service_tier: str | None) -> ModelPrice:
        """The entry's prices in force at `at` for `service_tier` (price history and variants)."""
        context = {"service_tier": service_tier} if service_tier else None
        return entry.model.get_prices(at, context)

    def compiled(self, model_price: ModelPrice) -> CompiledPrice:
        """A `CompiledPrice` for `model_price`, built once per distinct set of prices."""
        same = self._by_identity.get(id(model_price))
        if same is not None and same[1] is model_price:  # the catalogue's own (unvaried) object
            return same[0]
        items = tuple((k, v) for k, v in model_price.__dict__.items() if v is not None)
        key = tuple((k, id(v)) for k, v in items)
        hit = self._compiled.get(key)
        if hit is not None:
            return hit[0]
        compiled = CompiledPrice(model_price)
        with self._lock:
            if len(self._compiled) >= _MAX_CACHE:
                self._compiled.clear()
            # keep the values alive so that their ids cannot be reused by other objects
            self._compiled[key] = (compiled, items)
            if len(self._by_identity) >= _MAX_CACHE:
                self._by_identity.clear()
            self._by_identity[id(model_price)] = (compiled, model_price)
        return compiled
