"""The gateway's operations: per-key rate limits (the server's), key revocation within a bounded
time (at once through the server that mounts it), `/metrics`, and the quarantine of events the
ledger refuses (nothing valid lost because of a bad neighbour)."""

from __future__ import annotations

import gc
import sqlite3
import time
from pathlib import Path

import httpx2
import openai
import pytest
from tests.fakes.upstream import serve_upstream
from tests.gateway_rig import rig
from tests.serving import serve_thread

from llmledger.attribution.context import Attribution
from llmledger.cli.proxy_cmd import with_gateway
from llmledger.engine import Engine
from llmledger.gateway.meter import Metering
from llmledger.gateway.recorder import FLUSH_INTERVAL, Recorder, journal_dir
from llmledger.instrumentation.usage import Usage
from llmledger.server import ServerSettings
from llmledger.server.state import RateLimiter

MESSAGES = [{"role": "user", "content": "Say hello."}]
ADMIN = "llk_0123456789abcdef_" + "a" * 32


def test_a_key_over_its_rate_gets_the_sdks_rate_limit_error_and_nothing_is_sent(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.gateway.limiter = RateLimiter(1.0)  # 1 request per second, bursts of 2
        client = r.openai()
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError, match="rate limit of this llmledger key") as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        response = caught.value.response
        assert response.headers["x-ledger-error"] == "key_rate_limited"
        assert int(response.headers["retry-after"]) >= 1
        assert len(r.upstream.fake.seen) == 2  # the refused call never reached the provider
        assert len(r.events()) == 2


def test_a_key_revoked_elsewhere_stops_within_the_key_cache_time(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.gateway.key_cache_seconds = 0.3
        client = r.openai()
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        key = r.engine.keys.verify(r.key)
        assert key is not None
        other = Engine(f"sqlite:///{tmp_path / 'gateway.db'}")  # another process revokes it
        try:
            assert other.keys.revoke(key.key_id)
        finally:
            other.close()
        time.sleep(0.35)
        with pytest.raises(openai.AuthenticationError, match="invalid llmledger key"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_a_key_revoked_through_the_server_is_refused_by_its_gateway_at_once(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 's.db'}"
    settings = ServerSettings(ledger=ledger, admin_key=ADMIN)
    with serve_upstream() as (upstream, _):
        app = with_gateway(settings, [upstream], None)
        engine = app.engine
        engine.keys.create("admin", name="admin", secret=ADMIN)
        made = engine.keys.create("ingest", name="app")
        with serve_thread(app) as url:
            client = openai.OpenAI(
                base_url=f"{url}/v1",
                api_key="sk-provider-secret-123",
                max_retries=0,
                default_headers={"X-Ledger-Key": made.secret, "X-Ledger-Upstream": f"{upstream}/v1"},
            )
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # cached now
            assert app.gateway.key_cache_seconds >= 5
            revoked = httpx2.delete(
                f"{url}/api/v1/keys/{made.key.key_id}", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            assert revoked.status_code == 204, revoked.text
            with pytest.raises(openai.AuthenticationError, match="invalid llmledger key"):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            # the server's /metrics shows the gateway's
            metrics = httpx2.get(f"{url}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert 'llmledger_gateway_calls_total{endpoint="chat.completions",status="ok"} 1.0' in metrics
    assert 'llmledger_gateway_refusals_total{code="invalid_ledger_key"} 1.0' in metrics


def test_gateway_metrics(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.upstream.statuses = [500]
        client = r.openai()
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
        bad = openai.OpenAI(base_url=f"{r.url}/v1", api_key="sk-x", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        r.events()
        text = httpx2.get(f"{r.url}/metrics").text
    assert 'llmledger_gateway_calls_total{endpoint="chat.completions",status="ok"} 2.0' in text
    assert 'llmledger_gateway_calls_total{endpoint="chat.completions",status="error"} 1.0' in text
    assert 'llmledger_gateway_upstream_errors_total{kind="HTTP 500"} 1.0' in text
    assert 'llmledger_gateway_refusals_total{code="missing_ledger_key"} 1.0' in text
    assert "llmledger_gateway_overhead_seconds_count 3.0" in text
    assert "llmledger_gateway_events_quarantined 0.0" in text


def test_the_recorder_quarantines_the_rows_the_ledger_refuses_and_writes_the_rest(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'q.db'}"
    engine = Engine(ledger)
    try:
        with sqlite3.connect(tmp_path / "q.db") as conn:  # a real refusal of the store for one row
            conn.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON llmledger_events "
                "WHEN NEW.model = 'poison-model' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
            )
        recorder = Recorder(engine, journal_dir(ledger))
        recorder.writer.flush_interval = 3600  # one batch: good rows around the bad one
        who = Attribution(tenant="acme")
        for i in range(41):
            model = "poison-model" if i == 20 else "gpt-4o-mini"
            meter = Metering("openai", "chat.completions", model, who, None, False)
            recorder.record(meter.event(engine.pricer, Usage({"input_tokens": 10 + i, "output_tokens": 1})))
        assert recorder.flush(30)
        assert recorder.quarantined == 1
        assert recorder.journal is not None and recorder.journal.pending == 0
        recorder.close()
        events = engine.events({}, limit=None)
        assert len(events) == 40 and all(e.model == "gpt-4o-mini" for e in events)
        with sqlite3.connect(tmp_path / "q.db") as conn:
            [(reason,)] = conn.execute("SELECT reason FROM llmledger_quarantine").fetchall()
        assert "poisoned row" in reason
    finally:
        engine.close()


def test_the_gateway_freezes_its_heap_once_started_and_again_after_its_first_call(tmp_path: Path) -> None:
    # full collections walked the whole start-up heap with the event loop stopped (bench note:
    # docs/performance.md): the gateway moves it out of the collector's reach
    gc.unfreeze()
    try:
        with rig(tmp_path) as r:
            started = gc.get_freeze_count()
            assert started > 0 and not r.gateway.warm
            r.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert len(r.events()) == 1
            assert r.gateway.warm and gc.get_freeze_count() > started
    finally:
        gc.unfreeze()


def test_recorded_events_reach_the_ledger_within_the_flush_interval_unasked(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'f.db'}"
    engine = Engine(ledger)
    try:
        recorder = Recorder(engine, journal_dir(ledger))
        assert recorder.writer.flush_interval == FLUSH_INTERVAL <= 0.5
        meter = Metering("openai", "chat.completions", "gpt-4o-mini", Attribution(tenant="acme"), None, False)
        recorder.record(meter.event(engine.pricer, Usage({"input_tokens": 10, "output_tokens": 1})))
        deadline = time.monotonic() + FLUSH_INTERVAL + 5.0  # one interval, and room for a busy machine
        while not engine.events({}, limit=None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(engine.events({}, limit=None)) == 1  # no flush() asked
        recorder.close()
    finally:
        engine.close()
