"""Run a server app for a test: uvicorn in a thread on a free loopback port (real HTTP), or a real
`llmledger serve` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import uvicorn

__all__ = ["free_port", "serve_process", "serve_thread", "wait_ready"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 120.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx2.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not start in {timeout}s")


@contextmanager
def serve_thread(app: Any, keep_alive: int = 5) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 in a background thread; yields its base URL. `keep_alive`: seconds
    an idle connection is kept (uvicorn's default, 5)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", lifespan="on", timeout_keep_alive=keep_alive
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serve_process(
    ledger: str, admin_key: str, port: int | None = None, **env: str
) -> Iterator[tuple[str, Any]]:
    """Run `llmledger serve` as a real process; yields (base URL, the Popen)."""
    port = port or free_port()
    environ = {**os.environ, "LLMLEDGER_ADMIN_KEY": admin_key, **env}
    environ.pop("PYTEST_CURRENT_TEST", None)
    main = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"
    cmd = [sys.executable, "-c", main, "serve", "--ledger", ledger, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=environ, cwd=Path(__file__).parent.parent, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc=proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
