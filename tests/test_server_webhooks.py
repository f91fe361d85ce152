"""Threshold alerts to webhooks: a real local HTTP receiver; signed bodies, retries with backoff,
once per limit, subject and window across two servers on one ledger, never blocking a request."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.test_server_reservations import ADMIN, event, reservation

from llmledger.engine import Engine
from llmledger.server import ServerSettings, create_app
from llmledger.storage.webhooks import DeliveryStore

SECRET = "whsec_0123456789abcdef-the-tests"


class Receiver:
    """A webhook receiver on loopback: records every POST; answers `statuses` in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None, gate: threading.Event | None = None) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.gate = gate
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.gate is not None:
                    outer.gate.wait(30)
                outer.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.seen]

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.seen) >= count, f"{len(self.seen)} of {count} webhook calls arrived"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _app(engine: Engine, url: str) -> Any:
    settings = ServerSettings(ledger="sqlite://", admin_key=ADMIN, webhooks=[{"url": url, "secret": SECRET}])  # type: ignore[arg-type, list-item]
    return create_app(settings, engine=engine)


def _client(app: Any) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"})


def test_ingest_alerts_are_signed_and_posted_once_each(tmp_path: Path, receiver: Receiver) -> None:
    engine = Engine(str(tmp_path / "hooks.db"))
    limit = engine.set_limit(usd="0.02", per="day", tenant="acme", mode="soft", thresholds=(0.5, 1))
    with _client(_app(engine, receiver.url)) as api:
        for _ in range(3):  # $0.0125 each: 50 % on the first, 100 % on the second, nothing new after
            assert api.post("/api/v1/events", json={"events": [event()]}).json()["accepted"] == 1
        receiver.wait_for(2)
        time.sleep(1.5)  # a third call would have arrived by now
    engine.close()
    assert len(receiver.seen) == 2
    for headers, body in receiver.seen:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-ledger-signature"], expected)
        assert headers["content-type"] == "application/json"
        assert int(headers["x-ledger-timestamp"]) == json.loads(body)["sent_at"]
    first, second = sorted(receiver.bodies(), key=lambda b: b["threshold"])
    assert (first["type"], first["threshold"], first["spent"], first["allowed"]) == (
        "limit.threshold",
        "0.5",
        "0.0125",
        "0.02",
    )
    assert (second["threshold"], second["spent"], second["limit"]["id"]) == ("1", "0.0250", limit.id)
    assert first["id"] != second["id"] and first["subject"] == ""


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(tmp_path: Path) -> None:
    receiver = Receiver(statuses=[500, 503])
    engine = Engine(str(tmp_path / "retry.db"))
    engine.set_limit(usd="0.01", per="day", tenant="acme", thresholds=(1,))
    try:
        with _client(_app(engine, receiver.url)) as api:
            api.post("/api/v1/reservations", json=reservation())  # $0.0125 > $0.01: refused, alert
            receiver.wait_for(3)  # after 1 s and 2 s of backoff
            deadline = time.monotonic() + 10
            while DeliveryStore(engine.ledger.engine).all()[0].status != "delivered":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        bodies = receiver.bodies()
        assert len(bodies) == 3 and len({b["id"] for b in bodies}) == 1  # the same alert, retried
        assert bodies[0]["type"] == "limit.refused" and bodies[0]["subject"] == ""
        (row,) = DeliveryStore(engine.ledger.engine).all()
        assert (row.status, row.attempts) == ("delivered", 3)
    finally:
        receiver.server.shutdown()
        engine.close()


def test_two_servers_on_one_ledger_deliver_each_alert_once(tmp_path: Path, receiver: Receiver) -> None:
    path = str(tmp_path / "shared.db")
    one, two = Engine(path), Engine(path)
    limit = one.set_limit(usd="0.05", per="day", tenant="acme", mode="soft", thresholds=(0.2, 0.4, 0.6, 0.8))
    with _client(_app(one, receiver.url)) as a, _client(_app(two, receiver.url)) as b:
        pool = [
            threading.Thread(target=c.post, args=("/api/v1/events",), kwargs={"json": {"events": [event()]}})
            for c in (a, b, a, b)
        ]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        receiver.wait_for(4)
        # both servers hear of one alert again (a replayed announcement): still delivered once
        alert = next(iter(json.loads(receiver.seen[0][1]).values()))
        del alert
        from llmledger.limit.model import Alert

        again = Alert(
            limit,
            "",
            __import__("decimal").Decimal("0.2"),
            __import__("decimal").Decimal("0.0125"),
            limit.amount,
        )
        a.app.state.ledger.webhooks.on_alert(again)
        b.app.state.ledger.webhooks.on_alert(again)
        time.sleep(2.5)
    one.close()
    two.close()
    thresholds = sorted(body["threshold"] for body in receiver.bodies())
    assert thresholds == ["0.2", "0.4", "0.6", "0.8"]  # $0.05 spent of $0.05: each crossed once


def test_a_slow_receiver_never_blocks_a_request(tmp_path: Path) -> None:
    gate = threading.Event()
    receiver = Receiver(gate=gate)
    engine = Engine(str(tmp_path / "slow.db"))
    engine.set_limit(usd="0.01", per="day", tenant="acme", mode="soft", thresholds=(0.5,))
    try:
        with _client(_app(engine, receiver.url)) as api:
            answer = api.post("/api/v1/events", json={"events": [event()]})
            assert answer.status_code == 200  # answered while the receiver is still holding the POST
            assert receiver.seen == []
            gate.set()
            receiver.wait_for(1)
    finally:
        gate.set()
        receiver.server.shutdown()
        engine.close()


def test_webhook_settings_are_validated() -> None:
    from llmledger.errors import ConfigError

    for bad in (
        {"url": "ftp://x", "secret": SECRET},
        {"url": "http://x", "secret": "short"},
        {"url": "http://x"},
    ):
        with pytest.raises(ConfigError, match="webhooks"):
            ServerSettings.load({"webhooks": [bad]}, env={})
