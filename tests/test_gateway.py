"""The gateway with the real openai and anthropic clients, in front of the fake providers on
loopback: usage and cost recorded as the SDK hooks record them, streams relayed event by event."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest
from tests.fakes import bodies as b
from tests.fakes.upstream import serve_upstream
from tests.gateway_rig import rig
from tests.serving import free_port, wait_ready

from llmledger.engine import Engine

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_openai_chat_non_stream_records_usage_cost_and_headers(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        raw = r.openai().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        completion = raw.parse()
        assert completion.choices[0].message.content == "".join(b.TEXT)
        [event] = r.events()
    assert (event.provider, event.model, event.requested_model) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini",
    )
    assert (event.input_tokens, event.output_tokens, event.cache_read_tokens, event.reasoning_tokens) == (
        1200,
        300,
        1024,
        256,
    )
    assert event.cost_usd is not None and event.cost_usd > 0
    assert raw.headers["x-ledger-cost-usd"] == str(event.cost_usd)
    assert float(raw.headers["x-ledger-overhead-ms"]) >= 0
    assert raw.headers["x-request-id"] == "req_fake"  # the provider's request id passed through
    assert event.request_id == "chatcmpl-AbC123"
    assert event.endpoint == "chat.completions" and event.stream is False and event.complete


@pytest.mark.parametrize("asked", [False, True])
def test_openai_chat_stream_usage_chunk_hidden_unless_asked(tmp_path: Path, asked: bool) -> None:
    with rig(tmp_path) as r:
        options = {"stream_options": {"include_usage": True}} if asked else {}
        chunks = list(
            r.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **options)
        )
        sent = r.upstream.fake.seen[-1].body
        [event] = r.wait_events(1)  # a stream's event is recorded just after its last chunk
    assert sent["stream_options"] == {"include_usage": True}  # asked for upstream either way
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(b.TEXT)
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == (1 if asked else 0)
    assert (event.input_tokens, event.output_tokens, event.stream, event.complete) == (1200, 300, True, True)
    assert not event.estimated and event.cost_usd is not None


def test_anthropic_messages_stream_and_not(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        client = r.anthropic()
        message = client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES)
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES) as s:
            text = "".join(s.text_stream)
        first, second = r.wait_events(2)
        sent = r.upstream.fake.seen[-1].headers
    assert message.content[0].text == text == "".join(b.TEXT)
    for event in (first, second):
        assert (event.provider, event.model) == ("anthropic", "claude-haiku-4-5-20251001")
        assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (7025, 4000, 3000)
        assert event.cache_write_1h_tokens == 2000 and event.output_tokens == 180
        assert event.cost_usd is not None and not event.estimated
    assert (first.stream, second.stream) == (False, True)
    provider_key = sent.get("x-api-key") or sent["authorization"].removeprefix("Bearer ")
    assert provider_key == "sk-ant-provider-secret-456"  # the client's own key goes upstream
    assert not any(k.startswith("x-ledger") or "llk_" in v for k, v in sent.items())  # ours never does


def test_async_clients(tmp_path: Path) -> None:
    async def main(r: object) -> None:
        oa = r.async_openai()  # type: ignore[attr-defined]
        an = r.async_anthropic()  # type: ignore[attr-defined]
        stream = await oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        async for _ in stream:
            pass
        await an.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
        await oa.close()
        await an.close()

    with rig(tmp_path) as r:
        asyncio.run(main(r))
        events = r.wait_events(2)
    assert [e.provider for e in events] == ["openai", "anthropic"]
    assert all(e.cost_usd is not None for e in events)


def test_attribution_headers_body_user_and_tags(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        client = r.openai(
            **{"X-Ledger-Tenant": "acme", "X-Ledger-Feature": "chat", "X-Ledger-Tag-Plan": "pro"}
        )
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="u-42")
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"user": "u-7", "org": "o-1", "project": "p"},
        )
        first, second = r.events()
    assert (first.tenant, first.user, first.feature, dict(first.tags)) == (
        "acme",
        "u-42",
        "chat",
        {"plan": "pro"},
    )
    assert (second.user, second.org, dict(second.tags)) == ("u-7", "o-1", {"plan": "pro", "project": "p"})


def test_upstream_not_allowed_is_refused_before_sending(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        client = r.openai(**{"X-Ledger-Upstream": "http://169.254.169.254/latest"})
        with pytest.raises(openai.PermissionDeniedError, match="allow-list"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert r.events() == []


def test_missing_ledger_key_is_an_authentication_error(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        client = anthropic.Anthropic(base_url=f"{r.url}/anthropic", api_key="sk-ant-x", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError, match="missing llmledger key"):
            client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)


def test_cost_is_decimal_exact(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        raw = r.openai().embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi")
        [event] = r.events()
    assert event.input_tokens == 8 and event.endpoint == "embeddings"
    assert Decimal(raw.headers["x-ledger-cost-usd"]) == event.cost_usd


ADMIN = "llk_0123456789abcdef_" + "s" * 32


def _launch(
    command: str, ledger: str, port: int, upstream: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`llmledger proxy` or `serve` as a real process, allowed to call `upstream`."""
    environ = {**os.environ, "LLMLEDGER_ADMIN_KEY": ADMIN, **env}
    environ.pop("PYTEST_CURRENT_TEST", None)
    main = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"
    cmd = [sys.executable, "-c", main, command, "--ledger", ledger, "--port", str(port)]
    return subprocess.Popen([*cmd, "--allow-upstream", upstream], env=environ, stderr=subprocess.PIPE)


