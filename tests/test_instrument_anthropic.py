"""The real anthropic client, instrumented by `init()`, against a byte-realistic fake of the API."""

from __future__ import annotations

import asyncio
import gc
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from tests.fakes import bodies
from tests.fakes.server import Fake  # fixtures `fake` and `recorded` live in conftest

from llmledger.events import UsageEvent

MSGS = [{"role": "user", "content": "Summarise the ledger."}]
# claude-sonnet-4-6: $3 / M input, $0.30 / M cache read, $3.75 / M 5m write, $6 / M 1h write, $15 / M output
COST = (
    Decimal(3) * 25 + Decimal("0.3") * 4000 + Decimal("3.75") * 1000 + Decimal(6) * 2000 + Decimal(15) * 180
) / 10**6


def client(fake: Fake) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", http_client=fake.client(), max_retries=0)


def aclient(fake: Fake) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="sk-ant-test", http_client=fake.async_client(), max_retries=0)


def assert_usage(e: UsageEvent) -> None:
    assert (e.provider, e.model, e.requested_model, e.endpoint) == (
        "anthropic",
        "claude-sonnet-4-6",
        "claude-sonnet-4-6",
        "messages",
    )
    # input_tokens EXCLUDES both cache pools: 25 + 4000 read + 3000 written
    assert (e.input_tokens, e.cache_read_tokens, e.cache_write_tokens, e.cache_write_1h_tokens) == (
        7025,
        4000,
        3000,
        2000,
    )
    assert e.output_tokens == 180 and not e.estimated and e.status == "ok"
    assert e.cost_usd == COST


def test_create_sync_and_async(fake: Fake, recorded: list[UsageEvent]) -> None:
    msg = client(fake).messages.create(
        model="claude-sonnet-4-6", max_tokens=512, messages=MSGS, ledger_tenant="acme"
    )  # type: ignore[arg-type,call-overload]
    assert msg.content[0].text == "Hello there, how can I help?"  # type: ignore[union-attr]

    async def go() -> None:
        await aclient(fake).messages.create(model="claude-sonnet-4-6", max_tokens=512, messages=MSGS)  # type: ignore[arg-type]

    asyncio.run(go())
    assert len(recorded) == 2
    for e in recorded:
        assert_usage(e)
    assert recorded[0].tenant == "acme" and recorded[0].request_id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert "x-llmledger-attribution" not in fake.seen[0].headers  # never sent to the provider


def test_stream_takes_the_last_cumulative_delta(fake: Fake, recorded: list[UsageEvent]) -> None:
    events = list(
        client(fake).messages.create(model="claude-sonnet-4-6", max_tokens=512, messages=MSGS, stream=True)
    )  # type: ignore[arg-type]
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    [e] = recorded
    assert_usage(e)
    assert e.stream and e.complete and e.time_to_first_token_ms is not None


def test_stream_helper_sync_and_async(fake: Fake, recorded: list[UsageEvent]) -> None:
    with client(fake).messages.stream(model="claude-sonnet-4-6", max_tokens=512, messages=MSGS) as s:  # type: ignore[arg-type]
        assert "".join(s.text_stream) == "Hello there, how can I help?"
        assert s.get_final_message().usage.output_tokens == 180

    async def go() -> None:
        async with aclient(fake).messages.stream(
            model="claude-sonnet-4-6", max_tokens=512, messages=MSGS
        ) as s:  # type: ignore[arg-type]
            await s.get_final_message()

    asyncio.run(go())
    assert len(recorded) == 2
    for e in recorded:
        assert_usage(e)


def test_stream_closed_early(fake: Fake, recorded: list[UsageEvent]) -> None:
    with client(fake).messages.stream(model="claude-sonnet-4-6", max_tokens=512, messages=MSGS) as s:  # type: ignore[arg-type]
        for _ in s.text_stream:
            break
    [e] = recorded  # recorded at close
    assert not e.complete and e.estimated
    # message_start's input and cache counts are exact; its output count is a placeholder
    assert (e.input_tokens, e.cache_read_tokens, e.cache_write_tokens) == (7025, 4000, 3000)
    assert e.output_tokens == 2  # "Hello" + " there" seen so far: estimated


def test_stream_cut_before_message_delta(fake: Fake, recorded: list[UsageEvent]) -> None:
    fake.cut = 6  # message_start, block start, ping, 3 deltas
    list(client(fake).messages.create(model="claude-sonnet-4-6", max_tokens=512, messages=MSGS, stream=True))  # type: ignore[arg-type]
    gc.collect()
    [e] = recorded
    assert e.estimated and not e.complete and e.output_tokens == 3 and e.input_tokens == 7025


def test_beta_messages_and_raw_response(fake: Fake, recorded: list[UsageEvent]) -> None:
    c = client(fake)
    c.beta.messages.create(model="claude-sonnet-4-6", max_tokens=512, messages=MSGS)  # type: ignore[arg-type]
    raw = c.messages.with_raw_response.create(model="claude-sonnet-4-6", max_tokens=512, messages=MSGS)  # type: ignore[arg-type]
    raw.parse()
    assert fake.seen[0].path == "/v1/messages"
    assert len(recorded) == 2
    for e in recorded:
        assert_usage(e)


