"""Pricing: exact costs from the catalogue, the compiled fast path, overrides and adjustments."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price, data_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import llmledger
from llmledger import PriceOverrideError
from llmledger.pricing import Overrides, Pricer
from llmledger.pricing.catalog import Catalog, UnknownPrice
from llmledger.pricing.compiled import CompiledPrice

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_openai_cached_and_reasoning_cost_equals_the_published_price(ledger: object) -> None:
    # gpt-4o-mini: $0.15 / MTok input, $0.075 cached input, $0.60 output (reasoning billed as output)
    event = llmledger.track(
        provider="openai",
        model="gpt-4o-mini-2024-07-18",
        input_tokens=10_000,
        cache_read_tokens=4_000,
        output_tokens=2_000,
        reasoning_tokens=1_500,
    )
    expected = (
        Decimal(6_000) * Decimal("0.15") + Decimal(4_000) * Decimal("0.075") + Decimal(2_000) * Decimal("0.6")
    )
    assert event.cost_usd == expected / 1_000_000
    assert event.cost_source == "catalog"


def test_anthropic_cache_writes_at_5m_and_1h_rates(ledger: object) -> None:
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 5-minute write, $6 1-hour write, $15 output
    event = llmledger.track(
        provider="anthropic",
        model="claude-sonnet-4-5-20250929",
        input_tokens=1_000 + 2_000 + 3_000 + 500,  # uncached + read + 5m write + 1h write
        cache_read_tokens=2_000,
        cache_write_tokens=3_500,
        cache_write_1h_tokens=500,
        output_tokens=700,
    )
    expected = (
        Decimal(1_000) * 3
        + Decimal(2_000) * Decimal("0.3")
        + Decimal(3_000) * Decimal("3.75")
        + Decimal(500) * 6
    ) + Decimal(700) * 15
    assert event.cost_usd == expected / 1_000_000


def test_long_context_tier_reprices_the_whole_request(ledger: object) -> None:
    # claude-sonnet-4-5 above 200k input tokens: $6 input / $22.50 output for the whole request
    event = llmledger.track(
        provider="anthropic", model="claude-sonnet-4-5-20250929", input_tokens=250_000, output_tokens=1_000
    )
    assert event.cost_usd == (Decimal(250_000) * 6 + Decimal(1_000) * Decimal("22.5")) / 1_000_000


def test_unknown_model_is_unpriced_not_zero_warned_once_and_counted(
    ledger: object, caplog: pytest.LogCaptureFixture
) -> None:
    first = llmledger.track(
        provider="openai", model="ft:gpt-4o-mini:acme::x1", input_tokens=10, output_tokens=5
    )
    second = llmledger.track(
        provider="openai", model="ft:gpt-4o-mini:acme::x1", input_tokens=10, output_tokens=5
    )
    assert first.cost_usd is None and first.cost_source is None
    assert first.unpriced_reason and "not in the price catalogue" in first.unpriced_reason
    assert second.cost_usd is None
    warnings = [r for r in caplog.records if "no price for openai/ft:gpt-4o-mini:acme::x1" in r.getMessage()]
    assert len(warnings) == 1
    stats = llmledger.stats()
    assert stats.events_unpriced == 2
    assert stats.unpriced_models == {"openai/ft:gpt-4o-mini:acme::x1": 2}
    rows = llmledger.usage("model")
    assert rows[0].unpriced_requests == 2 and rows[0].cost_usd == 0


def test_unknown_provider_is_unpriced() -> None:
    result = Pricer().price("acme-llm", "gpt-4o", {"input_tokens": 5}, NOW)
    assert result.cost is None and result.reason and "acme-llm" in result.reason


def test_provider_reported_and_manual_costs_win(ledger: object) -> None:
    billed = llmledger.track(
        provider="openrouter",
        model="openai/gpt-4o",
        input_tokens=10,
        output_tokens=1,
        provider_cost_usd="0.0042",
    )
    assert (billed.cost_usd, billed.cost_source) == (Decimal("0.0042"), "provider")
    manual = llmledger.track(provider="acme", model="in-house-7b", input_tokens=10, cost_usd=Decimal("0.01"))
    assert (manual.cost_usd, manual.cost_source) == (Decimal("0.01"), "manual")


def test_price_at_a_past_timestamp_uses_the_price_then() -> None:
    catalog = Catalog()
    entry = catalog.entry("avian", "deepseek/deepseek-v4-flash")
    before = datetime(2026, 10, 1, tzinfo=timezone.utc)
    after = datetime(2026, 10, 20, tzinfo=timezone.utc)
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    cost_before = catalog.compiled(catalog.model_price(entry, before, None)).cost(usage)
    cost_after = catalog.compiled(catalog.model_price(entry, after, None)).cost(usage)
    assert cost_before != cost_after
    for when, cost in ((before, cost_before), (after, cost_after)):
        reference = calc_price(
            Usage(input_tokens=1_000_000, output_tokens=1_000_000),
            "deepseek/deepseek-v4-flash",
            provider_id="avian",
            genai_request_timestamp=when,
        )
        assert cost == reference.total_price


def test_track_prices_at_the_events_own_timestamp(ledger: object) -> None:
    kwargs = {"provider": "avian", "model": "deepseek/deepseek-v4-flash", "input_tokens": 10_000}
    old = llmledger.track(**kwargs, timestamp=datetime(2026, 10, 1, tzinfo=timezone.utc))  # type: ignore[arg-type]
    new = llmledger.track(**kwargs, timestamp=datetime(2026, 10, 20, tzinfo=timezone.utc))  # type: ignore[arg-type]
    assert old.cost_usd != new.cost_usd


def test_service_tier_selects_the_tier_price() -> None:
    pricer = Pricer()
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    standard = pricer.price("openai", "gpt-5", usage, NOW).cost
    flex = pricer.price("openai", "gpt-5", usage, NOW, "flex").cost
    priority = pricer.price("openai", "gpt-5", usage, NOW, "priority").cost
    assert standard is not None and flex is not None and priority is not None
    assert flex < standard < priority


# --- the compiled fast path gives exactly genai-prices' own answer --------------------------------

_MODELS = [
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o-2024-08-06"),
    ("openai", "gpt-5"),
    ("openai", "o3"),
    ("openai", "gpt-4o-audio-preview"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-opus-4-6"),
    ("anthropic", "claude-haiku-4-5"),
    ("google", "gemini-2.5-pro"),
    ("google", "gemini-2.5-flash"),
    ("deepseek", "deepseek-chat"),
    ("deepseek", "deepseek-reasoner"),
    ("mistral", "mistral-large-latest"),
    ("x-ai", "grok-4"),
]


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(_MODELS),
    uncached=st.integers(0, 400_000),
    cache_read=st.integers(0, 50_000),
    cache_write=st.integers(0, 50_000),
    one_hour_share=st.floats(0, 1),
    text_output=st.integers(0, 50_000),
    reasoning=st.integers(0, 50_000),
    audio_in=st.integers(0, 5_000),
)
def test_compiled_price_equals_genai_prices(
    model: tuple[str, str],
    uncached: int,
    cache_read: int,
    cache_write: int,
    one_hour_share: float,
    text_output: int,
    reasoning: int,
    audio_in: int,
) -> None:
    provider, name = model
    usage = {
        "input_tokens": uncached + cache_read + cache_write + audio_in,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cache_write_1h_tokens": int(cache_write * one_hour_share),
        "input_audio_tokens": audio_in,
        "cache_audio_read_tokens": 0,  # explicit, as every UsageEvent carries it
        "output_tokens": text_output + reasoning,
        "output_reasoning_tokens": reasoning,
    }
    catalog = Catalog()
    compiled = catalog.compiled(catalog.model_price(catalog.entry(provider, name), NOW, None))
    reference = calc_price(Usage(**usage), name, provider_id=provider, genai_request_timestamp=NOW)
    assert compiled.cost(usage) == reference.total_price


def test_every_catalogue_price_compiles() -> None:
    snapshot = data_snapshot.get_snapshot()
    failures = []
    for provider in snapshot.providers:
        for model in provider.models:
            try:
                CompiledPrice(model.get_prices(NOW))
            except Exception as exc:
                failures.append(f"{provider.id}/{model.id}: {exc}")
    assert not failures, failures[:5]


def test_unknown_price_reason_names_the_model() -> None:
    catalog = Catalog()
    with pytest.raises(UnknownPrice, match="no-such-model"):
        catalog.entry("openai", "no-such-model")
    # regression: the cached reason used to be re-raised, growing its traceback on every call
    pricer = Pricer()
    for _ in range(3):
        assert pricer.price("openai", "no-such-model", {"input_tokens": 1}, NOW).cost is None
    cached = pricer.catalog.lookup("openai", "no-such-model")
    assert isinstance(cached, UnknownPrice)
    assert cached.__traceback__ is None


# --- overrides ---------------------------------------------------------------------------------------

OVERRIDES = """
[[prices]]
provider = "openai"
model = "ft:gpt-4o-mini:acme:*"
input_mtok = "0.30"
output_mtok = 1.2
cache_read_mtok = "0.15"

