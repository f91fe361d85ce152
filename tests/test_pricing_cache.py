"""The pricer's cache (a price resolved once per provider, model, service tier and price period)
gives exactly the prices of an uncached resolution: across price history (dated prices), time-of-day
prices, service-tier variants, long-context tiers, override rules with `since`, rules extending the
catalogue, and adjustments with `since`/`until`."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

from genai_prices import data_snapshot
from genai_prices.types import ModelPrice, StartDateConstraint, TieredPrices, TimeOfDateConstraint
from hypothesis import given, settings
from hypothesis import strategies as st

from llmledger.pricing.overrides import Overrides
from llmledger.pricing.pricer import Pricer, PriceResult

UTC = timezone.utc

OVERRIDES = {
    "prices": [
        {"provider": "acme", "model": "in-house-*", "input_mtok": "0.10", "output_mtok": "0.10"},
        {
            "provider": "acme",
            "model": "in-house-7b",
            "since": datetime(2026, 6, 1, 12, 30, tzinfo=UTC),
            "input_mtok": "0.05",
            "output_mtok": "0.05",
        },
        {
            "provider": "acme",
            "model": "long-ctx",
            "input_mtok": {"base": "1", "tiers": [{"start": 100_000, "price": "2"}]},
            "output_mtok": "4",
        },
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "since": datetime(2026, 3, 1, tzinfo=UTC),
            "extends_catalog": True,
            "requests_kcount": "7",
        },
    ],
    "adjustments": [
        {"provider": "anthropic", "multiplier": "0.80", "since": datetime(2026, 1, 1, tzinfo=UTC)},
        {
            "provider": "anthropic",
            "model": "claude-sonnet-4-*",
            "multiplier": "0.5",
            "since": datetime(2026, 2, 1, tzinfo=UTC),
            "until": datetime(2026, 2, 1, 6, tzinfo=UTC),
        },
    ],
}


def _models() -> list[tuple[str, str]]:
    """Catalogue models whose price depends on time or size, and a few plain ones."""
    out = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("google", "gemini-2.5-pro")]
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            prices = (
                [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
            )
            constraints = [] if isinstance(model.prices, ModelPrice) else [c.constraint for c in model.prices]
            constraints += [v.constraint for v in model.price_variants or ()]
            dated = any(isinstance(c, (StartDateConstraint, TimeOfDateConstraint)) for c in constraints)
            tiered = any(isinstance(v, TieredPrices) for p in prices for v in p.__dict__.values())
            if dated or tiered:
                out.append((provider.id, model.id))
    return out


MODELS = _models()
OVERRIDES_PARSED = Overrides.from_dict(OVERRIDES)
TARGETS = [*MODELS, ("acme", "in-house-7b"), ("acme", "in-house-13b"), ("acme", "long-ctx"), ("acme", "nope")]
TIERS = [None, "default", "priority", "flex", "fast", "batch"]
USAGES = [
    {"input_tokens": 1_000, "output_tokens": 200},
    {"input_tokens": 250_000, "cache_read_tokens": 20_000, "output_tokens": 3_000},  # a long context
    {"input_tokens": 5_000, "cache_write_tokens": 1_000, "cache_write_1h_tokens": 500, "output_tokens": 10},
    {"input_tokens": 2_000, "input_audio_tokens": 600, "output_tokens": 50, "output_reasoning_tokens": 20},
    {"input_tokens": 10, "output_tokens": 10, "web_search_requests": 2},
]


_REFERENCE: dict[int, Pricer] = {}


def _uncached(
    overrides: Overrides, provider: str, model: str, usage: dict[str, int], at: datetime, tier: str | None
) -> PriceResult:
    """The price from a pricer that remembers no plan (its catalogue is loaded once)."""
    fresh = _REFERENCE.setdefault(id(overrides), Pricer(overrides))
    fresh._plans.clear()
    return fresh.price(provider, model, usage, at, tier)


def test_models_with_dated_time_of_day_and_tiered_prices_are_covered() -> None:
    assert ("deepseek", "deepseek-chat") in MODELS  # off-peak (time-of-day) prices
    assert len(MODELS) > 100


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(TARGETS),
            st.sampled_from(TIERS),
            st.sampled_from(USAGES),
            st.datetimes(datetime(2023, 1, 1), datetime(2028, 1, 1), timezones=st.just(UTC)),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_cached_prices_equal_uncached_prices(
    calls: list[tuple[tuple[str, str], str | None, dict[str, int], datetime]],
) -> None:
    overrides = OVERRIDES_PARSED
    cached = Pricer(overrides)
    for (provider, model), tier, usage, at in calls:
        for when in (at, at + timedelta(hours=12), at - timedelta(days=40)):  # other periods, same plan
            got = cached.price(provider, model, usage, when, tier)
            want = _uncached(overrides, provider, model, usage, when, tier)
            assert got == want, (provider, model, tier, when)
            assert str(got.cost) == str(want.cost)  # the same Decimal, digit for digit


def test_time_of_day_prices_change_within_one_cached_plan() -> None:
    pricer = Pricer()
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    day = datetime(2025, 6, 1, tzinfo=UTC)
    costs = {}
    for hour in range(24):
        at = datetime.combine(day.date(), time(hour, 0), tzinfo=UTC)
        costs[hour] = pricer.price("deepseek", "deepseek-chat", usage, at).cost
        assert costs[hour] == _uncached(Overrides(), "deepseek", "deepseek-chat", usage, at, None).cost
    assert len(set(costs.values())) == 2  # peak and off-peak, from one plan


def test_override_since_and_adjustment_window_are_periods() -> None:
    overrides = Overrides.from_dict(OVERRIDES)
    pricer = Pricer(overrides)
    usage = {"input_tokens": 1_000_000}
    before = datetime(2026, 6, 1, 12, 29, 59, tzinfo=UTC)
    after = before + timedelta(seconds=1)
    assert pricer.price("acme", "in-house-7b", usage, before).cost == Decimal("0.10")
    assert pricer.price("acme", "in-house-7b", usage, after).cost == Decimal("0.05")
    assert pricer.price("acme", "in-house-7b", usage, before).cost == Decimal("0.10")
    start = datetime(2026, 2, 1, tzinfo=UTC)
    base = Pricer().price("anthropic", "claude-sonnet-4-5", usage, start).cost
    assert base is not None
    inside = pricer.price("anthropic", "claude-sonnet-4-5", usage, start + timedelta(hours=1)).cost
    outside = pricer.price("anthropic", "claude-sonnet-4-5", usage, start + timedelta(hours=6)).cost
    assert inside == base * Decimal("0.80") * Decimal("0.5")
    assert outside == base * Decimal("0.80")


def test_new_overrides_replace_the_cached_prices() -> None:
    pricer = Pricer()
    usage = {"input_tokens": 1_000_000}
    assert pricer.price("acme", "in-house-7b", usage, datetime(2026, 1, 1, tzinfo=UTC)).cost is None
    pricer.overrides = Overrides.from_dict(OVERRIDES)
    assert pricer.price("acme", "in-house-7b", usage, datetime(2026, 1, 1, tzinfo=UTC)).cost == Decimal(
        "0.10"
    )
