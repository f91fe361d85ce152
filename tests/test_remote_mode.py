"""Remote mode: `init(server=..., api_key=...)` meters into a real llmledger server over loopback HTTP.

The same journal records as embedded mode, delivered by the writer to `POST /api/v1/events`: events
wait in the journal while the server is down and arrive exactly once when it is back; queries read
the server; no local ledger file is created; bad settings are typed errors at `init()`.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tests.fakes import served
from tests.serving import free_port, serve_process, serve_thread

import llmledger
from llmledger.server import ServerSettings, create_app
from llmledger.storage.queries import UsageRow

ADMIN = "llk_aa00bb11cc22dd33_remote-admin-secret-0123456789"
ROOT = Path(__file__).parent.parent


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LLMLEDGER_SERVER", raising=False)
    monkeypatch.delenv("LLMLEDGER_API_KEY", raising=False)
    monkeypatch.delenv("LLMLEDGER_JOURNAL_DIR", raising=False)


def _app(db: Path) -> Any:
    return create_app(ServerSettings(ledger=f"sqlite:///{db}", admin_key=ADMIN))  # type: ignore[arg-type]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with serve_thread(_app(tmp_path / "server.db")) as url:
        yield url


def _key(url: str, scope: str, tenant: str | None = None) -> str:
    import httpx2

    answer = httpx2.post(
        f"{url}/api/v1/keys",
        json={"scope": scope, "tenant": tenant},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    return str(answer.json()["key"])


def _journal_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("*.jnl"))


def test_instrumented_calls_and_track_arrive_and_queries_read_the_server(server: str, tmp_path: Path) -> None:
    llmledger.init(server=server, api_key=_key(server, "admin"), flush_interval=0.02)
    client = served.client(tmp_path / "served.txt")
    with llmledger.attribute(tenant="acme", tags={"plan": "pro"}):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "secret prompt"}]
        )
        tracked = llmledger.track(
            provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=100
        )
    llmledger.track(provider="anthropic", model="claude-3-5-haiku-20241022", input_tokens=10, tenant="globex")
    assert tracked.cost_usd == Decimal("0.00021")  # priced at once, as in embedded mode

    events = llmledger.events(limit=None)
    assert len(events) == 3 and tracked in events
    call = next(e for e in events if e.request_id)
    assert (call.tenant, call.input_tokens, call.output_tokens, dict(call.tags)) == (
        "acme",
        12,
        5,
        {"plan": "pro"},
    )
    assert [e.event_id for e in llmledger.events(tenant="acme", tags={"plan": "pro"})] == [
        e.event_id for e in events if e.tenant == "acme"
    ]
    rows = llmledger.usage("tenant")
    assert all(isinstance(r, UsageRow) for r in rows)
    assert {r.tenant: r.requests for r in rows} == {"acme": 2, "globex": 1}
    total = sum((e.cost_usd or Decimal(0) for e in events), Decimal(0))
    assert llmledger.spend() == total and llmledger.spend(tenant="acme", since="1d") == sum(
        (e.cost_usd or Decimal(0) for e in events if e.tenant == "acme"), Decimal(0)
    )
    with pytest.raises(llmledger.InvalidQueryError, match="unknown filter"):
        llmledger.spend(colour="red")
    with pytest.raises(llmledger.InvalidQueryError, match="cannot group by"):
        llmledger.usage("colour")
    stats = llmledger.stats()
    assert (stats.events_recorded, stats.events_pending, stats.write_errors) == (3, 0, 0)
    # No local ledger: no database file anywhere, only the journal (acknowledged, so empty).
    assert not list(tmp_path.rglob("*.db")) or [p.name for p in tmp_path.rglob("*.db")] == ["server.db"]
    assert all(b"secret prompt" not in p.read_bytes() for p in _journal_files(tmp_path))
    with pytest.raises(llmledger.ConfigError, match="remote mode"):
        llmledger.delete_events(before="1d")


def test_the_environment_selects_remote_mode(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMLEDGER_SERVER", server)
    monkeypatch.setenv("LLMLEDGER_API_KEY", ADMIN)
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=7)  # no init(): the default runtime
    assert [e.input_tokens for e in llmledger.events()] == [7]
    assert not (tmp_path / "default.db").exists()


def test_bad_settings_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(llmledger.ConfigError, match="http"):
        llmledger.init(server="ftp://example.com", api_key="k")
    with pytest.raises(llmledger.ConfigError, match="http"):
        llmledger.init(server="localhost:8787", api_key="k")
    with pytest.raises(llmledger.ConfigError, match="API key"):
        llmledger.init(server="http://127.0.0.1:8787")
    with pytest.raises(llmledger.ConfigError, match="not both"):
        llmledger.init(server="http://127.0.0.1:8787", api_key="k", ledger="x.db")
    with pytest.raises(llmledger.ConfigError, match="api_key"):
        llmledger.init(api_key="k")
    with pytest.raises(llmledger.ConfigError, match="server must be"):
        llmledger.init(server=8787, api_key="k")  # type: ignore[arg-type]
    monkeypatch.setenv("LLMLEDGER_SERVER", "http://127.0.0.1:1")
    runtime = llmledger.init(ledger="explicit.db")  # an explicit ledger wins over the environment
    assert runtime.remote is None


def test_a_bad_key_never_breaks_the_caller_and_queries_say_why(server: str) -> None:
    llmledger.init(server=server, api_key="llk_0000000000000000_wrong", flush_interval=0.02)
    event = llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=3)
    assert event.input_tokens == 3
    with pytest.raises(llmledger.AuthenticationError):
        llmledger.spend(flush=False)
    assert not llmledger.flush(timeout=0.5)
    stats = llmledger.stats()
    assert (
        stats.write_errors >= 1
        and stats.events_pending == 1
        and "invalid API key" in (stats.last_write_error or "")
    )


def test_a_wrong_key_does_not_hold_up_shutdown(server: str, tmp_path: Path) -> None:
    """Newcomer report item 31: with a key the server refuses, `shutdown()` waited out its whole
    10 s timeout (a 401 will not heal while the process exits); the journal keeps the event."""
    llmledger.init(server=server, api_key="llk_0000000000000000_wrong-key-for-this-test")
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=3)
    started = time.monotonic()
    assert llmledger.shutdown() is False  # not delivered
    assert time.monotonic() - started < 5.0
    assert _journal_files(tmp_path)  # kept for a later process with the same key


def test_events_wait_in_the_journal_while_the_server_is_down_then_arrive_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    llmledger.init(server=url, api_key=ADMIN, flush_interval=0.02)
    client = served.client(tmp_path / "served.txt")
    ids = [llmledger.track(provider="openai", model="gpt-4o", input_tokens=i + 1).event_id for i in range(30)]
    served.calls(tmp_path / "served.txt", 20, c=client)
    # A delivery attempt retries with jittered backoff (up to ~0.6 s) before the writer counts it
    # failed: wait for that, not for a fixed time.
    deadline = time.monotonic() + 10
    while llmledger.stats().write_errors < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = llmledger.stats()
    assert stats.events_pending == 50 and stats.write_errors >= 1
    assert _journal_files(tmp_path)  # on disk, not only in memory
    app = _app(tmp_path / "server.db")
    import uvicorn

    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    try:
        assert llmledger.flush(timeout=30)
        events = llmledger.events(limit=None)
        assert len(events) == 50 and len({e.event_id for e in events}) == 50
        assert set(ids) <= {e.event_id for e in events}
        assert llmledger.stats().events_pending == 0
    finally:
        llmledger.shutdown()
        uv.should_exit = True
        thread.join(10)
    assert not _journal_files(tmp_path)  # everything acknowledged


def test_items_the_server_refuses_are_counted_and_the_rest_stored(server: str) -> None:
    bound = _key(server, "ingest", tenant="acme")
    llmledger.init(server=server, api_key=bound, flush_interval=0.02)
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1)  # the key's tenant filled in
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=2, tenant="globex")  # refused
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=3, tenant="acme")
    assert llmledger.flush(timeout=10)
    assert llmledger.stats().events_quarantined == 1
    admin = llmledger.Client(server, ADMIN)
    assert sorted((e.tenant, e.input_tokens) for e in admin.events()) == [("acme", 1), ("acme", 3)]


class _Stub(BaseHTTPRequestHandler):
    """Answers the first ingest with 429 + Retry-After: 1, then stores; records what it saw."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[float, str, str | None, int]]] = []
    stored: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(
            (
                time.monotonic(),
                self.headers.get("Content-Encoding"),
                self.headers.get("Authorization"),
                self.client_address[1],
            )
        )
        if len(self.seen) == 1:
            self._answer(429, {"error": "slow down"}, {"Retry-After": "1"})
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        items = json.loads(body)["events"]
        self.stored.extend(i["event_id"] for i in items)
        self._answer(200, {"accepted": len(items), "duplicates": 0, "rejected": []})

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in {
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            **(headers or {}),
        }.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_delivery_gzips_keeps_alive_and_honours_retry_after() -> None:
    _Stub.seen.clear()
    _Stub.stored.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        llmledger.init(server=f"http://127.0.0.1:{httpd.server_port}", api_key="llk_x_y", flush_interval=0.02)
        ids = [llmledger.track(provider="openai", model="gpt-4o", input_tokens=1).event_id for _ in range(20)]
        assert llmledger.flush(timeout=20)
        ids += [
            llmledger.track(provider="openai", model="gpt-4o", input_tokens=1).event_id for _ in range(20)
        ]
        assert llmledger.flush(timeout=20)
    finally:
        llmledger.shutdown()
        httpd.shutdown()
    assert sorted(_Stub.stored) == sorted(ids)  # exactly once each
    (t0, *_), (t1, encoding, auth, port1), *rest = _Stub.seen
    assert t1 - t0 >= 0.95  # waited as Retry-After said
    assert encoding == "gzip" and auth == "Bearer llk_x_y"
    assert rest and all(port == port1 for *_, port in rest)  # the same kept-alive connection