[[prices]]
provider = "acme"
model = "in-house-7b"
input_mtok = "0.10"
output_mtok = "0.10"

[[prices]]
provider = "acme"
model = "in-house-7b"
since = 2026-06-01
input_mtok = "0.05"
output_mtok = "0.05"

[[prices]]
provider = "acme"
model = "long-ctx"
input_mtok = { base = "1", tiers = [{ start = 100000, price = "2" }] }
output_mtok = "4"

[[adjustments]]
provider = "anthropic"
multiplier = "0.80"
since = 2026-01-01
"""


@pytest.fixture
def overrides_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(OVERRIDES)
    return path


def test_override_prices_a_fine_tune_by_glob(ledger_path: Path, overrides_file: Path) -> None:
    llmledger.init(ledger=str(ledger_path), prices=overrides_file)
    event = llmledger.track(
        provider="openai",
        model="ft:gpt-4o-mini:acme::x1",
        input_tokens=2_000,
        cache_read_tokens=1_000,
        output_tokens=100,
    )
    assert event.cost_source == "override"
    assert (
        event.cost_usd
        == (Decimal(1_000) * Decimal("0.30") + Decimal(1_000) * Decimal("0.15") + 100 * Decimal("1.2"))
        / 1_000_000
    )


def test_override_price_history_by_since(overrides_file: Path) -> None:
    pricer = Pricer(Overrides.load(overrides_file))
    usage = {"input_tokens": 1_000_000}
    assert pricer.price(
        "acme", "in-house-7b", usage, datetime(2026, 5, 1, tzinfo=timezone.utc)
    ).cost == Decimal("0.10")
    assert pricer.price(
        "acme", "in-house-7b", usage, datetime(2026, 7, 1, tzinfo=timezone.utc)
    ).cost == Decimal("0.05")


def test_override_tiers(overrides_file: Path) -> None:
    pricer = Pricer(Overrides.load(overrides_file))
    assert pricer.price("acme", "long-ctx", {"input_tokens": 100_000}, NOW).cost == Decimal("0.1")
    assert pricer.price("acme", "long-ctx", {"input_tokens": 100_001}, NOW).cost == Decimal("0.200002")


def test_adjustment_discounts_catalogue_prices_from_its_date(overrides_file: Path) -> None:
    pricer = Pricer(Overrides.load(overrides_file))
    plain = Pricer()
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    model = "claude-sonnet-4-5-20250929"
    full = plain.price("anthropic", model, usage, NOW).cost
    assert full is not None
    assert pricer.price("anthropic", model, usage, NOW).cost == full * Decimal("0.80")
    before = datetime(2025, 12, 1, tzinfo=timezone.utc)
    assert (
        pricer.price("anthropic", model, usage, before).cost
        == plain.price("anthropic", model, usage, before).cost
    )
    assert (
        pricer.price("openai", "gpt-4o", usage, NOW).cost == plain.price("openai", "gpt-4o", usage, NOW).cost
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[prices]]\nprovider='a'\nmodel='b'\ninput_mtok='x'", "input_mtok must be a number"),
        ("[[prices]]\nprovider='a'\nmodel='b'\ninput_mtk='1'", "unknown price key"),
        ("[[prices]]\nprovider='a'\nmodel='b'", "at least one price"),
        ("[[prices]]\nmodel='b'\ninput_mtok='1'", "'provider' must be a non-empty string"),
        ("[[prices]]\nprovider='a'\nmodel='b'\ninput_mtok='-1'", ">= 0"),
        ("[[prices]]\nprovider='a'\nmodel='b'\ninput_mtok='1'\nsince='yesterday'", "since must be a date"),
        ("[[adjustments]]\nprovider='a'", "'multiplier' is required"),
        ("[price]\nx=1", "unknown section"),
        ("prices = 3", "array of tables"),
        ("[[prices]\n", "not valid TOML"),
    ],
)
def test_bad_overrides_file_says_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PriceOverrideError, match=message):
        Overrides.load(path)


def test_missing_overrides_file(tmp_path: Path) -> None:
    with pytest.raises(PriceOverrideError, match="not found"):
        llmledger.init(ledger=str(tmp_path / "l.db"), prices=tmp_path / "missing.toml")


def test_quote_explains_the_source(overrides_file: Path) -> None:
    pricer = Pricer(Overrides.load(overrides_file))
    quote = pricer.quote("anthropic", "claude-sonnet-4-5-20250929", NOW)
    assert quote.source == "catalog" and quote.matched == "anthropic/claude-sonnet-4-5"
    assert quote.multiplier == Decimal("0.80") and quote.adjustments
    assert ("input_mtok", "$3 ($6 above 200,000 input tokens)") in quote.price_lines()
    override = pricer.quote("acme", "in-house-7b", NOW)
    assert override.source == "override" and "prices[2]" in override.origin