def test_five_minute_only_cache_writes_and_web_search(fake: Fake, recorded: list[UsageEvent]) -> None:
    fake.usage = {
        "input_tokens": 100,
        "cache_creation_input_tokens": 500,
        "cache_read_input_tokens": 0,
        "output_tokens": 10,
        "server_tool_use": {"web_search_requests": 2},
    }
    client(fake).messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS)  # type: ignore[arg-type]
    [e] = recorded
    assert (e.input_tokens, e.cache_write_tokens, e.cache_write_1h_tokens, e.units) == (
        600,
        500,
        0,
        {"web_searches": 2},
    )
    # $3 / M input, $3.75 / M 5m write, $15 / M output, $10 / 1k web searches
    assert e.cost_usd == (Decimal(3) * 100 + Decimal("3.75") * 500 + Decimal(15) * 10) / 10**6 + Decimal(
        "0.02"
    )


@pytest.mark.parametrize(
    ("status", "exc"), [(400, anthropic.BadRequestError), (529, anthropic.OverloadedError)]
)
def test_provider_error(fake: Fake, recorded: list[UsageEvent], status: int, exc: type[Exception]) -> None:
    fake.fail = (status, bodies.anthropic_error(status))
    with pytest.raises(exc):
        client(fake).messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS)  # type: ignore[arg-type]
    [e] = recorded
    assert (e.status, e.error_type, e.cost_usd) == ("error", exc.__name__, Decimal(0))


def test_count_tokens_is_not_billable(fake: Fake, recorded: list[UsageEvent]) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client(fake).messages.count_tokens(model="claude-sonnet-4-6", messages=MSGS)  # type: ignore[arg-type]
    assert recorded == []


def test_bedrock_and_vertex_provider_ids(fake: Fake, recorded: list[UsageEvent]) -> None:
    vertex = anthropic.AnthropicVertex(
        region="us-east5", project_id="p", access_token="t", http_client=fake.client(), max_retries=0
    )
    vertex.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS)  # type: ignore[arg-type]
    bedrock: Any = anthropic.AnthropicBedrock(
        aws_region="us-east-1",
        aws_access_key="AKIA",
        aws_secret_key="secret",
        http_client=fake.client(),
        max_retries=0,
    )
    bedrock.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS)
    assert [s.path.rsplit("/", 1)[-1] for s in fake.seen] == ["claude-sonnet-4-6:rawPredict", "invoke"]
    assert [e.provider for e in recorded] == ["anthropic-vertex", "aws-bedrock"]
    assert [e.model for e in recorded] == ["claude-sonnet-4-6"] * 2
    assert recorded[0].cost_usd == COST
    # Bedrock is priced from the catalogue's AWS entry ($3.30 / $0.33 / $4.125 / $6.60 / $16.50 per M)
    aws = Decimal("3.3") * 25 + Decimal("0.33") * 4000 + Decimal("4.125") * 1000 + Decimal("6.6") * 2000
    assert recorded[1].cost_usd == (aws + Decimal("16.5") * 180) / 10**6


def test_bedrock_counts_and_prices_the_model_id_it_was_called_with(ledger_path: Any) -> None:
    # Bedrock bills the model id / inference profile invoked (the global profile is 10 % cheaper than
    # the regional ones), but its body names the bare Anthropic model ("msg_bdrk_..." bodies answer
    # "claude-sonnet-4-5-20250929"). Prices: genai-prices' aws entries.
    from genai_prices import Usage, calc_price
    from tests.fakes.replay import Replay

    import llmledger

    profile = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    usage = {"input_tokens": 20_000, "output_tokens": 1_500}
    body = {**bodies.message("claude-sonnet-4-5-20250929", usage), "id": "msg_bdrk_01WpFc3918C93ZG9ZMKVqz"}
    expected = calc_price(
        Usage(input_tokens=20_000, output_tokens=1_500), profile, provider_id="aws"
    ).total_price
    assert expected == Decimal("0.0825")  # $3 / $15 per 1M (the us./eu. profiles: $3.30 / $16.50)
    seen: list[UsageEvent] = []
    llmledger.init(ledger=str(ledger_path), on_event=seen.append, flush_interval=0.01)
    llmledger.set_limit(usd="0.1", per="day", tenant="*", model=profile)
    bedrock: Any = anthropic.AnthropicBedrock(
        aws_region="us-east-1",
        aws_access_key="AKIA",
        aws_secret_key="secret",
        http_client=Replay(body).client(),
        max_retries=0,
    )
    bedrock.messages.create(model=profile, max_tokens=2000, messages=MSGS, ledger_tenant="t1")
    llmledger.flush()
    [e] = seen
    assert (e.provider, e.model, e.requested_model) == ("aws-bedrock", profile, profile)
    assert (e.cost_usd, e.cost_source) == (expected, "catalog")
    assert llmledger.spend(model=profile) == expected
    # the limit named by the profile counted the call, so the next one no longer fits
    assert llmledger.reconcile() == []
    with pytest.raises(llmledger.LimitExceeded):
        bedrock.messages.create(model=profile, max_tokens=2000, messages=MSGS, ledger_tenant="t1")


def test_a_bedrock_application_profile_arn_is_priced_as_the_model_it_answers(
    recorded: list[UsageEvent],
) -> None:
    # An application inference profile (an ARN the catalogue cannot know) bills the model behind it.
    from tests.fakes.replay import Replay

    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
    body = bodies.message("claude-sonnet-4-5-20250929", {"input_tokens": 20_000, "output_tokens": 1_500})
    bedrock: Any = anthropic.AnthropicBedrock(
        aws_region="us-east-1",
        aws_access_key="AKIA",
        aws_secret_key="secret",
        http_client=Replay(body).client(),
        max_retries=0,
    )
    bedrock.messages.create(model=arn, max_tokens=2000, messages=MSGS)
    [e] = recorded
    assert (e.model, e.requested_model) == ("claude-sonnet-4-5-20250929", arn)
    assert e.cost_usd == Decimal("3.3") * 20_000 / 10**6 + Decimal("16.5") * 1_500 / 10**6
