"""Issue 9 kind 2, siblings: usage conventions of OpenAI-compatible hosts beyond the issue's xAI case.

Real openai clients against recorded-shape bodies (tests/fakes/replay.py); expected values from
genai-prices' `calc_price` (the hosts' published prices), never from llmledger.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
from genai_prices import Usage, calc_price
from tests.fakes import bodies
from tests.fakes.replay import Replay, chat, chat_chunks

from llmledger.events import UsageEvent

MSGS = [{"role": "user", "content": "Plan the migration."}]


def oai(replay: Replay, base_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", base_url=base_url, http_client=replay.client(), max_retries=0)


def aoai(replay: Replay, base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="k", base_url=base_url, http_client=replay.async_client(), max_retries=0
    )


def consume(client: openai.OpenAI, aclient: openai.AsyncOpenAI, model: str) -> None:
    """One sync and one async stream of `model`, read to the end."""
    for _ in client.chat.completions.create(model=model, messages=MSGS, stream=True):  # type: ignore[arg-type,call-overload]
        pass

    async def go() -> None:
        async for _ in await aclient.chat.completions.create(model=model, messages=MSGS, stream=True):  # type: ignore[arg-type,call-overload]
            pass

    asyncio.run(go())


# -- Groq: usage in `x_groq.usage` (Groq's own field, sent before it honoured include_usage) ------

GROQ = "https://api.groq.com/openai/v1"
GROQ_MODEL = "llama-3.3-70b-versatile"
GROQ_USAGE = {
    "queue_time": 0.017,
    "prompt_tokens": 1000,
    "prompt_time": 0.05,
    "completion_tokens": 200,
    "completion_time": 0.6,
    "total_tokens": 1200,
    "total_time": 0.65,
}
GROQ_COST = calc_price(
    Usage(input_tokens=1000, output_tokens=200), GROQ_MODEL, provider_id="groq"
).total_price


def groq_stream() -> bytes:
    chunks = chat_chunks(GROQ_MODEL, [{"role": "assistant", "content": ""}, {"content": "Done."}, {}], None)
    chunks[0]["x_groq"] = {"id": "req_01jx5v3k8pf2"}
    chunks[-1]["choices"][0]["finish_reason"] = "stop"
    chunks[-1]["x_groq"] = {"id": "req_01jx5v3k8pf2", "usage": GROQ_USAGE}
    return bodies.sse([(None, c) for c in chunks] + [(None, "[DONE]")])


def assert_groq(e: UsageEvent) -> None:
    assert (e.provider, e.model, e.input_tokens, e.output_tokens) == ("groq", GROQ_MODEL, 1000, 200)
    assert (e.estimated, e.cost_usd, e.cost_note) == (False, GROQ_COST, None)


def test_groq_price_is_genai_prices_own() -> None:
    assert Decimal("0.000748") == GROQ_COST  # $0.59 / $0.79 per 1M


def test_groq_stream_usage_only_in_x_groq_is_read_sync_and_async(recorded: list[UsageEvent]) -> None:
    replay = Replay(groq_stream())
    consume(oai(replay, GROQ), aoai(replay, GROQ), GROQ_MODEL)
    assert len(recorded) == 2
    for e in recorded:
        assert_groq(e)
        assert e.stream and e.complete


def test_groq_response_with_only_x_groq_usage_is_read(recorded: list[UsageEvent]) -> None:
    body = chat(GROQ_MODEL, GROQ_USAGE, x_groq={"id": "req_01jx5v3k8pf2", "usage": GROQ_USAGE})
    del body["usage"]
    oai(Replay(body), GROQ).chat.completions.create(model=GROQ_MODEL, messages=MSGS)  # type: ignore[arg-type]
    [e] = recorded
    assert_groq(e)


def test_groq_top_level_usage_wins_over_x_groq(recorded: list[UsageEvent]) -> None:
    # current Groq answers include_usage with a usage chunk; x_groq may repeat it: counted once
    chunks = chat_chunks(GROQ_MODEL, [{"content": "Done."}, {}], GROQ_USAGE)
    chunks[-2]["choices"][0]["finish_reason"] = "stop"
    chunks[-2]["x_groq"] = {"id": "req_01jx5v3k8pf2", "usage": GROQ_USAGE}
    replay = Replay(bodies.sse([(None, c) for c in chunks] + [(None, "[DONE]")]))
    for _ in oai(replay, GROQ).chat.completions.create(model=GROQ_MODEL, messages=MSGS, stream=True):  # type: ignore[arg-type,call-overload]
        pass
    [e] = recorded
    assert_groq(e)


# -- Gemini through its OpenAI-compatible endpoint: thinking in total_tokens only ------------------

GEMINI = "https://generativelanguage.googleapis.com/v1beta/openai/"
# gemini-2.5-flash thought 572 tokens: Google's compat usage leaves them out of completion_tokens
# and itemises nothing, but counts them in total_tokens (and bills them as output)
GEMINI_USAGE = {"prompt_tokens": 20, "completion_tokens": 424, "total_tokens": 1016}
GEMINI_COST = calc_price(
    Usage(input_tokens=20, output_tokens=424 + 572), "gemini-2.5-flash", provider_id="google"
).total_price


def assert_gemini(e: UsageEvent) -> None:
    assert (e.provider, e.input_tokens, e.output_tokens, e.reasoning_tokens) == ("gemini", 20, 996, 572)
    assert (e.cost_usd, e.cost_note, e.estimated) == (GEMINI_COST, None, False)


def test_gemini_price_is_genai_prices_own() -> None:
    assert Decimal("0.002496") == GEMINI_COST  # $0.30 / $2.50 per 1M


def test_gemini_compat_thoughts_in_total_are_priced_as_output(recorded: list[UsageEvent]) -> None:
    replay = Replay(chat("gemini-2.5-flash", GEMINI_USAGE))
    oai(replay, GEMINI).chat.completions.create(model="gemini-2.5-flash", messages=MSGS)  # type: ignore[arg-type]
    [e] = recorded
    assert_gemini(e)


def test_gemini_compat_stream_thoughts_sync_and_async(recorded: list[UsageEvent]) -> None:
    chunks = chat_chunks("gemini-2.5-flash", [{"role": "assistant", "content": "Done."}], GEMINI_USAGE)
    replay = Replay(bodies.sse([(None, c) for c in chunks] + [(None, "[DONE]")]))
    consume(oai(replay, GEMINI), aoai(replay, GEMINI), "gemini-2.5-flash")
    assert len(recorded) == 2
    for e in recorded:
        assert_gemini(e)


def test_gemini_compat_itemised_reasoning_beside_completion(recorded: list[UsageEvent]) -> None:
    usage = {**GEMINI_USAGE, "completion_tokens_details": {"reasoning_tokens": 572}}
    oai(Replay(chat("gemini-2.5-flash", usage)), GEMINI).chat.completions.create(
        model="gemini-2.5-flash", messages=MSGS
    )  # type: ignore[arg-type]
    [e] = recorded
    assert_gemini(e)


def test_gemini_compat_total_below_the_parts_is_still_flagged(recorded: list[UsageEvent]) -> None:
    usage = {"prompt_tokens": 20, "completion_tokens": 424, "total_tokens": 300}
    oai(Replay(chat("gemini-2.5-flash", usage)), GEMINI).chat.completions.create(
        model="gemini-2.5-flash", messages=MSGS
    )  # type: ignore[arg-type]
    [e] = recorded
    assert (e.output_tokens, e.reasoning_tokens) == (424, 0)
    assert e.cost_note and "usage inconsistent" in e.cost_note


def test_native_gemini_is_not_read_by_the_compat_convention(recorded: list[UsageEvent]) -> None:
    # google-genai events share the provider id: a total above the parts there is news, not thinking
    from google import genai

    body = {
        "candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 424, "totalTokenCount": 1016},
        "modelVersion": "gemini-2.5-flash",
    }
    client = genai.Client(api_key="k", http_options={"httpx_client": Replay(body).client()})
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    [e] = recorded
    assert (e.output_tokens, e.reasoning_tokens) == (424, 0)
    assert e.cost_note and "usage inconsistent" in e.cost_note


# -- Moonshot: cache hits in a top-level `usage.cached_tokens` ---------------------------------------

MOONSHOT = "https://api.moonshot.ai/v1"
KIMI_USAGE = {"prompt_tokens": 12000, "completion_tokens": 300, "total_tokens": 12300, "cached_tokens": 9000}
KIMI_COST = calc_price(
    Usage(input_tokens=12000, cache_read_tokens=9000, output_tokens=300),
    "kimi-k2-0905-preview",
    provider_id="moonshotai",
).total_price


def test_moonshot_price_is_genai_prices_own() -> None:
    assert Decimal("0.00390") == KIMI_COST  # $0.60 / $0.15 cache hit / $2.50 per 1M


def test_moonshot_top_level_cached_tokens_are_cache_reads(recorded: list[UsageEvent]) -> None:
    oai(Replay(chat("kimi-k2-0905-preview", KIMI_USAGE)), MOONSHOT).chat.completions.create(
        model="kimi-k2-0905-preview", messages=MSGS
    )  # type: ignore[arg-type]
    chunks = chat_chunks("kimi-k2-0905-preview", [{"role": "assistant", "content": "Done."}, {}], None)
    chunks[-1]["choices"][0]["finish_reason"] = "stop"
    chunks[-1]["choices"][0]["usage"] = KIMI_USAGE  # Moonshot streams usage inside the last choice
    replay = Replay(bodies.sse([(None, c) for c in chunks] + [(None, "[DONE]")]))
    consume(oai(replay, MOONSHOT), aoai(replay, MOONSHOT), "kimi-k2-0905-preview")
    assert len(recorded) == 3
    for e in recorded:
        assert (e.provider, e.input_tokens, e.cache_read_tokens, e.output_tokens) == (
            "moonshot",
            12000,
            9000,
            300,
        )
        assert (e.cost_usd, e.cost_note) == (KIMI_COST, None)


def test_the_gateway_prices_gemini_compat_thoughts_as_the_sdk_hooks_do() -> None:
    # the gateway's door: the same wire body read by its pure reader and metered for the host
    import json

    from llmledger.attribution.context import EMPTY
    from llmledger.gateway.meter import Metering
    from llmledger.gateway.wire import read_body
    from llmledger.pricing.pricer import Pricer

    usage, _ = read_body("chat.completions", json.dumps(chat("gemini-2.5-flash", GEMINI_USAGE)).encode())
    meter = Metering("gemini", "chat.completions", "gemini-2.5-flash", EMPTY, None, False)
    assert_gemini(meter.event(Pricer(), usage))
