"""Running the server: settings from arguments, `LLMLEDGER_*` and a TOML file; a graceful stop that
finishes the requests in flight; `llmledger demo --serve` (real processes)."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.serving import free_port, wait_ready

from llmledger.engine import Engine
from llmledger.errors import ConfigError
from llmledger.server import ServerSettings

ADMIN = "llk_aa00bb11cc22dd33_ops-admin-secret-0123456789abc"
ROOT = Path(__file__).parent.parent
MAIN = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"


def test_settings_come_from_arguments_then_environment_then_the_file(tmp_path: Path) -> None:
    file = tmp_path / "llmledger.toml"
    file.write_text('[server]\nport = 9001\nrate_limit = 5\nmax_batch = 100\nhost = "0.0.0.0"\n')
    settings = ServerSettings.load(env={}, file=file)
    assert (settings.port, settings.rate_limit, settings.max_batch, settings.host) == (
        9001,
        5,
        100,
        "0.0.0.0",
    )
    env = {"LLMLEDGER_PORT": "9002", "LLMLEDGER_RATE_LIMIT": "7.5"}
    settings = ServerSettings.load(env=env, file=file)
    assert (settings.port, settings.rate_limit, settings.max_batch) == (9002, 7.5, 100)
    settings = ServerSettings.load({"port": 9003, "host": None}, env=env, file=file)
    assert (settings.port, settings.host) == (9003, "0.0.0.0")
    file.write_text("port = 9004\n")  # top-level keys work too
    assert ServerSettings.load(env={}, file=file).port == 9004
    for text, problem in (
        ("[server]\nrate_limit = -1\n", "rate_limit"),
        ("[server]\nport = 'x'\n", "port"),
        ("[server]\ncolour = 'red'\n", "colour"),
        ("[server\n", "cannot read"),
    ):
        file.write_text(text)
        with pytest.raises(ConfigError, match=problem):
            ServerSettings.load(env={}, file=file)
    with pytest.raises(ConfigError, match="cannot read"):
        ServerSettings.load(env={}, file=tmp_path / "missing.toml")


def _event(i: int) -> dict[str, Any]:
    return {
        "event_id": f"0190aaaa-0000-7000-8000-{i:012d}",
        "timestamp": "2026-01-02T03:04:05Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 100 + i % 7,
        "output_tokens": 10,
        "tenant": f"t{i % 5}",
    }


def test_sigterm_finishes_the_requests_in_flight_then_exits(tmp_path: Path) -> None:
    """A real `llmledger serve --config`: SIGTERM while a large batch is being stored; the batch is
    answered and stored whole, then the process exits 0 (and the rate limit came from the file)."""
    db = tmp_path / "s.db"
    port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(f'[server]\nledger = "sqlite:///{db}"\nport = {port}\nrate_limit = 0.5\n')
    env = {**os.environ, "LLMLEDGER_ADMIN_KEY": ADMIN}
    env.pop("LLMLEDGER_DB", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "serve", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=120, proc=proc)
        auth = {"Authorization": f"Bearer {ADMIN}"}
        codes = [httpx2.get(f"{url}/api/v1/spend", headers=auth).status_code for _ in range(3)]
        assert 429 in codes  # one request per 2 s, bursts of 1
        time.sleep(2.5)
        body = gzip.compress(json.dumps({"events": [_event(i) for i in range(10_000)]}).encode())
        answer: list[Any] = []

        def send() -> None:
            headers = {**auth, "Content-Encoding": "gzip", "Content-Type": "application/json"}
            answer.append(httpx2.post(f"{url}/api/v1/events", content=body, headers=headers, timeout=60))

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.3)  # the request is in flight (10,000 events take longer than this to store)
        proc.send_signal(signal.SIGTERM)
        sender.join(60)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert answer and answer[0].status_code == 200, answer
    assert answer[0].json()["accepted"] == 10_000
    engine = Engine(f"sqlite:///{db}")
    try:
        assert engine.ledger.count() == 10_000
    finally:
        engine.close()


def test_demo_serve_prints_its_url_and_an_admin_key_and_serves_the_demo(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "demo", "--serve", "--port", "0", "--calls", "3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(line.startswith("Admin key:") for line in lines):
            line = proc.stdout.readline()
            assert line, f"the demo ended: {''.join(lines)}"
            lines.append(line)
        text = "".join(lines)
        url = re.search(r"Serving the demo ledger at (http://127\.0\.0\.1:\d+)", text)
        key = re.search(r"Admin key: (llk_\S+)", text)
        assert url and key, text
        folder = re.search(r"Ledger: (\S+)/demo\.db", text)
        assert folder and Path(folder.group(1)).exists()
        wait_ready(url.group(1), timeout=120, proc=proc)
        auth = {"Authorization": f"Bearer {key.group(1)}"}
        usage = httpx2.get(f"{url.group(1)}/api/v1/usage", params={"group_by": "tenant"}, headers=auth)
        assert usage.status_code == 200 and usage.json()["rows"], usage.text
        assert sum(r["requests"] for r in usage.json()["rows"]) >= 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not Path(folder.group(1)).exists()  # the temporary ledger is removed at the end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