def _client(port: int, upstream: str, provider_key: str) -> openai.OpenAI:
    """The openai SDK pointed at a gateway process on `port`, forwarding to `upstream`."""
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key=provider_key,
        default_headers={"X-Ledger-Key": ADMIN, "X-Ledger-Upstream": f"{upstream}/v1"},
    )


@pytest.mark.parametrize("command", ["proxy", "serve"])
def test_real_process_meters_into_its_ledger(tmp_path: Path, command: str) -> None:
    ledger = f"sqlite:///{tmp_path / 'p.db'}"
    with serve_upstream() as (upstream, _):
        port = free_port()
        proc = _launch(command, ledger, port, upstream, {})
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc=proc)
            client = _client(port, upstream, "sk-provider-secret-123")
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            raw = httpx2.get(  # a free route (no event): date/server once, as on metered answers
                f"http://127.0.0.1:{port}/v1/models",
                headers={
                    "X-Ledger-Key": ADMIN,
                    "X-Ledger-Upstream": f"{upstream}/v1",
                    "Authorization": "Bearer sk-x",
                },
            )
            names = [name.lower() for name, _ in raw.headers.raw]
            assert raw.status_code == 200 and names.count(b"date") == 1 and names.count(b"server") <= 1, names
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr  # proxy and serve: SIGTERM is a graceful stop
    assert b"sk-provider-secret-123" not in stderr
    engine = Engine(ledger)
    try:
        [event] = engine.events({}, limit=None)
    finally:
        engine.close()
    assert event.model == "gpt-4o-mini-2024-07-18" and event.cost_usd is not None


def test_responses_completions_and_free_endpoints(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        client = r.openai()
        response = client.responses.create(model="o4-mini", input="Hi")
        streamed = list(client.responses.create(model="o4-mini", input="Hi", stream=True))
        completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say")
        models = client.models.list()
        counted = r.anthropic().messages.count_tokens(model="claude-haiku-4-5", messages=MESSAGES)
        events = r.wait_events(3)
    assert response.usage is not None and response.usage.input_tokens == 2000
    assert streamed[-1].type == "response.completed"
    assert completion.usage is not None and completion.usage.completion_tokens == 7
    assert "gpt-4o-mini" in [m.id for m in models.data] and counted.input_tokens == 42
    responses, responses_stream, legacy = events  # models and count_tokens cost nothing: not recorded
    for event in (responses, responses_stream):
        assert (event.endpoint, event.input_tokens, event.cache_read_tokens, event.reasoning_tokens) == (
            "responses",
            2000,
            1536,
            384,
        )
    assert responses_stream.stream and not responses.stream
    assert (legacy.endpoint, legacy.input_tokens, legacy.output_tokens) == ("completions", 5, 7)


@pytest.mark.parametrize("stream", [False, True])
def test_date_and_server_headers_are_sent_once(tmp_path: Path, stream: bool) -> None:
    """Newcomer report item 29: the upstream's `date` / `server` were relayed beside uvicorn's own."""
    with rig(tmp_path) as r:
        answer = httpx2.post(
            f"{r.url}/v1/chat/completions",
            headers=r.headers(),
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream},
        )
        names = [name.lower() for name, _ in answer.headers.raw]
        assert answer.status_code == 200 and names.count(b"date") == 1 and names.count(b"server") <= 1, names


def test_remembered_attributions_follow_their_headers_body_user_and_key() -> None:
    from llmledger.errors import AttributionRefused
    from llmledger.gateway.attribution import attribution_of

    base = [(b"x-ledger-key", b"llk_x"), (b"x-ledger-tenant", b"acme"), (b"user", b"ann")]
    first = attribution_of(base, {"model": "m"}, None)
    assert attribution_of(list(base), {"model": "m"}, None) is first  # remembered
    assert (first.tenant, first.user) == ("acme", "ann")
    other = attribution_of([*base[:2], (b"user", b"bob")], {"model": "m"}, None)
    assert other.user == "bob"
    by_body = attribution_of(base[:2], {"user": "carl"}, None)
    assert by_body.user == "carl" and attribution_of(base[:2], {"user": "dee"}, None).user == "dee"
    with pytest.raises(AttributionRefused, match="bound to tenant"):  # same headers, another key's tenant
        attribution_of(base, {"model": "m"}, "other")
    with pytest.raises(AttributionRefused):  # a bad value is refused every time, never remembered
        attribution_of([(b"x-ledger-user", b"")], None, None)
    with pytest.raises(AttributionRefused):
        attribution_of([(b"x-ledger-user", b"")], None, None)


@pytest.mark.parametrize("command", ["proxy", "serve"])
def test_sigterm_while_a_stream_is_relayed_lets_it_finish_and_records_it_whole(
    tmp_path: Path, command: str
) -> None:
    # Regression (newcomer report, 2026-12-02, item 7): a stream the client received in full during
    # a graceful shutdown was recorded as cancelled (ClientDisconnected), and `proxy` exited -15.
    import signal
    import threading
    import time

    from tests.fakes.upstream import Upstream

    ledger = f"sqlite:///{tmp_path / 'p.db'}"
    with serve_upstream(Upstream(delay=0.05)) as (upstream, _):
        port = free_port()
        proc = _launch(command, ledger, port, upstream, {"XDG_CACHE_HOME": str(tmp_path)})
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc=proc)
            client = _client(port, upstream, "sk-x")
            got: list[object] = []

            def read() -> None:
                stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
                got.extend(stream)

            reader = threading.Thread(target=read)
            reader.start()
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:  # the stream is under way
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            reader.join(30)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert len(got) >= 3  # every chunk, after the signal too
    engine = Engine(ledger)
    try:
        [event] = engine.events({}, limit=None)
    finally:
        engine.close()
    assert event.status == "ok" and event.error_type is None, event