def test_a_forked_child_delivers_its_own_events(server: str) -> None:
    llmledger.init(server=server, api_key=ADMIN, flush_interval=0.02)
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, tenant="parent")
    assert llmledger.flush(timeout=10)
    pid = os.fork()
    if pid == 0:  # the child: its own connection and writer, its own journal files
        code = 1
        try:
            for _ in range(10):
                llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, tenant="child")
            code = 0 if llmledger.flush(timeout=20) else 2
        finally:
            os._exit(code)
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=1, tenant="parent")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rows = {r.tenant: r.requests for r in llmledger.usage("tenant")}
    assert rows == {"parent": 2, "child": 10}


def _app_process(url: str, served_file: Path, n: int, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LLMLEDGER_API_KEY": ADMIN, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.served", "loop", url, str(served_file), str(n)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_lines(path: Path, n: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, "the app exited early"
        time.sleep(0.01)
    raise TimeoutError(f"{path} did not reach {n} lines")


def _stored(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM llmledger_events").fetchone()[0])


def test_server_and_app_killed_while_sending_every_event_arrives_once(tmp_path: Path) -> None:
    """Real processes: an app sends to a real `llmledger serve`; SIGKILL the server mid-stream (the
    app goes on, its events wait in the journal), restart it (the live app delivers its backlog),
    then SIGKILL the app with events still journaled; the next process delivers the rest. Every
    served call is in the ledger exactly once."""
    port = free_port()
    db = tmp_path / "server.db"
    served_file = tmp_path / "served.txt"
    with serve_process(f"sqlite:///{db}", ADMIN, port=port) as (url, proc):
        app = _app_process(url, served_file, 100_000, tmp_path)
        assert app.stdout is not None and app.stdout.readline().strip() == "ready"
        _wait_lines(served_file, 150, app)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        down = len(served_file.read_text().splitlines())
        _wait_lines(served_file, down + 300, app)  # the app keeps working while the server is down
    assert _journal_files(tmp_path)
    with serve_process(f"sqlite:///{db}", ADMIN, port=port):
        backlog = len(served_file.read_text().splitlines())
        deadline = time.monotonic() + 60
        while _stored(db) < backlog and time.monotonic() < deadline:
            assert app.poll() is None
            time.sleep(0.05)
        assert _stored(db) >= backlog  # delivered by the live app once the server is back
        _wait_lines(served_file, backlog + 100, app)
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        llmledger.init(server=url, api_key=ADMIN, flush_interval=0.02)  # the next process of the app
        while llmledger.stats().events_replayed == 0 and time.monotonic() < deadline + 60:
            time.sleep(0.05)
        llmledger.shutdown()
        result = served.compare(db, served_file)
    assert result.served >= backlog + 100
    assert (result.lost, result.duplicates, result.phantoms) == (0, 0, 0), result
    assert result.interrupted <= 1
    assert not _journal_files(tmp_path)
