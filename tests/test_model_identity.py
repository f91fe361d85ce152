"""Issue 9 kind 1: one model identity for limits, counters, reconciliation and reports.

OpenAI answers `gpt-4o-mini` as `gpt-4o-mini-2024-07-18`; a limit named either way must see (and
stop) those calls, and `report --model` must find them. Prices: gpt-4o-mini $0.15 / $0.60 per 1M
(OpenAI's published price), so 2,012 input + 400 output tokens = $0.0005418 a call.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from genai_prices import Usage, calc_price
from tests.fakes.server import Fake
from typer.testing import CliRunner

import llmledger
from llmledger.cli.app import app
from llmledger.identity import admission_identity, alias_models, model_identity

USAGE = {"prompt_tokens": 2012, "completion_tokens": 400, "total_tokens": 2412}
CALL_COST = Decimal("0.0005418")
# ~2,000 tokens of prompt at ~4 characters a token, so the pre-call worst case is close to the truth
PROMPT = [{"role": "user", "content": "Summarise the ledger entry. " * 287}]


def test_the_issue_price_is_genai_prices_own() -> None:
    price = calc_price(
        Usage(input_tokens=2012, output_tokens=400), "gpt-4o-mini-2024-07-18", provider_id="openai"
    )
    assert price.total_price == CALL_COST


def client(fake: Fake, **kw: Any) -> openai.OpenAI:
    fake.usage = USAGE
    return openai.OpenAI(api_key="sk-test", http_client=fake.client(), max_retries=0, **kw)


def run(c: openai.OpenAI, n: int = 14, model: str = "gpt-4o-mini") -> tuple[int, int]:
    admitted = refused = 0
    for _ in range(n):
        try:
            c.chat.completions.create(model=model, messages=PROMPT, max_tokens=400, ledger_tenant="t1")  # type: ignore[arg-type,call-overload]
            admitted += 1
        except llmledger.LimitExceeded:
            refused += 1
    return admitted, refused


@pytest.mark.parametrize("named", ["gpt-4o-mini", "gpt-4o-mini-2024-07-18"])
def test_a_model_limit_stops_calls_answered_by_a_snapshot(ledger_path: Path, fake: Fake, named: str) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd="0.005", per="day", tenant="*", model=named)
    admitted, refused = run(client(fake))
    llmledger.flush()
    spent = llmledger.spend(tenant="t1")
    assert refused >= 1 and admitted + refused == 14
    assert spent <= Decimal("0.005") and spent == admitted * CALL_COST
    assert len(fake.seen) == admitted
    assert llmledger.reconcile() == []
    [row] = llmledger.usage(group_by="tenant", model="gpt-4o-mini")
    assert row.requests == admitted
    assert llmledger.spend(model="gpt-4o-mini-2024-07-18") == spent


def test_report_by_requested_name_finds_the_snapshot_calls(ledger_path: Path, fake: Fake) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    run(client(fake), n=3)
    llmledger.shutdown()
    out = CliRunner().invoke(app, ["report", "--ledger", str(ledger_path), "--model", "gpt-4o-mini"])
    assert out.exit_code == 0, out.output
    assert "over 3 requests" in out.output and "$0.001625" in out.output


def test_identity_rules() -> None:
    assert model_identity("gpt-4o-mini-2024-07-18", "openai") == "gpt-4o-mini"
    assert model_identity("gpt-4o-mini", "azure") == "gpt-4o-mini"
    assert model_identity("claude-3-5-sonnet-latest", "anthropic") == model_identity(
        "claude-3-5-sonnet-20241022", "anthropic"
    )
    assert model_identity("grok-4-latest", "xai") == model_identity("grok-4-0709", "xai")
    assert model_identity("gpt-4o", "openai") != model_identity("gpt-4o-mini", "openai")
    assert model_identity("my-private-model", "openai") == "my-private-model"
    assert model_identity(None) is None


def test_an_alias_names_a_deployment(ledger_path: Path, fake: Fake) -> None:
    alias_models({"prod-mini": "gpt-4o-mini"})
    try:
        assert model_identity("prod-mini", "azure") == "gpt-4o-mini"
        with pytest.raises(llmledger.InvalidUsageError):
            alias_models({"": "gpt-4o"})
    finally:
        alias_models(None)
    assert model_identity("prod-mini", "azure") == "prod-mini"


def azure_client(fake: Fake) -> openai.AzureOpenAI:
    fake.usage = USAGE
    return openai.AzureOpenAI(
        api_key="k",
        api_version="2024-10-21",
        azure_endpoint="https://acme.openai.azure.com",
        http_client=fake.client(),
        max_retries=0,
    )


def ask_deployment(azure: openai.AzureOpenAI) -> None:
    # the deployment name is sent in the URL; the fake answers the model it serves
    azure.chat.completions.create(
        model="prod-mini-deploy", messages=PROMPT, max_tokens=400, ledger_tenant="t9"
    )  # type: ignore[arg-type,call-overload]


def test_an_azure_deployment_learns_its_model_and_counts_under_it(ledger_path: Path, fake: Fake) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd="0.0022", per="day", tenant="*", model="gpt-4o-mini")
    azure = azure_client(fake)

    def ask() -> None:
        ask_deployment(azure)

    import tests.fakes.server as server

    server.SNAPSHOTS["prod-mini-deploy"] = "gpt-4o-mini-2024-07-18"
    try:
        ask()  # the first call of a deployment is counted after the fact (its model is not known yet)
        llmledger.flush()
        # learned in this process, for admission only: counting and reports never depend on it
        assert admission_identity("prod-mini-deploy", "azure") == "gpt-4o-mini"
        assert model_identity("prod-mini-deploy", "azure") == "prod-mini-deploy"
        ask()
        with pytest.raises(llmledger.LimitExceeded):
            ask()
    finally:
        del server.SNAPSHOTS["prod-mini-deploy"]
    llmledger.flush()
    assert llmledger.spend(model="gpt-4o-mini") == 2 * CALL_COST
    assert llmledger.reconcile() == []


_AZURE_CALLS = """
import sys, openai, llmledger
import tests.fakes.server as server
from tests.test_model_identity import PROMPT, USAGE
server.SNAPSHOTS["prod-mini-deploy"] = "gpt-4o-mini-2024-07-18"
llmledger.init(ledger=sys.argv[1], flush_interval=0.01)
# the deployment has no price before its first answer: under the default unpriced="refuse" a strict
# USD limit named by it refuses (its cost cannot be bounded); a fallback price admits and bounds it
llmledger.set_limit(usd="1", per="day", tenant="*", model="prod-mini-deploy", unpriced="fallback",
                    fallback_price=("0.15", "0.60"))
