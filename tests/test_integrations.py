"""The web middleware with the real frameworks: FastAPI/Starlette (ASGI), Flask (WSGI), Django.

Each request is attributed from its headers; the next request on the same (reused) worker thread
is never billed to the previous tenant, also after a failing request; a fault in the attribution
function never fails the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from tests.fakes.server import Fake

import llmledger
from llmledger.events import UsageEvent
from llmledger.integrations import from_headers

ATTRIBUTION = from_headers(tenant="x-tenant-id", user="x-user-id", tag_plan="x-plan")
MSGS: Any = [{"role": "user", "content": "hi"}]


def _llm_call(fake: Fake) -> None:
    client = openai.OpenAI(api_key="k", http_client=fake.client(), max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)


def _who(events: list[UsageEvent]) -> list[tuple[str | None, str | None, dict[str, str]]]:
    llmledger.flush()
    return [(e.tenant, e.user, dict(e.tags)) for e in events]


def test_asgi_fastapi_and_starlette(recorded: list[UsageEvent], fake: Fake) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from llmledger.integrations.asgi import LedgerMiddleware

    app = FastAPI()
    app.add_middleware(LedgerMiddleware, attribution=ATTRIBUTION)

    @app.get("/sync")
    def sync_endpoint() -> dict[str, str]:  # runs on a reused worker thread of the pool
        _llm_call(fake)
        return {"ok": "1"}

    @app.get("/async")
    async def async_endpoint() -> dict[str, str]:
        llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1)
        return {"ok": "1"}

    @app.get("/boom")
    def boom() -> None:
        _llm_call(fake)
        raise RuntimeError("view failed")

    with TestClient(app, raise_server_exceptions=False) as test_client:

        def get(path: str, **headers: str) -> int:
            status = test_client.get(path, headers=headers).status_code
            llmledger.flush()  # events in request order (instrumented calls are announced by the writer)
            return status

        for path in ("/sync", "/async"):
            assert get(path, **{"x-tenant-id": "acme", "x-plan": "pro"}) == 200
            assert get(path) == 200  # no tenant: NOT the previous request's
        assert get("/boom", **{"x-tenant-id": "evil"}) == 500
        assert get("/sync", **{"x-user-id": "u9"}) == 200
    assert _who(recorded) == [
        ("acme", None, {"plan": "pro"}),
        (None, None, {}),
        ("acme", None, {"plan": "pro"}),
        (None, None, {}),
        ("evil", None, {}),
        (None, "u9", {}),
    ]
    assert llmledger.current_attribution() == llmledger.Attribution()


def test_asgi_plain_starlette_and_a_failing_attribution_function(recorded: list[UsageEvent]) -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from llmledger.integrations.asgi import LedgerMiddleware

    def bad(scope: Any) -> dict[str, Any]:
        if dict(scope["headers"]).get(b"x-break"):
            raise KeyError("no such tenant")
        return {"tenant": "t1", "feature": scope["path"].strip("/")}

    def endpoint(request: Request) -> PlainTextResponse:
        llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1)
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/chat", endpoint)], middleware=[Middleware(LedgerMiddleware, attribution=bad)]
    )
    with TestClient(app) as client:
        assert client.get("/chat").status_code == 200
        with pytest.raises(KeyError):  # under pytest internal faults are re-raised to be seen
            client.get("/chat", headers={"x-break": "1"})
    assert _who(recorded)[0] == ("t1", None, {}) and recorded[0].feature == "chat"


def test_wsgi_flask_on_a_reused_worker_thread(recorded: list[UsageEvent], fake: Fake) -> None:
    from flask import Flask, Response

    from llmledger.integrations.wsgi import LedgerMiddleware

    app = Flask(__name__)
    app.wsgi_app = LedgerMiddleware(app.wsgi_app, attribution=ATTRIBUTION)  # type: ignore[method-assign]

    @app.get("/chat")
    def chat() -> str:
        _llm_call(fake)
        return "ok"

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:  # read by the server after the view returned
            yield "a"
            llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1)
            yield "b"

        return Response(body())

    @app.get("/boom")
    def boom() -> str:
        _llm_call(fake)
        raise RuntimeError("view failed")

    client = app.test_client()
    worker = ThreadPoolExecutor(max_workers=1)  # one worker thread serves every request in turn

    def get(path: str, **headers: str) -> int:
        def serve() -> int:
            response = client.get(path, headers=headers)
            _ = response.data  # the server reads the whole body (a streamed one too), then closes it
            response.close()
            llmledger.flush()  # events in request order (instrumented calls are announced by the writer)
            return response.status_code

        return worker.submit(serve).result()

    worker.submit(llmledger.set_attribution, tenant="leaked-by-old-middleware").result()
    assert get("/chat", **{"x-tenant-id": "acme"}) == 200
    assert get("/chat") == 200  # replaces the thread's old value, never merges with it
    assert get("/stream", **{"x-tenant-id": "streamer"}) == 200
    assert get("/boom", **{"x-tenant-id": "evil"}) == 500
    assert get("/chat", **{"x-user-id": "u2"}) == 200
    assert _who(recorded) == [
        ("acme", None, {}),
        (None, None, {}),
        ("streamer", None, {}),
        ("evil", None, {}),
        (None, "u2", {}),
    ]
    after = worker.submit(llmledger.current_attribution).result()
    assert after.tenant == "leaked-by-old-middleware"  # restored: the middleware leaves no trace
    worker.shutdown()


def _django() -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["llmledger.integrations.django.LedgerMiddleware"],
            LLMLEDGER_ATTRIBUTION=f"{__name__}.ATTRIBUTION",
            SECRET_KEY="test",
            INSTALLED_APPS=[],
        )
        django.setup()
    from django.test import Client

    return Client(raise_request_exception=False)


def _django_view(request: Any) -> Any:
    from django.http import HttpResponse

    if request.path == "/boom":
        raise RuntimeError("view failed")
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1)
    return HttpResponse("ok")


def _patterns() -> list[Any]:
    try:
        from django.urls import path
    except ImportError:  # pragma: no cover
        return []
    return [path("chat", _django_view), path("boom", _django_view)]


urlpatterns = _patterns()


def test_django_middleware(recorded: list[UsageEvent]) -> None:
    client = _django()
    worker = ThreadPoolExecutor(max_workers=1)

    def get(path: str, **headers: str) -> int:
        return int(worker.submit(lambda: client.get(path, headers=headers).status_code).result())

    assert get("/chat", **{"x-tenant-id": "acme", "x-plan": "free"}) == 200
    assert get("/boom", **{"x-tenant-id": "evil"}) == 500
    assert get("/chat") == 200
    assert _who(recorded) == [("acme", None, {"plan": "free"}), (None, None, {})]
    assert worker.submit(llmledger.current_attribution).result() == llmledger.Attribution()
    worker.shutdown()


def test_from_headers_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown key 'customer'"):
        from_headers(customer="x-customer")
