"""A gateway on a real loopback port in front of the fake providers (tests/fakes/upstream.py),
recording into a real SQLite ledger: what the gateway tests drive with the real SDK clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
from tests.fakes.upstream import Upstream, serve_upstream
from tests.serving import serve_thread

from llmledger.engine import Engine
from llmledger.events import UsageEvent
from llmledger.gateway import GatewaySettings, create_gateway
from llmledger.gateway.app import Gateway


@dataclass
class Rig:
    url: str
    upstream_url: str
    upstream: Upstream
    gateway: Gateway
    engine: Engine
    key: str

    def events(self) -> list[UsageEvent]:
        """The recorded events, once no more arrive (an event is recorded just after the answer
        is sent, so a client can be done before its event is)."""
        found = self._read()
        while True:
            time.sleep(0.15)
            again = self._read()
            if len(again) == len(found):
                return again
            found = again

    def _read(self) -> list[UsageEvent]:
        assert self.gateway.recorder.flush(10)
        return list(reversed(self.engine.events({}, limit=None)))

    def wait_events(self, count: int, timeout: float = 20.0) -> list[UsageEvent]:
        """The events once `count` are recorded (a cut stream's is recorded after its estimate)."""
        deadline = time.monotonic() + timeout
        while len(found := self._read()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def headers(self) -> dict[str, str]:
        """What a raw HTTP client sends the gateway: the ledger key, the upstream, a provider key."""
        return {
            "X-Ledger-Key": self.key,
            "X-Ledger-Upstream": f"{self.upstream_url}/v1",
            "Authorization": "Bearer sk-x",
        }

    def openai(self, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key="sk-provider-secret-123",
            max_retries=0,
            default_headers={
                "X-Ledger-Key": self.key,
                "X-Ledger-Upstream": f"{self.upstream_url}/v1",
                **headers,
            },
        )

    def async_openai(self, **headers: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1",
            api_key="sk-provider-secret-123",
            max_retries=0,
            default_headers={
                "X-Ledger-Key": self.key,
                "X-Ledger-Upstream": f"{self.upstream_url}/v1",
                **headers,
            },
        )

    def anthropic(self, **headers: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=f"{self.url}/anthropic",
            api_key="sk-ant-provider-secret-456",
            max_retries=0,
            default_headers={"X-Ledger-Key": self.key, "X-Ledger-Upstream": self.upstream_url, **headers},
        )

    def async_anthropic(self, **headers: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            base_url=f"{self.url}/anthropic",
            api_key="sk-ant-provider-secret-456",
            max_retries=0,
            default_headers={"X-Ledger-Key": self.key, "X-Ledger-Upstream": self.upstream_url, **headers},
        )

    def post(self, path: str, body: Any, **headers: str) -> httpx2.Response:
        return httpx2.post(f"{self.url}{path}", json=body, headers=headers, timeout=10)


@contextmanager
def rig(
    tmp_path: Path, *, tenant: str | None = None, upstream: Upstream | None = None, **settings: Any
) -> Iterator[Rig]:
    """A gateway (settings: `GatewaySettings` fields) in front of a fake upstream it may reach."""
    with serve_upstream(upstream) as (upstream_url, up):
        ledger = f"sqlite:///{tmp_path / 'gateway.db'}"
        engine = Engine(ledger)
        key = engine.keys.create("ingest", tenant=tenant).secret
        allow = (upstream_url, *settings.pop("allow_upstreams", ()))
        routes = [
            {**r, "upstream": r["upstream"].replace("UPSTREAM", upstream_url)}
            for r in settings.pop("routes", ())
        ]
        config = GatewaySettings(
            allow_upstreams=allow,
            providers={f"{upstream_url}/v1": "openai", **settings.pop("providers", {})},
            routes=routes,
            **settings,
        )
        gateway = create_gateway(config, engine, ledger=ledger)
        try:
            with serve_thread(gateway) as url:
                yield Rig(url, upstream_url, up, gateway, engine, key)
        finally:
            engine.close()