fake = server.Fake()
fake.usage = USAGE
azure = openai.AzureOpenAI(api_key="k", api_version="2024-10-21", azure_endpoint="https://acme.openai.azure.com",
                           http_client=fake.client(), max_retries=0)
for _ in range(2):
    azure.chat.completions.create(
        model="prod-mini-deploy", messages=PROMPT, max_tokens=400, ledger_tenant="t9"
    )
llmledger.flush()
print(llmledger.spend(model="prod-mini-deploy"), llmledger.reconcile())
llmledger.shutdown()
"""

_REPORT = """
import sys, llmledger
llmledger.init(ledger=sys.argv[1])
print(llmledger.spend(model="prod-mini-deploy"), llmledger.reconcile())
llmledger.shutdown()
"""


def test_every_process_counts_a_deployment_limit_the_same(ledger_path: Path) -> None:
    # A limit and a report named by an Azure deployment: the process that made the calls and a
    # fresh one (the CLI, a reconcile job, another worker) must agree on what they count.
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parent.parent)

    def run_script(code: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", code, str(ledger_path)],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    expected = f"{2 * CALL_COST} []"
    assert run_script(_AZURE_CALLS) == expected
    assert run_script(_REPORT) == expected


def test_a_strict_usd_limit_named_by_an_unknown_deployment_refuses_until_its_price_is_known(
    ledger_path: Path, fake: Fake
) -> None:
    # Before its first answer nothing says what `prod-mini-deploy` costs: under the default policy
    # (unpriced="refuse") a strict USD limit named by it refuses rather than admit an unbounded call;
    # an alias names its model (every process then prices and checks it before it is sent).
    import tests.fakes.server as server

    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd="0.0025", per="day", tenant="*", model="prod-mini-deploy")
    azure = azure_client(fake)

    def ask() -> None:
        ask_deployment(azure)

    server.SNAPSHOTS["prod-mini-deploy"] = "gpt-4o-mini-2024-07-18"
    try:
        with pytest.raises(llmledger.LimitExceeded, match="no known price"):
            ask()
        assert fake.seen == []  # refused before anything was sent
        alias_models({"prod-mini-deploy": "gpt-4o-mini"})
        ask()
        ask()
        with pytest.raises(llmledger.LimitExceeded):
            ask()
    finally:
        alias_models(None)
        del server.SNAPSHOTS["prod-mini-deploy"]
    llmledger.flush()
    assert len(fake.seen) == 2
    assert llmledger.spend(model="prod-mini-deploy") == 2 * CALL_COST


def test_a_learned_deployment_name_does_not_outlive_its_runtime(tmp_path: Path) -> None:
    # `learn()` is process memory: neither `shutdown()` nor a new `init()` may carry what one runtime
    # saw into the next (it would price and admit the next runtime's calls by another runtime's data).
    from llmledger.identity import learn

    llmledger.init(ledger=str(tmp_path / "a.db"))
    learn("azure", "prod-mini-deploy", "gpt-4o-mini-2024-07-18")
    assert admission_identity("prod-mini-deploy", "azure") == "gpt-4o-mini"
    llmledger.shutdown()
    assert admission_identity("prod-mini-deploy", "azure") == "prod-mini-deploy"

    llmledger.init(ledger=str(tmp_path / "a.db"))
    learn("azure", "prod-mini-deploy", "gpt-4o-mini-2024-07-18")
    llmledger.init(ledger=str(tmp_path / "b.db"))  # another runtime replaces the first
    assert admission_identity("prod-mini-deploy", "azure") == "prod-mini-deploy"
    llmledger.shutdown()
