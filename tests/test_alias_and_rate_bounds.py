"""Model aliases and price overrides refuse what would break pricing or the ledger later
(newcomer report items 28 and 32): a typed error at configuration time, never a RecursionError
in pricing or an event `track()` returns that the writer then quarantines."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmledger
from llmledger.errors import InvalidUsageError, LlmLedgerError


@pytest.fixture(autouse=True)
def _no_aliases() -> object:
    yield
    llmledger.alias_models(None)


@pytest.mark.parametrize(
    "aliases",
    [{"x1": "x2", "x2": "x1"}, {"a": "a"}, {"a": "b", "b": "c", "c": "a"}],
)
def test_alias_cycles_are_refused(aliases: dict[str, str]) -> None:
    with pytest.raises(InvalidUsageError, match="leads back to itself"):
        llmledger.alias_models(aliases)


@pytest.mark.parametrize(
    "aliases", [["a"], {"a\x00": "gpt-4o"}, {"a": "gpt\n4o"}, {"a" * 300: "gpt-4o"}, {1: "x"}]
)
def test_bad_aliases_are_typed_errors(aliases: object) -> None:
    with pytest.raises(InvalidUsageError):
        llmledger.alias_models(aliases)  # type: ignore[arg-type]


def test_model_identity_of_a_non_string_is_a_typed_error() -> None:
    with pytest.raises(InvalidUsageError):
        llmledger.model_identity(5)  # type: ignore[arg-type]


def test_a_chain_of_aliases_prices_without_recursion(tmp_path: Path) -> None:
    llmledger.init(ledger=str(tmp_path / "l.db"))
    llmledger.alias_models({"prod-mini": "staging-mini", "staging-mini": "gpt-4o-mini"})
    event = llmledger.track(provider="openai", model="staging-mini", input_tokens=1000)
    assert event.cost_usd is not None  # staging-mini -> gpt-4o-mini, one step
    chained = llmledger.track(provider="openai", model="prod-mini", input_tokens=1000)
    assert chained.unpriced_reason is None or "Recursion" not in chained.unpriced_reason


@pytest.mark.parametrize("rate", ["1e400", "1000001", "-1", "nan"])
def test_absurd_override_rates_are_refused(tmp_path: Path, rate: str) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text(
        f'[[prices]]\nprovider = "openai"\nmodel = "ft:gpt-4o-mini:acme:x"\ninput_mtok = "{rate}"\n'
    )
    with pytest.raises(LlmLedgerError, match="input_mtok"):
        llmledger.init(ledger=str(tmp_path / "l.db"), prices=str(prices))
