"""Price overrides from a TOML file: contract prices, models the catalogue lacks, discounts, markups.

```toml
[[prices]]                      # a price for models matching `model` (exact name or glob)
provider = "openai"
model = "gpt-4o*"
since = "2025-01-01"            # optional: in force from this UTC date/time (price history)
input_mtok = "2.00"             # any genai-prices price key, USD per million (or per unit count)
output_mtok = "8.00"
cache_read_mtok = "1.00"

[[prices]]                      # rates the catalogue lacks, laid over its price for the model
provider = "openai"
model = "gpt-4o-audio-preview*"
extends_catalog = true
input_audio_mtok = "40"
output_audio_mtok = "80"

[[adjustments]]                 # multiply catalogue prices: 0.85 = 15 % discount, 1.2 = 20 % markup
provider = "anthropic"          # optional ("*" = any)
model = "claude-*"              # optional ("*" = any)
multiplier = "0.85"
since = "2026-01-01"            # optional
until = "2027-01-01"            # optional, exclusive
```
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from genai_prices.types import ModelPrice, Tier, TieredPrices
from genai_prices.units import _get_registry

from llmledger.errors import PriceOverrideError
from llmledger.pricing.compiled import CompiledPrice

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["MAX_RATE", "Adjustment", "Overrides", "PriceRule"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_RATE = Decimal(1_000_000)
"""The largest rate or multiplier an overrides file may give (USD per million tokens or per unit):
above it, one call's cost would pass the ledger's bound and be quarantined after `track()` returned it."""


@dataclass(frozen=True, slots=True)
class PriceRule:
    """A price for the models matching `model` at `provider`, in force from `since`."""

    provider: str
    model: str
    since: datetime
    prices: ModelPrice
    compiled: CompiledPrice
    origin: str
    extends: bool = False
    """`extends_catalog = true`: these rates are added to the catalogue's price for the model."""

    def matches(self, provider: str, model: str) -> bool:
        """True when this rule prices `provider`/`model`."""
        return _match(self.provider, provider) and _match(self.model, model)

    @property
    def exact(self) -> bool:
        """True when the rule names one model rather than a glob."""
        return not any(c in self.model for c in "*?[")


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A multiplier on catalogue prices (discount < 1 < markup) for matching models and dates."""

    provider: str
    model: str
    multiplier: Decimal
    since: datetime
    until: datetime | None
    origin: str

    def applies(self, provider: str, model: str, at: datetime) -> bool:
        """True when the adjustment covers this call."""
        in_time = self.since <= at and (self.until is None or at < self.until)
        return in_time and self.matches(provider, model)

    def matches(self, provider: str, model: str) -> bool:
        """True when the adjustment names `provider`/`model` (at some time)."""
        return _match(self.provider, provider) and _match(self.model, model)


def _match(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value or fnmatch.fnmatchcase(value, pattern)


class Overrides:
    """Parsed price overrides. Empty by default; `Overrides.load(path)` reads a TOML file."""

    def __init__(self, rules: list[PriceRule] | None = None, adjustments: list[Adjustment] | None = None):
        # Most specific first (exact names before globs), then newest first.
        self.rules = sorted(rules or [], key=lambda r: (not r.exact, -r.since.timestamp()))
        self.adjustments = list(adjustments or [])
        self.path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> Overrides:
        """Read a price overrides TOML file. Raises `PriceOverrideError` naming the bad entry."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise PriceOverrideError(f"price overrides file not found: {p}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise PriceOverrideError(f"price overrides file {p} is not valid TOML: {exc}") from exc
        except (OSError, UnicodeError, ValueError) as exc:  # a bad path (too long, invalid Unicode...)
            raise PriceOverrideError(f"cannot read the price overrides file {str(p)!r}: {exc}") from exc
        out = cls.from_dict(data, origin=str(p))
        out.path = p
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "<dict>") -> Overrides:
        """Build overrides from the parsed TOML structure."""
        unknown = set(data) - {"prices", "adjustments"}
        if unknown:
            raise PriceOverrideError(
                f"{origin}: unknown section(s) {sorted(unknown)}; use [[prices]] or [[adjustments]]"
            )
        rules = [
            _rule(entry, f"{origin} prices[{i}]") for i, entry in enumerate(_tables(data, "prices", origin))
        ]
        adjustments = [
            _adjustment(entry, f"{origin} adjustments[{i}]")
            for i, entry in enumerate(_tables(data, "adjustments", origin))
        ]
        return cls(rules, adjustments)

    def rule_for(self, provider: str, model: str, at: datetime) -> PriceRule | None:
        """The override price in force for this call, if any."""
        for rule in self.rules:
            if rule.since <= at and rule.matches(provider, model):
                return rule
        return None

    def multiplier(self, provider: str, model: str, at: datetime) -> tuple[Decimal, list[Adjustment]]:
        """The product of every adjustment that applies, and those adjustments."""
        found = [a for a in self.adjustments if a.applies(provider, model, at)]
        total = Decimal(1)
        for a in found:
            total *= a.multiplier
        return total, found


