"""Issue 9 kind 1, across hosts: a model reached through a relay (OpenRouter `openai/gpt-4o`) or a
Bedrock model id / inference profile is the same model for limits, reports and reconciliation.

Before: a `model="gpt-4o"` limit never saw `openai/gpt-4o` calls through OpenRouter (its counter
stayed at $0 while every call was admitted), and `usage(model="gpt-4o")` found none of them. The
price stays the host's own (genai-prices' `calc_price` under the host's provider id).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from genai_prices import Usage, calc_price
from tests.fakes.replay import Replay, chat

import llmledger
from llmledger.identity import model_identity

USAGE = {"prompt_tokens": 2012, "completion_tokens": 400, "total_tokens": 2412}
MSGS = [{"role": "user", "content": "Summarise the ledger entry. " * 287}]
ROUTER = "https://openrouter.ai/api/v1"


@pytest.mark.parametrize(
    ("name", "provider", "identity"),
    [
        ("openai/gpt-4o", "openrouter", "gpt-4o"),
        ("openai/gpt-4o-mini", "openrouter", "gpt-4o-mini"),
        ("anthropic/claude-sonnet-4.5", "openrouter", "claude-sonnet-4-5"),
        ("google/gemini-2.5-flash", "openrouter", "gemini-2.5-flash"),
        ("x-ai/grok-4", "openrouter", "grok-4-0709"),
        ("deepseek/deepseek-chat", "openrouter", "deepseek-chat"),
        ("openai/gpt-oss-120b", "groq", "gpt-oss-120b"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "bedrock", "claude-3-5-sonnet"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws-bedrock", "claude-sonnet-4-5"),
        ("eu.anthropic.claude-3-5-sonnet-20240620-v1:0", "aws", "claude-3-5-sonnet"),
        ("openai.gpt-oss-120b-1:0", "bedrock", "gpt-oss-120b"),
    ],
)
def test_a_vendor_qualified_name_is_the_creators_model(name: str, provider: str, identity: str) -> None:
    assert model_identity(name, provider) == identity
    direct = {"claude": "anthropic", "gemini": "google", "grok": "xai", "deepseek": "deepseek"}
    creator = next((p for k, p in direct.items() if identity.startswith(k)), "openai")
    assert model_identity(identity, creator) == identity


@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("my.deployment", "azure"),  # a dotted Azure deployment is not a Bedrock id
        ("openai.prod", "azure"),  # a creator's prefix, but the creator knows no model "prod"
        ("acme/private-model", "openrouter"),  # a vendor no catalogue publishes
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2", "bedrock"),
    ],
)
def test_a_name_no_creator_knows_keeps_its_own_identity(name: str, provider: str) -> None:
    assert model_identity(name, provider) == name


def router(replay: Replay) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", base_url=ROUTER, http_client=replay.client(), max_retries=0)


def router_cost() -> Decimal:
    price = calc_price(Usage(input_tokens=2012, output_tokens=400), "openai/gpt-4o", provider_id="openrouter")
    return Decimal(str(price.total_price))


def test_a_limit_on_a_model_stops_its_calls_through_a_relay(ledger_path: Path) -> None:
    """Before: 10 of 10 admitted, counter $0. After: refused once the limit is reached."""
    cost = router_cost()
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd=str(cost * 3), per="day", tenant="*", model="gpt-4o")
    replay = Replay(chat("openai/gpt-4o", USAGE))
    c = router(replay)
    admitted = refused = 0
    for _ in range(10):
        try:
            ask = c.chat.completions.create
            ask(model="openai/gpt-4o", messages=MSGS, max_tokens=400, ledger_tenant="r1")  # type: ignore[arg-type,call-overload]
            admitted += 1
        except llmledger.LimitExceeded:
            refused += 1
    llmledger.flush()
    spent = llmledger.spend(tenant="r1")
    assert refused >= 1 and 1 <= admitted <= 3
    assert spent == admitted * cost and spent <= cost * 3
    assert len(replay.seen) == admitted
    assert llmledger.reconcile() == []
    [row] = llmledger.usage(group_by="tenant", model="gpt-4o")
    assert row.requests == admitted
    assert llmledger.spend(model="openai/gpt-4o") == spent


def test_async_relay_calls_count_against_the_model_limit(ledger_path: Path) -> None:
    asyncio.run(async_relay_calls(ledger_path))


async def async_relay_calls(ledger_path: Path) -> None:
    cost = router_cost()
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd=str(cost * Decimal("1.5")), per="day", tenant="*", model="gpt-4o")
    replay = Replay(chat("openai/gpt-4o", USAGE))
    c = openai.AsyncOpenAI(api_key="k", base_url=ROUTER, http_client=replay.async_client(), max_retries=0)
    ask = c.chat.completions.create
    await ask(model="openai/gpt-4o", messages=MSGS, max_tokens=400, ledger_tenant="r2")  # type: ignore[arg-type,call-overload]
    llmledger.flush()
    with pytest.raises(llmledger.LimitExceeded):
        await ask(model="openai/gpt-4o", messages=MSGS, max_tokens=400, ledger_tenant="r2")  # type: ignore[arg-type,call-overload]
    assert len(replay.seen) == 1


def test_a_provider_scope_caps_one_host_only(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    llmledger.set_limit(usd="0.000001", per="day", tenant="*", model="gpt-4o", provider="openai")
    replay = Replay(chat("openai/gpt-4o", USAGE))
    for _ in range(3):
        router(replay).chat.completions.create(model="openai/gpt-4o", messages=MSGS, ledger_tenant="r3")  # type: ignore[arg-type,call-overload]
    llmledger.flush()
    assert llmledger.spend(tenant="r3") == 3 * router_cost()


def test_bedrock_profiles_count_under_the_model(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    calls = [
        ("aws-bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("aws-bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("anthropic", "claude-3-5-sonnet-20240620"),
    ]
    for provider, model in calls:
        llmledger.track(provider=provider, model=model, input_tokens=1000, output_tokens=100, tenant="b1")
    llmledger.flush()
    total = llmledger.spend(tenant="b1")
    assert total > 0
    assert llmledger.spend(model="claude-3-5-sonnet") == total
    assert llmledger.spend(model="claude-3-5-sonnet", provider="aws-bedrock") < total
    [row] = llmledger.usage(group_by="tenant", model="us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert row.requests == 3
