"""A request whose attribution is bad (oversized or control-character tenant header) or fails.

Regression (newcomer15 #23): it ran with tenant=None, so its calls escaped every `tenant="*"` limit,
and a control-character tenant (which limits refuse) was accepted. Now a control character is a bad
value like an oversized one, and `on_attribution_fault="closed"` refuses such a request (400; 500
when the attribution function itself fails) without running it; `"open"` (the default) keeps running
it unattributed, logged and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest
from tests.fakes.server import Fake

import llmledger
from llmledger.events import UsageEvent
from llmledger.integrations import from_headers

MSGS: Any = [{"role": "user", "content": "hi"}]
ATTRIBUTION = from_headers(tenant="x-tenant-id")
BAD = {"oversized": "t" * 300, "control": "t\x01", "nul": "t\x00x"}


def _starlette(fake: Fake, on_fault: str, attribution: Callable[[Any], Any] = ATTRIBUTION) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from llmledger.integrations.asgi import LedgerMiddleware

    async def chat(request: Request) -> PlainTextResponse:
        client = openai.AsyncOpenAI(api_key="k", http_client=fake.async_client(), max_retries=0)
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        except llmledger.LimitExceeded:
            return PlainTextResponse("limited", status_code=429)
        return PlainTextResponse("ok")

    middleware = Middleware(LedgerMiddleware, attribution=attribution, on_attribution_fault=on_fault)
    return TestClient(Starlette(routes=[Route("/chat", chat)], middleware=[middleware]))


@pytest.mark.parametrize("bad", list(BAD))
def test_asgi_closed_refuses_a_bad_tenant_header_and_the_limit_holds(
    recorded: list[UsageEvent], bad: str
) -> None:
    llmledger.set_limit(requests=1, per="day", tenant="*")
    fake = Fake()
    faults = llmledger.stats().internal_errors  # a process-wide count
    with _starlette(fake, "closed") as client:
        assert client.get("/chat", headers={"x-tenant-id": "t1"}).status_code == 200
        assert client.get("/chat", headers={"x-tenant-id": "t1"}).status_code == 429
        for _ in range(2):
            answer = client.get("/chat", headers={"x-tenant-id": BAD[bad]})
            assert answer.status_code == 400
            assert "attribution is not valid" in answer.text and "tenant" in answer.text
    assert len(fake.seen) == 1
    assert llmledger.stats().internal_errors == faults


def test_asgi_closed_answers_500_when_the_attribution_function_fails(recorded: list[UsageEvent]) -> None:
    def broken(scope: Any) -> dict[str, Any]:
        raise KeyError("no such tenant")

    fake = Fake()
    with _starlette(fake, "closed", broken) as client:
        assert client.get("/chat").status_code == 500
    assert fake.seen == []


def test_asgi_open_runs_the_request_unattributed_and_counts_it(
    recorded: list[UsageEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMLEDGER_SWALLOW_INTERNAL_ERRORS", "1")
    fake = Fake()
    faults = llmledger.stats().internal_errors
    with _starlette(fake, "open") as client:
        assert client.get("/chat", headers={"x-tenant-id": "t\x01"}).status_code == 200
    llmledger.flush()
    assert [e.tenant for e in recorded] == [None]
    assert llmledger.stats().internal_errors == faults + 1


def test_wsgi_closed_refuses_a_bad_tenant_header(recorded: list[UsageEvent]) -> None:
    from flask import Flask

    from llmledger.integrations.wsgi import LedgerMiddleware

    app = Flask(__name__)
    app.wsgi_app = LedgerMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, attribution=ATTRIBUTION, on_attribution_fault="closed"
    )
    fake = Fake()

    @app.get("/chat")
    def chat() -> str:
        client = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        return "ok"

    client = app.test_client()
    with client.get("/chat", headers={"x-tenant-id": "acme"}) as answer:  # closed: attribution reset
        assert answer.status_code == 200
    with client.get("/chat", headers={"x-tenant-id": "t" * 300}) as answer:
        assert answer.status_code == 400 and b"tenant" in answer.data
    assert llmledger.current_attribution() == llmledger.Attribution()
    llmledger.flush()
    assert [e.tenant for e in recorded] == ["acme"] and len(fake.seen) == 1


def test_django_closed_refuses_a_bad_tenant_header(recorded: list[UsageEvent]) -> None:
    from django.test import Client, override_settings
    from tests.test_integrations import _django

    _django()  # configures Django once for the process
    with override_settings(LLMLEDGER_ON_ATTRIBUTION_FAULT="closed"):
        client = Client(raise_request_exception=False)
        assert client.get("/chat", headers={"x-tenant-id": "acme"}).status_code == 200
        answer = client.get("/chat", headers={"x-tenant-id": "t\x01"})
        assert answer.status_code == 400 and b"tenant" in answer.content
    llmledger.flush()
    assert [e.tenant for e in recorded] == ["acme"]


def test_on_attribution_fault_is_checked() -> None:
    from llmledger.integrations.asgi import LedgerMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(llmledger.ConfigError, match="on_attribution_fault"):
        LedgerMiddleware(app, attribution=ATTRIBUTION, on_attribution_fault="shut")  # type: ignore[arg-type]
