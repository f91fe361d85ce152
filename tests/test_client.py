"""`llmledger.Client` against a real server over loopback HTTP (and a real `llmledger serve` process
killed and restarted): priced events back at once, attribution, typed errors, retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tests.serving import free_port, serve_process, serve_thread

import llmledger
from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.server import ServerSettings, create_app

ADMIN = "llk_aa00bb11cc22dd33_client-admin-secret-0123456789"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    app = create_app(ServerSettings(ledger=f"sqlite:///{tmp_path / 'c.db'}", admin_key=ADMIN))  # type: ignore[arg-type]
    with serve_thread(app) as url:
        yield url


def key(url: str, scope: str, tenant: str | None = None) -> str:
    import httpx2

    answer = httpx2.post(
        f"{url}/api/v1/keys",
        json={"scope": scope, "tenant": tenant},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    return str(answer.json()["key"])


def test_track_returns_the_priced_event_with_attribution(server: str) -> None:
    client = llmledger.Client(server, ADMIN)
    with llmledger.attribute(tenant="acme", user="u1", tags={"plan": "pro"}):
        event = client.track(
            provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=100, user="u2"
        )
    assert isinstance(event, UsageEvent)
    assert event.cost_usd == Decimal("0.00021") and event.cost_source == "catalog"
    assert (event.tenant, event.user, dict(event.tags)) == ("acme", "u2", {"plan": "pro"})
    manual = client.track(provider="acme", model="m", cost_usd=Decimal("0.5"), tenant="globex")
    assert manual.cost_usd == Decimal("0.5") and manual.cost_source == "manual"
    again = client.track_events([event])  # a retry of an event already stored: the same event back
    assert again == [event]
    assert client.spend() == Decimal("0.50021")
    assert client.spend(tenant="acme", tags={"plan": "pro"}) == Decimal("0.00021")
    rows = client.usage("tenant")
    assert {(r["tenant"], r["cost_usd"]) for r in rows} == {
        ("acme", Decimal("0.00021")),
        ("globex", Decimal("0.5")),
    }
    assert [e.event_id for e in client.events(limit=1)] == [manual.event_id]
    assert len(client.events(limit=10)) == 2


def test_errors_are_typed(server: str) -> None:
    with pytest.raises(llmledger.AuthenticationError) as info:
        llmledger.Client(server, "llk_0000000000000000_not-a-real-secret-0123456789").spend()
    assert info.value.status == 401
    with pytest.raises(llmledger.AuthenticationError) as info:
        llmledger.Client(server, key(server, "read")).track(provider="openai", model="gpt-4o")
    assert info.value.status == 403
    bound = llmledger.Client(server, key(server, "ingest", tenant="acme"))
    with pytest.raises(llmledger.ValidationError, match="bound to tenant"):
        bound.track(provider="openai", model="gpt-4o", tenant="globex")
    assert bound.track(provider="openai", model="gpt-4o").tenant == "acme"
    client = llmledger.Client(server, ADMIN)
    with pytest.raises(llmledger.InvalidUsageError):
        client.track(provider="openai", model="gpt-4o", input_tokens=-1)
    with pytest.raises(llmledger.InvalidUsageError):
        client.track(provider="openai", model="gpt-4o", bogus_field=1)
    with pytest.raises(llmledger.ValidationError, match="group"):
        client.usage("nope")
    assert client.spend() == Decimal(0) or client.spend() > 0  # nothing half-stored above
    for bad in ("ftp://x", "not a url", ""):
        with pytest.raises(llmledger.ConfigError):
            llmledger.Client(bad, ADMIN)
    with pytest.raises(llmledger.ConfigError):
        llmledger.Client(server, "")
    with pytest.raises(llmledger.ConfigError):
        llmledger.Client(server, ADMIN, timeout=float("nan"))


def test_rate_limits_are_retried_after_retry_after_or_raised(tmp_path: Path) -> None:
    settings = ServerSettings(ledger=f"sqlite:///{tmp_path / 'r.db'}", admin_key=ADMIN, rate_limit=1)  # type: ignore[arg-type]
    with serve_thread(create_app(settings)) as url:
        impatient = llmledger.Client(url, ADMIN, max_retries=0)
        impatient.spend()
        impatient.spend()
        with pytest.raises(llmledger.RateLimitError) as info:
            impatient.spend()
        assert info.value.retry_after is not None and info.value.retry_after >= 1
        patient = llmledger.Client(url, ADMIN, max_retries=3, backoff=0.01)
        assert patient.spend() == Decimal(0)  # waited for Retry-After, then went through


class _Flaky(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        status, headers, body = self.answers.pop(0) if self.answers else (200, {}, b'{"cost_usd": "1.5"}')
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_5xx_and_dropped_connections_are_retried_then_reported() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        _Flaky.answers = [(503, {"Retry-After": "0"}, b'{"error": "busy"}'), (502, {}, b"")]
        assert llmledger.Client(url, ADMIN, backoff=0.01).spend(tenant="acme") == Decimal("1.5")
        assert len(_Flaky.seen) == 3 and "tenant=acme" in _Flaky.seen[-1]
        _Flaky.answers = [(503, {}, b'{"error": "busy"}')] * 3
        with pytest.raises(llmledger.ServerUnavailable, match="busy"):
            llmledger.Client(url, ADMIN, max_retries=2, backoff=0.01).spend()
        _Flaky.answers = [(500, {}, json.dumps({"error": "boom"}).encode())]
        with pytest.raises(llmledger.ServerError, match="boom") as info:
            llmledger.Client(url, ADMIN, backoff=0.01).spend()
        assert info.value.status == 500 and not isinstance(info.value, llmledger.ServerUnavailable)
    finally:
        httpd.shutdown()
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(llmledger.ServerUnavailable, match="did not answer"):
        llmledger.Client(closed, ADMIN, max_retries=2, backoff=0.01).spend()


def test_a_server_killed_and_restarted_keeps_each_event_once(tmp_path: Path) -> None:
    import signal

    ledger = f"sqlite:///{tmp_path / 'p.db'}"
    port = free_port()
    events: list[UsageEvent] = []
    with serve_process(ledger, ADMIN, port=port) as (url, proc):
        client = llmledger.Client(url, ADMIN, max_retries=1, backoff=0.01)
        events += [client.track(provider="openai", model="gpt-4o", input_tokens=i + 1) for i in range(20)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with pytest.raises(llmledger.ServerUnavailable):
            client.track(provider="openai", model="gpt-4o", input_tokens=1)
    with serve_process(ledger, ADMIN, port=port) as (url, _):
        client = llmledger.Client(url, ADMIN)
        assert client.track_events(events) == events  # the app resends what it is unsure of
        assert len(client.events(limit=1000)) == 20


def test_a_stored_row_that_todays_checks_refuse_does_not_fail_the_events_page(tmp_path: Path) -> None:
    # Regression (newcomer report item 11b): a row stored before the NUL check existed made every
    # remote `events()` page that held it raise, hiding the valid events around it.
    import sqlite3

    db = tmp_path / "c.db"
    app = create_app(ServerSettings(ledger=f"sqlite:///{db}", admin_key=ADMIN))  # type: ignore[arg-type]
    with serve_thread(app) as url:
        client = llmledger.Client(url, ADMIN)
        for n in range(3):
            client.track(provider="openai", model="gpt-4o-mini", input_tokens=10 + n, output_tokens=1)
        with sqlite3.connect(db) as conn:  # what an older llmledger could store
            conn.execute("UPDATE llmledger_events SET model = ? WHERE input_tokens = 11", ("gpt\x00old",))
        events = client.events(limit=10)
    assert sorted(e.input_tokens for e in events) == [10, 11, 12]
    assert {e.model for e in events} == {"gpt-4o-mini", "gpt\x00old"}
    old = next(e for e in events if e.input_tokens == 11)
    assert old.cost_usd == Decimal("0.00000225") and old.timestamp.tzinfo is not None


def test_track_events_takes_usage_events_only(server: str) -> None:
    # Newcomer report 2026-12-02 item 15: a wire dict raised a raw AttributeError.
    client = llmledger.Client(server, ADMIN)
    wire = UsageEvent(
        event_id=uuid7(), timestamp=datetime.now(timezone.utc), provider="openai", model="gpt-4o-mini"
    ).to_dict()
    with pytest.raises(llmledger.InvalidUsageError, match=r"events\[0\] is a dict.*from_dict"):
        client.track_events([wire])  # type: ignore[list-item]
    with pytest.raises(llmledger.InvalidUsageError, match="list of UsageEvent"):
        client.track_events(wire)  # type: ignore[arg-type]
    assert client.track_events([UsageEvent.from_dict(wire)])[0].event_id == wire["event_id"]