def _tables(data: Mapping[str, Any], name: str, origin: str) -> list[Mapping[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise PriceOverrideError(f"{origin}: '{name}' must be an array of tables ([[{name}]])")
    return value


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PriceOverrideError(f"{where} must be a number or a decimal string, got {value!r}")
    try:
        dec = Decimal(str(value))
    except InvalidOperation as exc:
        raise PriceOverrideError(f"{where} must be a number or a decimal string, got {value!r}") from exc
    if not dec.is_finite() or not 0 <= dec <= MAX_RATE:
        raise PriceOverrideError(f"{where} must be a finite number >= 0 and <= {MAX_RATE}, got {value!r}")
    return dec


def _when(value: Any, where: str, default: datetime | None) -> datetime | None:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise PriceOverrideError(f"{where} must be a date like 2025-01-31, got {value!r}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise PriceOverrideError(f"{where} must be a date like 2025-01-31, got {value!r}")


def _name(entry: Mapping[str, Any], key: str, where: str, default: str | None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or not value:
        raise PriceOverrideError(f"{where}: '{key}' must be a non-empty string")
    return value


def _price_value(value: Any, where: str) -> Decimal | TieredPrices:
    if isinstance(value, Mapping):
        tiers_raw = value.get("tiers", [])
        if set(value) - {"base", "tiers"} or not isinstance(tiers_raw, list):
            raise PriceOverrideError(
                f"{where} tiered price must be {{ base = ..., tiers = [{{ start, price }}] }}"
            )
        tiers = []
        for i, tier in enumerate(tiers_raw):
            if not isinstance(tier, Mapping) or not isinstance(tier.get("start"), int):
                raise PriceOverrideError(f"{where}.tiers[{i}] needs an integer 'start' and a 'price'")
            tiers.append(
                Tier(start=tier["start"], price=_decimal(tier.get("price"), f"{where}.tiers[{i}].price"))
            )
        return TieredPrices(base=_decimal(value.get("base"), f"{where}.base"), tiers=tiers)
    return _decimal(value, where)


def _rule(entry: Mapping[str, Any], where: str) -> PriceRule:
    price_keys = {unit.price_key for unit in _get_registry().units.values()}
    meta = {"provider", "model", "since", "extends_catalog"}
    unknown = set(entry) - meta - price_keys
    if unknown:
        raise PriceOverrideError(
            f"{where}: unknown price key(s) {sorted(unknown)}; use e.g. input_mtok, output_mtok, "
            "cache_read_mtok, cache_write_mtok, cache_write_1h_mtok, input_audio_mtok, requests_kcount"
        )
    prices = {k: _price_value(v, f"{where}.{k}") for k, v in entry.items() if k in price_keys}
    if not prices:
        raise PriceOverrideError(f'{where}: give at least one price, e.g. input_mtok = "2.50"')
    extends = entry.get("extends_catalog", False)
    if not isinstance(extends, bool):
        raise PriceOverrideError(f"{where}.extends_catalog must be true or false, got {extends!r}")
    model_price = ModelPrice(**prices)
    try:  # rates that extend a catalogue price are checked laid over a text price
        compiled = CompiledPrice(
            ModelPrice(**{"input_mtok": Decimal(0), "output_mtok": Decimal(0), **prices})
            if extends
            else model_price
        )
    except ValueError as exc:
        raise PriceOverrideError(f"{where}: {exc}") from exc
    since = _when(entry.get("since"), f"{where}.since", _EPOCH)
    assert since is not None
    provider = _name(entry, "provider", where, None)
    model = _name(entry, "model", where, None)
    return PriceRule(provider, model, since, model_price, compiled, where, extends)


def _adjustment(entry: Mapping[str, Any], where: str) -> Adjustment:
    unknown = set(entry) - {"provider", "model", "multiplier", "since", "until"}
    if unknown:
        raise PriceOverrideError(f"{where}: unknown key(s) {sorted(unknown)}")
    if "multiplier" not in entry:
        raise PriceOverrideError(f"{where}: 'multiplier' is required (0.85 = 15 % discount)")
    since = _when(entry.get("since"), f"{where}.since", _EPOCH)
    assert since is not None
    return Adjustment(
        provider=_name(entry, "provider", where, "*"),
        model=_name(entry, "model", where, "*"),
        multiplier=_decimal(entry["multiplier"], f"{where}.multiplier"),
        since=since,
        until=_when(entry.get("until"), f"{where}.until", None),
        origin=where,
    )
