"""A gateway killed at any instant loses none of the calls it answered: each event is journaled
before the request ends, and the next gateway on the ledger writes what the dead one had not."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from tests.fakes.upstream import Upstream, serve_upstream
from tests.serving import free_port, wait_ready

from llmledger.attribution.context import Attribution
from llmledger.engine import Engine
from llmledger.gateway.meter import Metering
from llmledger.gateway.recorder import Recorder, decode, encode, journal_dir
from llmledger.instrumentation.usage import Usage
from llmledger.pricing.pricer import Pricer

CHILD = """
import os, signal, sys
from llmledger.attribution.context import Attribution
from llmledger.engine import Engine
from llmledger.gateway.meter import Metering
from llmledger.gateway.recorder import Recorder, journal_dir
from llmledger.instrumentation.usage import Usage
ledger = sys.argv[1]
engine = Engine(ledger)
recorder = Recorder(engine, journal_dir(ledger))
recorder.writer.flush_interval = 3600  # nothing reaches the ledger before the kill
for i in range(40):
    m = Metering("openai", "chat.completions", "gpt-4o-mini", Attribution(tenant=f"t{i % 3}"), None, False)
    recorder.record(m.event(engine.pricer, Usage({"input_tokens": 100 + i, "output_tokens": 7})))
print("recorded", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_journal_line_round_trips_an_event() -> None:
    m = Metering(
        "openai", "chat.completions", "gpt-4o-mini", Attribution(tenant="acme", tags={"k": "v"}), None, True
    )
    event = m.event(Pricer(), Usage({"input_tokens": 12, "output_tokens": 3}, model="gpt-4o-mini-2024-07-18"))
    back = decode(encode(event))
    assert back == event
    assert isinstance(back.cost_usd, Decimal) and back.timestamp.tzinfo is not None
    assert back.timestamp <= datetime.now(timezone.utc)


def test_killed_gateway_loses_nothing(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'g.db'}"
    env = {**os.environ}
    env.pop("PYTEST_CURRENT_TEST", None)
    done = subprocess.run([sys.executable, "-c", CHILD, ledger], env=env, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL and b"recorded" in done.stdout, done.stderr
    engine = Engine(ledger)
    try:
        assert engine.events({}, limit=None) == []  # the dead gateway wrote nothing
        recorder = Recorder(engine, journal_dir(ledger))  # the next gateway on this ledger
        recorder.close()
        events = engine.events({}, limit=None)
        Recorder(engine, journal_dir(ledger)).close()  # replayed once only
        again = engine.events({}, limit=None)
    finally:
        engine.close()
    assert len(events) == len(again) == 40
    assert sorted(e.input_tokens for e in events) == list(range(100, 140))
    assert all(e.cost_usd is not None for e in events)


CHILD_RESERVING = """
import asyncio, os, signal, sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from llmledger.attribution.context import Attribution
from llmledger.engine import Engine
from llmledger.gateway import enforce
from llmledger.gateway.meter import Metering
from llmledger.gateway.recorder import Recorder, journal_dir
from llmledger.instrumentation.usage import Usage
ledger, when = sys.argv[1], sys.argv[2]
engine = Engine(ledger)
engine.set_limit(usd="100", per="month", tenant="acme")
recorder = Recorder(engine, journal_dir(ledger))
recorder.writer.flush_interval = 3600  # nothing reaches the ledger before the kill
gw = SimpleNamespace(engine=engine, recorder=recorder, pool=ThreadPoolExecutor(2))
original = Engine.reserve

def reserve_then_die(self, *args, **kwargs):
    got = original(self, *args, **kwargs)
    if when == "reserved":  # the instant the reservation is committed
        os.kill(os.getpid(), signal.SIGKILL)
    return got

Engine.reserve = reserve_then_die
body = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
meter = Metering("openai", "chat.completions", "gpt-4o-mini", Attribution(tenant="acme"), body, False)
asyncio.run(enforce.admit(gw, meter, body))
assert meter.reservation is not None
event = meter.event(engine.pricer, Usage({"input_tokens": 9, "output_tokens": 5}))
recorder.record(event, meter.reservation, meter.held)  # journaled, not yet written
print("recorded", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["reserved", "recorded"])
def test_killed_gateway_leaves_no_reservation_held(tmp_path: Path, when: str) -> None:
    # Regression: a gateway killed between its reservation's commit and the event's write held the
    # reservation for reservation_ttl (900 s), refusing the tenant's calls against spend never made.
    ledger = f"sqlite:///{tmp_path / 'g.db'}"
    env = {**os.environ}
    env.pop("PYTEST_CURRENT_TEST", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD_RESERVING, ledger, when], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    with sqlite3.connect(tmp_path / "g.db") as conn:
        assert conn.execute("SELECT count(*) FROM llmledger_reservations").fetchone()[0] == 1
    engine = Engine(ledger)
    try:
        Recorder(engine, journal_dir(ledger)).close()  # the next gateway on this ledger
        events = engine.events({}, limit=None)
    finally:
        engine.close()
    with sqlite3.connect(tmp_path / "g.db") as conn:
        assert conn.execute("SELECT count(*) FROM llmledger_reservations").fetchone()[0] == 0
    assert len(events) == 1
    if when == "reserved":  # the call had started: recorded as interrupted, usage unknown
        (event,) = events
        assert (event.status, event.error_type, event.estimated) == ("error", "ProcessExited", True)
        assert event.cost_usd is None and event.tenant == "acme"


ADMIN = "llk_0123456789abcdef_" + "k" * 32
MESSAGES = [{"role": "user", "content": "Say hello."}]


def _proxy(ledger: str, port: int, upstream: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LLMLEDGER_ADMIN_KEY": ADMIN}
    env.pop("PYTEST_CURRENT_TEST", None)
    main = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"
    cmd = [sys.executable, "-c", main, "proxy", "--ledger", ledger, "--port", str(port)]
    return subprocess.Popen([*cmd, "--allow-upstream", upstream], env=env, stderr=subprocess.PIPE)


@pytest.mark.parametrize("limited", [False, True])
def test_gateway_killed_mid_stream_records_the_call_interrupted(tmp_path: Path, limited: bool) -> None:
    # Regression: a call's event was journaled only once its answer was sent, so a gateway killed
    # mid-stream lost the call (the SDK journals a start record; the gateway does too now).
    ledger = f"sqlite:///{tmp_path / 'k.db'}"
    if limited:
        engine = Engine(ledger)
        engine.set_limit(usd="100", per="month", tenant="acme")
        engine.close()
    with serve_upstream(Upstream(delay=0.05)) as (upstream, _):
        port = free_port()
        proc = _proxy(ledger, port, upstream)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc=proc)
            client = openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key="sk-provider-secret-123",
                max_retries=0,
                default_headers={
                    "X-Ledger-Key": ADMIN,
                    "X-Ledger-Upstream": f"{upstream}/v1",
                    "X-Ledger-Tenant": "acme",
                },
            )
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            next(iter(stream))  # the first chunk is relayed: the call is in flight
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            with pytest.raises(openai.APIError):
                for _ in stream:
                    pass
        finally:
            proc.kill()
            proc.communicate(timeout=30)
    with sqlite3.connect(tmp_path / "k.db") as conn:
        assert conn.execute("SELECT count(*) FROM llmledger_events").fetchone()[0] == 0
        held = conn.execute("SELECT count(*) FROM llmledger_reservations").fetchone()[0]
        assert held == (1 if limited else 0)
    engine = Engine(ledger)
    try:
        Recorder(engine, journal_dir(ledger)).close()  # the next gateway on this ledger
        Recorder(engine, journal_dir(ledger)).close()  # and the one after: nothing twice
        events = engine.events({}, limit=None)
    finally:
        engine.close()
    [event] = events
    assert (event.status, event.error_type, event.estimated, event.complete) == (
        "error",
        "ProcessExited",
        True,
        False,
    )
    assert (event.provider, event.requested_model, event.tenant, event.stream) == (
        "openai",
        "gpt-4o-mini",
        "acme",
        True,
    )
    assert event.cost_usd is None and event.unpriced_reason and "in flight" in event.unpriced_reason
    with sqlite3.connect(tmp_path / "k.db") as conn:
        assert conn.execute("SELECT count(*) FROM llmledger_reservations").fetchone()[0] == 0
