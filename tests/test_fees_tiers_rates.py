"""Issue 9 kinds 3, 7 and 8: per-call tool fees, rates the catalogue lacks, and the service tier the
provider reports. Expected values from the providers' published prices and genai-prices' `calc_price`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
from genai_prices import Usage, calc_price
from google import genai
from google.genai import types
from tests.fakes import bodies
from tests.fakes.replay import Replay, chat, chat_chunks

import llmledger
from llmledger.events import UsageEvent

MSGS = [{"role": "user", "content": "What changed in the tax rules this week?"}]


def web_search_response(model: str, searches: int, usage: dict[str, Any]) -> dict[str, Any]:
    body = bodies.response_object(model, usage=usage)
    calls = [
        {
            "type": "web_search_call",
            "id": f"ws_{i}",
            "status": "completed",
            "action": {"type": "search", "query": f"q{i}"},
        }
        for i in range(searches)
    ]
    body["output"] = calls + body["output"]
    body["tools"] = [{"type": "web_search", "search_context_size": "medium", "user_location": None}]
    return body


GPT5_USAGE = {
    "input_tokens": 18432,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 1544,
    "output_tokens_details": {"reasoning_tokens": 1024},
    "total_tokens": 19976,
}


def test_gpt5_web_search_fees(recorded: list[UsageEvent]) -> None:
    tokens = calc_price(
        Usage(input_tokens=18432, output_tokens=1544), "gpt-5", provider_id="openai"
    ).total_price
    assert tokens == Decimal("0.03848")
    replay = Replay(web_search_response("gpt-5-2025-08-07", 2, GPT5_USAGE))
    client = openai.OpenAI(api_key="k", http_client=replay.client(), max_retries=0)
    client.responses.create(model="gpt-5", input="What changed?", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    [e] = recorded
    assert e.units == {"web_searches": Decimal(2)}
    assert (e.cost_usd, e.cost_source, e.partially_priced) == (Decimal("0.05848"), "catalog", False)


def test_gpt5_web_search_fees_in_a_stream(recorded: list[UsageEvent]) -> None:
    final = web_search_response("gpt-5-2025-08-07", 3, GPT5_USAGE)
    sse = bodies.sse(
        [
            (
                "response.created",
                {
                    "type": "response.created",
                    "sequence_number": 0,
                    "response": bodies.response_object("gpt-5-2025-08-07", "in_progress"),
                },
            ),
            ("response.completed", {"type": "response.completed", "sequence_number": 1, "response": final}),
        ]
    )
    client = openai.OpenAI(api_key="k", http_client=Replay(sse).client(), max_retries=0)
    for _ in client.responses.create(
        model="gpt-5", input="What changed?", tools=[{"type": "web_search"}], stream=True
    ):  # type: ignore[list-item]
        pass
    [e] = recorded
    assert e.units == {"web_searches": Decimal(3)} and e.cost_usd == Decimal("0.03848") + Decimal("0.03")


def test_file_search_is_priced_and_code_interpreter_is_flagged(recorded: list[UsageEvent]) -> None:
    body = web_search_response("gpt-5-2025-08-07", 0, GPT5_USAGE)
    body["output"] = [
        {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["q"], "results": None},
        {
            "type": "code_interpreter_call",
            "id": "ci_1",
            "status": "completed",
            "code": "1+1",
            "container_id": "cntr_1",
            "outputs": None,
        },
        {
            "type": "code_interpreter_call",
            "id": "ci_2",
            "status": "completed",
            "code": "2+2",
            "container_id": "cntr_1",
            "outputs": None,
        },
    ] + body["output"]
    client = openai.OpenAI(api_key="k", http_client=Replay(body).client(), max_retries=0)
    client.responses.create(model="gpt-5", input="Look it up")
    [e] = recorded
    assert e.units == {"storage_searches": Decimal(1), "code_executions": Decimal(1)}
    assert e.cost_usd == Decimal("0.03848") + Decimal("0.0025")
    assert e.partially_priced and e.cost_note and "code_executions" in e.cost_note


def test_anthropic_server_tool_web_searches(recorded: list[UsageEvent]) -> None:
    message = bodies.message(
        "claude-sonnet-4-5-20250929",
        {"input_tokens": 2000, "output_tokens": 300, "server_tool_use": {"web_search_requests": 4}},
    )
    client = anthropic.Anthropic(api_key="k", http_client=Replay(message).client(), max_retries=0)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=500, messages=MSGS)  # type: ignore[arg-type]
    [e] = recorded
    expected = calc_price(
        Usage(input_tokens=2000, output_tokens=300), "claude-sonnet-4-5", provider_id="anthropic"
    ).total_price
    assert e.units == {"web_searches": Decimal(4)} and e.cost_usd == expected + Decimal("0.04")


AUDIO_USAGE = {
    "prompt_tokens": 1125,
    "completion_tokens": 2486,
    "total_tokens": 3611,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 1032, "text_tokens": 93, "image_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 1950,
        "text_tokens": 536,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def audio_call() -> None:
    replay = Replay(chat("gpt-4o-audio-preview-2024-12-17", AUDIO_USAGE))
    client = openai.OpenAI(api_key="k", http_client=replay.client(), max_retries=0)
    client.chat.completions.create(model="gpt-4o-audio-preview-2024-12-17", messages=MSGS)  # type: ignore[arg-type]


def test_a_missing_audio_rate_is_flagged_not_charged_as_text(recorded: list[UsageEvent]) -> None:
    audio_call()
    audio_call()
    e = recorded[0]
    assert e.partially_priced and e.cost_source == "catalog"
    assert e.cost_note and "input_audio_tokens" in e.cost_note and "output_audio_tokens" in e.cost_note
    # only the text parts are priced (93 x $2.50 + 536 x $10 per 1M); audio is never charged as text
    assert e.cost_usd == Decimal("0.0055925")
    assert llmledger.stats().pricing_notes["partially_priced"] == 2


def test_an_override_supplies_the_missing_rate(tmp_path: Path, ledger_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[[prices]]\nprovider = "openai"\nmodel = "gpt-4o-audio-preview*"\nextends_catalog = true\n'
        'input_audio_mtok = "40"\noutput_audio_mtok = "80"\n'
    )
    seen: list[UsageEvent] = []
    llmledger.init(ledger=str(ledger_path), prices=str(prices), on_event=seen.append, flush_interval=0.01)
    audio_call()
    llmledger.flush()
    [e] = seen
    assert (e.cost_usd, e.cost_source, e.partially_priced) == (Decimal("0.2028725"), "override", False)


def gemini_client(replay: Replay, vertex: bool = False) -> genai.Client:
    if vertex:
        return genai.Client(
            vertexai=True,
            project="p",
            location="us-central1",
            credentials=_Creds(),
            http_options=types.HttpOptions(httpx_client=replay.client()),
        )  # type: ignore[arg-type]
    options = types.HttpOptions(httpx_client=replay.client(), httpx_async_client=replay.async_client())
    return genai.Client(api_key="k", http_options=options)


class _Creds:
    token = "t"
    expired = False
    valid = True
    quota_project_id = None

    def refresh(self, request: Any) -> None:
        return None

    def before_request(self, *args: Any) -> None:
        return None


def tts_body(tier: str | None, traffic: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"promptTokenCount": 2400, "candidatesTokenCount": 48000, "totalTokenCount": 50400}
    if tier:
        meta["serviceTier"] = tier
    if traffic:
        meta["trafficType"] = traffic
    return {
        "candidates": [
            {"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": meta,
        "modelVersion": "gemini-3.8-flash-tts",
        "responseId": "resp-tts-1",
    }


def test_gemini_flex_tier_is_read_and_priced(recorded: list[UsageEvent]) -> None:
    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    usage = Usage(input_tokens=2400, output_tokens=48000)
    flex = calc_price(
        usage,
        "gemini-3.8-flash-tts",
        provider_id="google",
        genai_request_timestamp=at,
        price_context={"service_tier": "flex"},
    )  # type: ignore[call-arg]
    assert flex.total_price == Decimal("0.2166")
    gemini_client(Replay(tts_body("flex"))).models.generate_content(
        model="gemini-3.8-flash-tts", contents="Read this aloud.", config={"service_tier": "flex"}
    )  # type: ignore[arg-type]
    [e] = recorded
    now = calc_price(
        usage,
        "gemini-3.8-flash-tts",
        provider_id="google",
        genai_request_timestamp=e.timestamp,
        price_context={"service_tier": "flex"},
    )  # type: ignore[call-arg]
    assert (e.service_tier, e.cost_usd, e.partially_priced) == ("flex", now.total_price, False)
    assert e.cost_note is None  # totalTokenCount agrees with the parts


def test_openai_and_anthropic_tiers_are_recorded(recorded: list[UsageEvent]) -> None:
    body = chat(
        "gpt-4o-mini-2024-07-18",
        {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        service_tier="priority",
    )
    openai.OpenAI(api_key="k", http_client=Replay(body).client(), max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=MSGS
    )  # type: ignore[arg-type]
    message = bodies.message(
        "claude-sonnet-4-5-20250929", {"input_tokens": 100, "output_tokens": 10, "service_tier": "priority"}
    )
    anthropic.Anthropic(api_key="k", http_client=Replay(message).client(), max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=MSGS
    )  # type: ignore[arg-type]
    tiers = {e.provider: e for e in recorded}
    o, a = tiers["openai"], tiers["anthropic"]
    assert o.service_tier == a.service_tier == "priority"
    priority = calc_price(
        Usage(input_tokens=100, output_tokens=10),
        "gpt-4o-mini",
        provider_id="openai",
        genai_request_timestamp=o.timestamp,
        price_context={"service_tier": "priority"},
    )  # type: ignore[call-arg]
    assert (o.cost_usd, o.partially_priced) == (priority.total_price, False)
    # the catalogue carries no priority price for Sonnet 4.5: flagged, never silently standard
    assert a.partially_priced and a.cost_note and "service_tier:priority" in a.cost_note


def test_vertex_provisioned_throughput_is_recorded_and_flagged(recorded: list[UsageEvent]) -> None:
    body = tts_body(None, "PROVISIONED_THROUGHPUT")
    body["modelVersion"] = "gemini-2.5-flash"
    gemini_client(Replay(body), vertex=True).models.generate_content(model="gemini-2.5-flash", contents="hi")
    [e] = recorded
    assert e.service_tier == "provisioned_throughput" and e.partially_priced


def grounded_body(model: str, queries: list[str]) -> dict[str, Any]:
    body = tts_body(None)
    body["modelVersion"] = model
    body["usageMetadata"] = {"promptTokenCount": 2400, "candidatesTokenCount": 480, "totalTokenCount": 2880}
    body["candidates"][0]["groundingMetadata"] = {"webSearchQueries": queries}
    return body


def test_gemini_2_grounding_is_one_fee_per_grounded_prompt(recorded: list[UsageEvent]) -> None:
    # Gemini 2.x bills grounding per grounded prompt ($35 / 1,000), however many queries it ran
    # (ai.google.dev/gemini-api/docs/pricing); counting the queries charged 3 fees: $0.10692
    body = grounded_body("gemini-2.5-flash", ["tax rules 2026", "tax changes week", "irs notice"])
    gemini_client(Replay(body)).models.generate_content(model="gemini-2.5-flash", contents="What changed?")
    [e] = recorded
    assert e.units == {"web_searches": Decimal(1)}
    assert json.loads(e.to_json())["units"] == {"web_searches": "1"}
    expected = calc_price(
        Usage(input_tokens=2400, output_tokens=480, web_searches=1), "gemini-2.5-flash", provider_id="google"
    ).total_price
    assert e.cost_usd == expected == Decimal("0.03692")


def test_gemini_3_grounding_is_one_fee_per_search_query(recorded: list[UsageEvent]) -> None:
    # Gemini 3 bills each query it ran ($14 / 1,000); empty entries are not billed, nor repeats
    body = grounded_body(
        "gemini-3-flash-preview", ["tax rules 2026", "", "tax changes week", "irs notice", ""]
    )
    body["candidates"][0]["groundingMetadata"]["webSearchQueries"].append("tax rules 2026")
    gemini_client(Replay(body)).models.generate_content(
        model="gemini-3-flash-preview", contents="What changed?"
    )
    [e] = recorded
    assert e.units == {"web_searches": Decimal(3)}
    expected = calc_price(
        Usage(input_tokens=2400, output_tokens=480, web_searches=3),
        "gemini-3-flash-preview",
        provider_id="google",
    ).total_price
    assert e.cost_usd == expected == Decimal("0.04464")


def test_gemini_grounding_in_a_stream_sync_and_async(recorded: list[UsageEvent]) -> None:
    import asyncio

    last = grounded_body("gemini-2.5-flash", ["tax rules 2026", "tax changes week"])
    first = {**last, "usageMetadata": {"promptTokenCount": 2400, "candidatesTokenCount": 5}}
    first = {k: v for k, v in first.items() if k != "candidates"} | {
        "candidates": [{"content": {"parts": [{"text": "Two"}], "role": "model"}, "index": 0}]
    }
    replay = Replay(bodies.sse([(None, first), (None, last)]))
    client = gemini_client(replay)
    for _ in client.models.generate_content_stream(model="gemini-2.5-flash", contents="What changed?"):
        pass

    async def go() -> None:
        async for _ in await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="What changed?"
        ):
            pass

    asyncio.run(go())
    assert len(recorded) == 2
    for e in recorded:
        assert (e.units, e.cost_usd) == ({"web_searches": Decimal(1)}, Decimal("0.03692"))


def test_web_searches_done_before_a_responses_stream_is_cut_are_counted(recorded: list[UsageEvent]) -> None:
    created = bodies.response_object("gpt-5-2025-08-07", "in_progress")
    events: list[tuple[str | None, Any]] = [
        ("response.created", {"type": "response.created", "sequence_number": 0, "response": created})
    ]
    for i in range(2):
        item = {
            "type": "web_search_call",
            "id": f"ws_{i}",
            "status": "completed",
            "action": {"type": "search", "query": f"q{i}"},
        }
        events.append(
            (
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": i + 1,
                    "output_index": i,
                    "item": item,
                },
            )
        )
    client = openai.OpenAI(api_key="k", http_client=Replay(bodies.sse(events)).client(), max_retries=0)
    for _ in client.responses.create(
        model="gpt-5", input="What changed?", tools=[{"type": "web_search"}], stream=True
    ):  # type: ignore[list-item]
        pass  # the stream ends before response.completed
    [e] = recorded
    assert e.estimated and not e.complete and e.units == {"web_searches": Decimal(2)}
    assert e.cost_usd is not None and e.cost_usd >= Decimal("0.02")


def test_a_missing_one_hour_cache_write_rate_is_flagged_through_track(ledger: object) -> None:
    # Anthropic on Bedrock (global cross-region Sonnet 4): a 5-minute cache-write rate, no 1-hour one
    model = "global.anthropic.claude-sonnet-4-20250514-v1:0"
    e = llmledger.track(
        provider="aws-bedrock",
        model=model,
        input_tokens=10_000,
        cache_write_tokens=8_000,
        cache_write_1h_tokens=8_000,
        output_tokens=100,
    )
    rest = calc_price(Usage(input_tokens=2_000, output_tokens=100), model, provider_id="aws").total_price
    assert e.partially_priced and e.cost_note and "cache_write_1h_tokens" in e.cost_note
    assert e.cost_usd == rest  # the 1-hour writes are left out, not charged at the 5-minute rate
    assert UsageEvent.from_dict(e.to_dict()) == e


def test_a_tool_unit_without_a_rate_is_flagged(ledger: object) -> None:
    e = llmledger.track(
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=100,
        output_tokens=10,
        units={"code_executions": 2},
    )
    plain = calc_price(
        Usage(input_tokens=100, output_tokens=10), "gpt-4o-mini", provider_id="openai"
    ).total_price
    assert (e.cost_usd, e.partially_priced) == (plain, True)
    assert e.cost_note == "partially priced: no rate for code_executions in the price record"


def test_the_server_ingest_path_flags_a_missing_rate_too(tmp_path: Path) -> None:
    from llmledger.engine import Engine
    from llmledger.events.ids import uuid7

    engine = Engine(f"sqlite:///{tmp_path / 'engine.db'}")
    item = {
        "event_id": uuid7(),
        "timestamp": "2026-11-30T12:00:00.000000Z",
        "provider": "openai",
        "model": "gpt-4o-audio-preview-2024-12-17",
        "input_tokens": 1125,
        "input_audio_tokens": 1032,
        "output_tokens": 2486,
        "output_audio_tokens": 1950,
    }
    result = engine.ingest([item])
    assert result.accepted == 1 and not result.rejected
    [e] = result.stored
    assert (e.cost_usd, e.partially_priced) == (Decimal("0.0055925"), True)
    assert e.cost_note and "input_audio_tokens" in e.cost_note


def test_a_standard_tier_is_recorded_as_reported_and_priced_at_the_standard_rate(
    recorded: list[UsageEvent],
) -> None:
    gemini_client(Replay(tts_body("standard"))).models.generate_content(
        model="gemini-3.8-flash-tts", contents="Read this aloud."
    )
    message = bodies.message(
        "claude-sonnet-4-5-20250929", {"input_tokens": 100, "output_tokens": 10, "service_tier": "standard"}
    )
    anthropic.Anthropic(api_key="k", http_client=Replay(message).client(), max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=MSGS
    )  # type: ignore[arg-type]
    g, a = recorded
    assert g.service_tier == a.service_tier == "standard"
    standard = calc_price(
        Usage(input_tokens=2400, output_tokens=48000),
        "gemini-3.8-flash-tts",
        provider_id="google",
        genai_request_timestamp=g.timestamp,
    )  # type: ignore[call-arg]
    assert (g.cost_usd, g.partially_priced, a.partially_priced) == (standard.total_price, False, False)


def test_a_chat_search_model_pays_one_search_per_request(recorded: list[UsageEvent]) -> None:
    usage = {"prompt_tokens": 900, "completion_tokens": 300, "total_tokens": 1200}
    body = chat("gpt-4o-mini-search-preview-2025-03-11", usage)
    client = openai.OpenAI(api_key="k", http_client=Replay(body).client(), max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini-search-preview", messages=MSGS, web_search_options={})  # type: ignore[arg-type]
    sse = bodies.sse(
        [(None, c) for c in chat_chunks("gpt-4o-mini-search-preview-2025-03-11", [{"content": "x"}], usage)]
        + [(None, "[DONE]")]
    )
    for _ in openai.OpenAI(
        api_key="k", http_client=Replay(sse).client(), max_retries=0
    ).chat.completions.create(model="gpt-4o-mini-search-preview", messages=MSGS, stream=True):  # type: ignore[arg-type,call-overload]
        pass
    expected = calc_price(
        Usage(input_tokens=900, output_tokens=300), "gpt-4o-mini-search-preview", provider_id="openai"
    ).total_price
    for e in recorded:
        assert e.units == {"web_searches": Decimal(1)} and e.cost_usd == expected + Decimal("0.01")
    assert len(recorded) == 2


def test_vertex_flex_and_priority_traffic_are_priced_as_their_tier(recorded: list[UsageEvent]) -> None:
    # Vertex reports the tier only as `trafficType` (ON_DEMAND_FLEX / ON_DEMAND_PRIORITY, google-genai
    # `types.TrafficType`): the same Flex and Priority PayGo the catalogue prices as service tiers.
    for traffic in ("ON_DEMAND_FLEX", "ON_DEMAND_PRIORITY", "ON_DEMAND"):
        gemini_client(Replay(tts_body(None, traffic)), vertex=True).models.generate_content(
            model="gemini-3.8-flash-tts", contents="Read this aloud."
        )
    flex, priority, standard = recorded
    usage = Usage(input_tokens=2400, output_tokens=48000)

    def price(tier: str | None) -> Decimal:
        context = {"service_tier": tier} if tier else None
        return calc_price(
            usage,
            "gemini-3.8-flash-tts",
            provider_id="google",
            genai_request_timestamp=flex.timestamp,
            price_context=context,
        ).total_price  # type: ignore[call-arg]

    assert price("flex") == Decimal("0.2166") and price(None) == Decimal("0.4332")
    assert (flex.service_tier, flex.cost_usd, flex.partially_priced) == ("flex", price("flex"), False)
    assert (priority.service_tier, priority.cost_usd) == ("priority", price("priority"))
    assert not priority.partially_priced and priority.cost_usd == Decimal("0.77976")
    assert (standard.service_tier, standard.cost_usd) == (None, Decimal("0.4332"))
