"""Issue 9 kinds 2 and 4: OpenAI-compatible hosts that count differently, and provider-reported
costs read for what they cover. Expected values from the hosts' published prices (xAI grok-4 $3 /
$0.75 cached / $15 per 1M; Anthropic Sonnet 4.5 $3 / $15 per 1M) and genai-prices' `calc_price`."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import openai
import pytest
from genai_prices import Usage, calc_price
from tests.fakes import bodies
from tests.fakes.replay import Replay, chat, chat_chunks

import llmledger
from llmledger.events import UsageEvent

MSGS = [{"role": "user", "content": "Plan the migration."}]
GROK_USAGE = {
    "prompt_tokens": 1842,
    "completion_tokens": 96,
    "total_tokens": 3148,
    "prompt_tokens_details": {
        "text_tokens": 1842,
        "audio_tokens": 0,
        "image_tokens": 0,
        "cached_tokens": 640,
    },
    "completion_tokens_details": {
        "reasoning_tokens": 1210,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
    "num_sources_used": 0,
    "cost_in_usd_ticks": 236760000,
}
GROK_COST = Decimal("0.023676")
BYOK_USAGE = {
    "prompt_tokens": 8240,
    "completion_tokens": 310,
    "total_tokens": 8550,
    "cost": 0,
    "is_byok": True,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "cost_details": {
        "upstream_inference_cost": 0.02937,
        "upstream_inference_prompt_cost": 0.02472,
        "upstream_inference_completions_cost": 0.00465,
    },
    "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
}


def oai(replay: Replay, base_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", base_url=base_url, http_client=replay.client(), max_retries=0)


def test_issue_values_agree_with_genai_prices() -> None:
    grok = calc_price(
        Usage(input_tokens=1842, cache_read_tokens=640, output_tokens=1306), "grok-4-0709", provider_id="x-ai"
    )
    assert grok.total_price == GROK_COST == Decimal(236760000) / 10**10
    sonnet = calc_price(
        Usage(input_tokens=8240, output_tokens=310), "claude-sonnet-4-5", provider_id="anthropic"
    )
    assert sonnet.total_price == Decimal("0.02937")


def assert_grok(e: UsageEvent) -> None:
    assert (e.provider, e.model) == ("xai", "grok-4-0709")
    assert (e.input_tokens, e.cache_read_tokens, e.output_tokens, e.reasoning_tokens) == (
        1842,
        640,
        1306,
        1210,
    )
    assert (e.cost_usd, e.cost_source, e.computed_cost_usd) == (GROK_COST, "provider", GROK_COST)
    assert UsageEvent.from_dict(e.to_dict()) == e  # a possible event: its own parser accepts it


def test_xai_counts_reasoning_beside_completion(recorded: list[UsageEvent]) -> None:
    replay = Replay(chat("grok-4-0709", GROK_USAGE))
    oai(replay, "https://api.x.ai/v1").chat.completions.create(model="grok-4-0709", messages=MSGS)  # type: ignore[arg-type]
    [e] = recorded
    assert_grok(e)
    assert e.cost_note is None  # xAI's own figure and llmledger's price agree
    llmledger.flush()
    [stored] = llmledger.events()
    assert stored == e


def test_xai_stream_sync_and_async(recorded: list[UsageEvent]) -> None:
    sse = bodies.sse(
        [(None, c) for c in chat_chunks("grok-4-0709", [{"content": "Done."}], GROK_USAGE)]
        + [(None, "[DONE]")]
    )
    replay = Replay(sse)
    for _ in oai(replay, "https://api.x.ai/v1").chat.completions.create(
        model="grok-4-0709", messages=MSGS, stream=True
    ):  # type: ignore[arg-type,call-overload]
        pass

    async def go() -> None:
        client = openai.AsyncOpenAI(
            api_key="k", base_url="https://api.x.ai/v1", http_client=replay.async_client(), max_retries=0
        )
        async for _ in await client.chat.completions.create(model="grok-4-0709", messages=MSGS, stream=True):  # type: ignore[arg-type,call-overload]
            pass

    asyncio.run(go())
    assert len(recorded) == 2
    for e in recorded:
        assert_grok(e)
        assert e.stream and e.complete


def test_a_host_whose_total_shows_reasoning_beside_is_normalised(recorded: list[UsageEvent]) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1550,
        "completion_tokens_details": {"reasoning_tokens": 500},
    }
    replay = Replay(chat("deepseek-reasoner", usage))
    oai(replay, "https://relay.example.net/v1").chat.completions.create(
        model="deepseek-reasoner", messages=MSGS
    )  # type: ignore[arg-type]
    [e] = recorded
    assert (e.output_tokens, e.reasoning_tokens) == (550, 500)
    assert e.cost_note and "beside" in e.cost_note
    assert llmledger.stats().pricing_notes.get("usage_normalised") == 1


@pytest.mark.parametrize(
    ("usage", "fields"),
    [
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "total_tokens": 150,
                "completion_tokens_details": {"reasoning_tokens": 80},
            },
            ("reasoning_tokens", 50),
        ),
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 400},
            },
            ("cache_read_tokens", 100),
        ),
        (
            {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 990},
            ("output_tokens", 50),
        ),
    ],
)
def test_an_impossible_usage_is_never_stored_silently(
    recorded: list[UsageEvent], usage: dict[str, Any], fields: tuple[str, int]
) -> None:
    replay = Replay(chat("gpt-4o-mini-2024-07-18", usage))
    oai(replay, "https://api.openai.com/v1").chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    [e] = recorded
    assert getattr(e, fields[0]) == fields[1]
    assert e.cost_note and "usage" in e.cost_note
    assert UsageEvent.from_dict(e.to_dict()) == e


def test_openrouter_byok_cost_is_the_upstream_bill(recorded: list[UsageEvent]) -> None:
    replay = Replay(chat("anthropic/claude-sonnet-4.5", BYOK_USAGE, provider="Anthropic"))
    oai(replay, "https://openrouter.ai/api/v1").chat.completions.create(
        model="anthropic/claude-sonnet-4.5", messages=MSGS
    )  # type: ignore[arg-type]
    [e] = recorded
    assert (e.provider, e.cost_usd, e.cost_source) == ("openrouter", Decimal("0.02937"), "provider")
    assert e.computed_cost_usd == Decimal("0.02937") and e.cost_note is None


def test_openrouter_byok_stream_and_a_usd_limit_sees_it(ledger_path: Any) -> None:
    llmledger.init(ledger=str(ledger_path), flush_interval=0.01)
    sse = bodies.sse(
        [(None, c) for c in chat_chunks("anthropic/claude-sonnet-4.5", [{"content": "Done."}], BYOK_USAGE)]
        + [(None, "[DONE]")]
    )
    replay = Replay(sse)
    for _ in oai(replay, "https://openrouter.ai/api/v1").chat.completions.create(
        model="anthropic/claude-sonnet-4.5", messages=MSGS, stream=True, ledger_tenant="byok"
    ):  # type: ignore[arg-type,call-overload]
        pass
    llmledger.flush()
    assert llmledger.spend(tenant="byok") == Decimal("0.02937")


def test_openrouter_own_cost_is_counted_when_it_disagrees(recorded: list[UsageEvent]) -> None:
    usage = {
        "prompt_tokens": 8240,
        "completion_tokens": 310,
        "total_tokens": 8550,
        "cost": 0.05,
        "is_byok": False,
    }
    replay = Replay(chat("anthropic/claude-sonnet-4.5", usage))
    oai(replay, "https://openrouter.ai/api/v1").chat.completions.create(
        model="anthropic/claude-sonnet-4.5", messages=MSGS
    )  # type: ignore[arg-type]
    [e] = recorded
    assert (e.cost_usd, e.cost_source, e.computed_cost_usd) == (
        Decimal("0.05"),
        "provider",
        Decimal("0.02937"),
    )
    assert e.cost_note and "differs" in e.cost_note
    assert llmledger.stats().pricing_notes.get("cost_disagreement") == 1


def test_every_named_host_has_a_convention() -> None:
    from llmledger.instrumentation.hosts import CONVENTIONS, KNOWN_HOSTS

    for provider in set(KNOWN_HOSTS.values()) | {"azure"}:
        assert provider in CONVENTIONS, provider
        assert CONVENTIONS[provider].docs.startswith("https://")


def test_moonshot_usage_inside_the_last_choice_of_a_stream(recorded: list[UsageEvent]) -> None:
    chunks = chat_chunks("kimi-k2-0905-preview", [{"role": "assistant", "content": "Done."}, {}], None)
    chunks[-1]["choices"][0]["finish_reason"] = "stop"
    chunks[-1]["choices"][0]["usage"] = {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129}
    replay = Replay(bodies.sse([(None, c) for c in chunks] + [(None, "[DONE]")]))
    client = oai(replay, "https://api.moonshot.ai/v1")
    for _ in client.chat.completions.create(model="kimi-k2-0905-preview", messages=MSGS, stream=True):  # type: ignore[arg-type,call-overload]
        pass
    assert "stream_options" not in replay.seen[0]  # Moonshot is not asked: it reports usage unasked
    [e] = recorded
    assert (e.provider, e.input_tokens, e.output_tokens, e.estimated, e.complete) == (
        "moonshot",
        120,
        9,
        False,
        True,
    )


def test_gemini_cache_larger_than_the_prompt_is_noted_not_hidden(recorded: list[UsageEvent]) -> None:
    from google import genai
    from google.genai import types

    body = {
        "candidates": [
            {"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 400,
            "candidatesTokenCount": 5,
            "totalTokenCount": 105,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }
    client = genai.Client(api_key="k", http_options=types.HttpOptions(httpx_client=Replay(body).client()))
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    [e] = recorded
    assert (e.input_tokens, e.cache_read_tokens) == (100, 100)
    assert e.cost_note and "cached (400) > input (100)" in e.cost_note
