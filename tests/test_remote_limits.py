"""Spend limits in remote mode: the real server decides through reservations over loopback HTTP.

A strict limit refuses before anything is sent (the fake provider never sees the call), exactly as
embedded mode; the reservation is dropped when the event arrives; only the request's shape is sent
(never the prompt); a slow or dead server is bounded by `limit_timeout` and handled by
`on_ledger_fault` (open: sent and counted; closed: `LimitUndecided`).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import pytest
from tests.fakes import served
from tests.fakes.honest import billed
from tests.hammer import SHORT, hammer, honest_openai, in_processes
from tests.serving import free_port, serve_process, serve_thread

import llmledger
from llmledger.server import ServerSettings, create_app

ADMIN = "llk_aa00bb11cc22dd33_rlimit-admin-secret-012345678"
ROOT = Path(__file__).parent.parent


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LLMLEDGER_SERVER", raising=False)
    monkeypatch.delenv("LLMLEDGER_API_KEY", raising=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    app = create_app(ServerSettings(ledger=f"sqlite:///{tmp_path / 'server.db'}", admin_key=ADMIN))  # type: ignore[arg-type]
    with serve_thread(app) as url:
        yield url


def _set_limit(url: str, **definition: Any) -> dict[str, Any]:
    answer = httpx2.post(
        f"{url}/api/v1/limits", json=definition, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _served(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_strict_limit_refuses_before_the_call_is_sent(server: str, tmp_path: Path) -> None:
    _set_limit(server, usd="0.0005", per="month", scope={"tenant": "acme"})
    llmledger.init(server=server, api_key=ADMIN, flush_interval=0.02)
    log = tmp_path / "served.txt"
    client = served.client(log)
    sent, refusals = 0, []
    with llmledger.attribute(tenant="acme"):
        for _ in range(40):
            try:
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=800
                )  # worst case ~$0.00048; each served call costs $0.0000048: room for 4
                sent += 1
            except llmledger.LimitExceeded as exc:
                refusals.append(exc)
            llmledger.flush()
    refused = len(refusals)
    assert sent >= 1 and refused >= 1 and _served(log) == sent  # a refused call never reached the provider
    assert all(e.limit_id.startswith("lim_") and e.metric == "usd" and e.retry_after for e in refusals)
    assert all("would be exceeded" in str(e) for e in refusals)
    with llmledger.attribute(tenant="globex"):  # another tenant: no limit applies
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    llmledger.flush()
    stats = llmledger.stats()
    assert stats.calls_refused == refused and stats.calls_unchecked == 0
    spent = llmledger.spend(tenant="acme")
    assert spent <= llmledger.Client(server, ADMIN).spend(tenant="acme") and spent <= 0.0005
    with sqlite3.connect(tmp_path / "server.db") as conn:  # every reservation dropped with its event
        assert conn.execute("SELECT count(*) FROM llmledger_reservations").fetchone()[0] == 0


class _Slow(BaseHTTPRequestHandler):
    """A server that knows one limit and answers reservations after `delay` seconds; records bodies."""

    protocol_version = "HTTP/1.1"
    delay: ClassVar[float] = 0.0
    bodies: ClassVar[list[bytes]] = []

    def do_GET(self) -> None:  # an ingest key may not list the limits: every call reserves
        self._answer(403, {"error": "this key lacks the read scope"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.bodies.append(body)
        if self.path.startswith("/api/v1/reservations"):
            time.sleep(self.delay)
            chosen = json.loads(body).get("reservation_id")
            self._answer(201, {"reservation_id": chosen, "model": None, "expires_at": None})
        else:
            self._answer(200, {"accepted": 1, "duplicates": 0, "rejected": []})

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow() -> Iterator[str]:
    _Slow.bodies.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()


def test_only_the_shape_leaves_the_host_and_the_event_names_its_reservation(
    slow: str, tmp_path: Path
) -> None:
    _Slow.delay = 0.0
    llmledger.init(server=slow, api_key="llk_x_y", flush_interval=0.02, journal=False)
    client = served.client(tmp_path / "served.txt")
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "my secret prompt"}], max_tokens=77
    )
    assert llmledger.flush(timeout=10)
    reserve, *rest = (json.loads(b) for b in _Slow.bodies)
    assert reserve["shape"]["output_tokens"] == 77 and reserve["shape"]["input_tokens"] > 0
    assert reserve["model"] == "gpt-4o-mini" and reserve["provider"] == "openai"
    assert all(b"secret" not in b for b in _Slow.bodies)  # no prompt text in any request
    events = [e for body in rest for e in body.get("events", [])]
    assert [e["reservation_id"] for e in events] == [reserve["reservation_id"]]


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_slow_server_is_bounded_by_limit_timeout_then_the_policy_applies(
    slow: str, tmp_path: Path, policy: str
) -> None:
    _Slow.delay = 2.0
    llmledger.init(
        server=slow, api_key="llk_x_y", flush_interval=0.02, limit_timeout=0.2, on_ledger_fault=policy
    )
    log = tmp_path / "served.txt"
    client = served.client(log)
    t0 = time.monotonic()
    if policy == "open":
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert _served(log) == 1
    else:
        with pytest.raises(llmledger.LimitUndecided):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert _served(log) == 0
    assert time.monotonic() - t0 < 1.5  # not the server's 2 s
    stats = llmledger.stats()
    assert stats.calls_unchecked == 1 and "did not answer" in (stats.last_limit_fault or "")


def test_a_dead_server_costs_no_wait_per_call_and_follows_the_policy(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    llmledger.init(server=url, api_key="llk_x_y", flush_interval=0.02, on_ledger_fault="closed")
    client = served.client(tmp_path / "served.txt")
    for _ in range(3):
        with pytest.raises(llmledger.LimitUndecided):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert _served(tmp_path / "served.txt") == 0 and llmledger.stats().calls_refused == 3


def _held(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM llmledger_reservations").fetchone()[0])


def test_the_limits_api_goes_to_the_server(server: str, tmp_path: Path) -> None:
    llmledger.init(server=server, api_key=ADMIN, flush_interval=0.02)
    limit = llmledger.set_limit(usd=0.0005, per="month", tenant="acme")
    credit = llmledger.set_limit(usd=1, per="lifetime", user="*")
    assert {x.id for x in llmledger.limits()} == {limit.id, credit.id}
    listed = httpx2.get(f"{server}/api/v1/limits", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert {x["id"] for x in listed["limits"]} == {limit.id, credit.id}  # stored on the server
    with pytest.raises(llmledger.LimitDefinitionError, match="per"):
        llmledger.set_limit(usd=1, per="fortnight")
    assert llmledger.top_up(credit.id, "2.5", user="u1") == Decimal("2.5")
    status = llmledger.remaining(tenant="acme", user="u1")
    assert {s.limit.id for s in status} == {limit.id, credit.id}
    mine = next(s for s in status if s.limit.id == credit.id)
    assert (mine.subject, mine.allowed, mine.spent) == ("user=u1", Decimal("3.5"), Decimal(0))
    assert [
        s.limit.id for s in llmledger.check(model="gpt-4o-mini", max_output_tokens=10, tenant="acme")
    ] == [limit.id]
    with pytest.raises(llmledger.LimitExceeded, match=limit.id):
        llmledger.check(model="gpt-4o", max_output_tokens=10_000, tenant="acme")
    with llmledger.guard(model="gpt-4o-mini", max_output_tokens=100, tenant="acme") as rid:
        assert rid is not None and _held(tmp_path / "server.db") >= 1
    assert _held(tmp_path / "server.db") == 0  # released when the block ended without track()
    with (
        pytest.raises(llmledger.LimitExceeded),
        llmledger.guard(model="gpt-4o", max_output_tokens=10_000, tenant="acme"),
    ):
        raise AssertionError("not reached")
    assert llmledger.delete_limit(credit.id) is True and llmledger.delete_limit(credit.id) is False
    assert [x.id for x in llmledger.limits()] == [limit.id]


def test_a_kill_the_instant_a_server_reservation_commits_leaves_none_held(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_limit(server, usd="1000", per="month")
    monkeypatch.setenv("LLMLEDGER_API_KEY", ADMIN)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_CURRENT_TEST", None)
    log = tmp_path / "served.txt"
    for mode in ("die-reserved", "die-guarded"):
        args = [sys.executable, "-m", "tests.fakes.served", mode, server, str(log), "1"]
        proc = subprocess.run(args, cwd=ROOT, env=env, timeout=120, capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        # it died holding its reservation (the next child may have released the first one's already:
        # replaying a dead process's journal is what every process does)
        assert _held(tmp_path / "server.db") >= 1 and _served(log) == 0
    llmledger.init(server=server, api_key=ADMIN, flush_interval=0.02)  # replays the dead journals
    deadline = time.monotonic() + 60
    while _held(tmp_path / "server.db") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _held(tmp_path / "server.db") == 0


def _hammer(url: str, log: str, seed: int, threads: int) -> None:
    # A call the server cannot decide in time is refused ("closed"); "open" would send it unchecked.
    llmledger.init(
        server=url, api_key=ADMIN, flush_interval=0.01, limit_timeout=5.0, on_ledger_fault="closed"
    )
    client = honest_openai(log, seed, out=lambda cap: cap)
    hammer(
        lambda: client.chat.completions.create(
            model="gpt-4o", messages=SHORT, max_tokens=500, ledger_tenant="acme"
        ),  # type: ignore[call-overload]
        threads,
        refusals=2 * threads,
    )


@pytest.mark.scale
def test_processes_sharing_one_served_strict_limit_never_overshoot(tmp_path: Path) -> None:
    db, log = tmp_path / "served.db", tmp_path / "billed.log"
    with serve_process(f"sqlite:///{db}", ADMIN) as (url, _):
        limit = _set_limit(url, usd="0.2", per="day", scope={"tenant": "acme"})
        in_processes(_hammer, [(url, str(log), i, 4) for i in range(3)])
        client = llmledger.Client(url, ADMIN)
        spent = client.spend(tenant="acme")
        status = httpx2.get(
            f"{url}/api/v1/limits/status",
            params={"limit_id": limit["id"]},
            headers={"Authorization": f"Bearer {ADMIN}"},
        ).json()["statuses"]
    served_calls = len(log.read_text().splitlines())
    worst = Decimal("0.005") + Decimal(40) * Decimal("2.5") / 1_000_000  # 500 out at $10/M + the prompt
    assert served_calls >= int(Decimal("0.2") / worst) - 3  # the limit was used, not refused early
    assert billed(log, "gpt-4o") <= Decimal("0.2")  # what the provider billed: never over
    assert spent == billed(log, "gpt-4o")  # every served call is in the server's ledger, once
    assert Decimal(status[0]["reserved"]) == 0 and _held(db) == 0


def test_a_refused_key_is_reported_as_such_on_every_call_not_as_an_unreachable_server(
    server: str, tmp_path: Path
) -> None:
    # Regression (newcomer report item 31): the second call within the 1 s back-off after the server
    # refused the key said "ServerUnavailable", sending the user to look for a network fault.
    llmledger.init(
        server=server, api_key="llk_0000000000000000_not-a-key-of-this-server-0000", flush_interval=0.02
    )
    client = served.client(tmp_path / "served.txt")
    faults = []
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        faults.append(llmledger.stats().last_limit_fault or "")
    assert len(faults) == 3 and all(f.startswith("AuthenticationError") for f in faults), faults
    assert _served(tmp_path / "served.txt") == 3  # on_ledger_fault="open": sent, counted
    assert llmledger.stats().calls_unchecked == 3


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_connection_the_server_closed_while_idle_is_replaced_not_taken_for_a_dead_server(
    tmp_path: Path, policy: str
) -> None:
    # Regression (newcomer report, 2026-12-02, item 1): the server closes a kept-alive connection
    # after its idle timeout (uvicorn: 5 s); the next reservation was written to the dead socket,
    # failed with BrokenPipe in its single attempt, and the call was sent unchecked (or refused by
    # LimitUndecided under "closed") on every call after an idle pause: a hard limit bypassed.
    app = create_app(ServerSettings(ledger=f"sqlite:///{tmp_path / 'server.db'}", admin_key=ADMIN))  # type: ignore[arg-type]
    with serve_thread(app, keep_alive=1) as url:
        _set_limit(url, usd="0.00004", per="day", scope={"tenant": "acme"})
        llmledger.init(server=url, api_key=ADMIN, flush_interval=0.02, on_ledger_fault=policy)
        log = tmp_path / "served.txt"
        client = served.client(log)
        outcomes = []
        with llmledger.attribute(tenant="acme"):
            while "refused" not in outcomes and len(outcomes) < 12:  # ~$0.0000048 a call: 6-8 fit
                time.sleep(1.6)  # past the server's keep-alive: it has closed our connection
                try:
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20
                    )
                    outcomes.append("sent")
                except llmledger.LimitExceeded:
                    outcomes.append("refused")
                llmledger.flush()
        stats = llmledger.stats()
        spent = llmledger.spend(tenant="acme")
    assert stats.calls_unchecked == 0, stats.last_limit_fault
    assert "sent" in outcomes and outcomes[-1] == "refused", outcomes
    assert spent <= Decimal("0.00004")
    assert _served(log) == outcomes.count("sent")
