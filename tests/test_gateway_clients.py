"""`llmledger.proxy` clients: the official SDK clients with the gateway's constructor, against the
gateway in front of the fake providers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from tests.gateway_rig import rig

from llmledger.errors import ConfigError
from llmledger.proxy import Anthropic, AsyncAnthropic, AsyncOpenAI, OpenAI

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_openai_client_with_provider_key_and_short_headers(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        client = OpenAI(
            provider_api_key="sk-provider-secret-123",
            provider_api_base=f"{r.upstream_url}/v1",
            ledger_key=r.key,
            ledger_url=r.url,
            extra_headers={"user": "u-1", "org": "o-1", "plan": "pro", "project": "p-1", "feature": "chat"},
            max_retries=0,
        )
        assert isinstance(client, openai.OpenAI)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"user": "u-2", "plan": "free"}
        )
        client.with_options(timeout=30).embeddings.create(model="text-embedding-3-small", input="x")
        first, second, third = r.events()
    assert (first.user, first.org, first.feature, dict(first.tags)) == (
        "u-1",
        "o-1",
        "chat",
        {"plan": "pro", "project": "p-1"},
    )
    assert (second.user, dict(second.tags)) == ("u-2", {"plan": "free", "project": "p-1"})  # per request
    assert third.endpoint == "embeddings" and third.user == "u-1"


def test_anthropic_and_async_clients(tmp_path: Path) -> None:
    async def calls(url: str, upstream: str, key: str) -> None:
        a = AsyncAnthropic(
            provider_api_key="sk-ant-x", provider_api_base=upstream, ledger_key=key, ledger_url=url
        )
        o = AsyncOpenAI(
            provider_api_key="sk-x", provider_api_base=f"{upstream}/v1", ledger_key=key, ledger_url=url
        )
        await a.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)
        await o.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await a.close()
        await o.close()

    with rig(tmp_path) as r:
        sync = Anthropic(
            provider_api_key="sk-ant-x",
            provider_api_base=r.upstream_url,
            ledger_key=r.key,
            ledger_url=r.url,
            extra_headers={"tenant": "acme"},
        )
        sync.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)
        asyncio.run(calls(r.url, r.upstream_url, r.key))
        events = r.events()
    assert [e.provider for e in events] == ["anthropic", "anthropic", "openai"]
    assert events[0].tenant == "acme"


def test_routes_hold_the_keys_so_the_client_has_only_a_ledger_key(tmp_path: Path) -> None:
    routes = [{"model": "gpt-4o-mini", "upstream": "UPSTREAM/v1", "key": "sk-route-1", "provider": "openai"}]
    with rig(tmp_path, routes=routes) as r:
        client = OpenAI(ledger_key=r.key, ledger_url=r.url, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert r.upstream.fake.seen[-1].headers["authorization"] == "Bearer sk-route-1"
        assert [m.id for m in client.models.list().data] == ["gpt-4o-mini"]
        assert len(r.events()) == 1


def test_bad_arguments_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMLEDGER_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ledger_key"):
        OpenAI(provider_api_key="sk-x")
    with pytest.raises(ConfigError, match="ledger_url"):
        OpenAI(ledger_key="llk_x", ledger_url="ftp://x")
    with pytest.raises(ConfigError, match="provider_api_base"):
        Anthropic(ledger_key="llk_x", provider_api_base="api.anthropic.com")
    with pytest.raises(ConfigError, match="extra_headers"):
        OpenAI(ledger_key="llk_x", extra_headers={"user": 42})  # type: ignore[dict-item]
    monkeypatch.setenv("LLMLEDGER_API_KEY", "llk_from_env")
    monkeypatch.setenv("LLMLEDGER_GATEWAY_URL", "http://gw.internal:9000/")
    client = OpenAI()
    assert str(client.base_url) == "http://gw.internal:9000/v1/"
    assert client.default_headers["X-Ledger-Key"] == "llk_from_env"
