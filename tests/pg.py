"""A real PostgreSQL server for the test suite, started in a temp directory and stopped at the end.

Debian's `postgresql` package provides the binaries (`make test` installs it when missing). The
server runs as the unprivileged `postgres` user when the tests run as root (PostgreSQL refuses to
run as root), listens only on a Unix socket in its own directory and on a free loopback port, and
trusts local connections. Nothing here mocks a database: every PostgreSQL test talks to this server.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PostgresServer", "find_bindir", "start_server"]


def find_bindir() -> Path | None:
    """The directory holding `initdb`, `pg_ctl` and `postgres`, newest version first; None if absent."""
    for cmd in ("pg_config",):
        exe = shutil.which(cmd)
        if exe:
            out = subprocess.run([exe, "--bindir"], capture_output=True, text=True, check=False).stdout
            path = Path(out.strip())
            if (path / "initdb").exists():
                return path
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for path in reversed(candidates):
        if (Path(path) / "initdb").exists():
            return Path(path)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One running server; `url(db)` gives a SQLAlchemy URL, `create_database()` a fresh database."""

    def __init__(self, bindir: Path, root: Path, port: int, as_user: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.port = port
        self.as_user = as_user

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        done = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        if done.returncode:
            raise RuntimeError(f"createdb failed: {done.stderr}")
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> Iterator[PostgresServer]:
    """Start a throwaway server (a generator for a session-scoped fixture)."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL binaries not found: install Debian's `postgresql` package (make test does it)"
        )
    root = Path(tempfile.mkdtemp(prefix="llmledger-pg-"))
    as_user = "postgres" if os.geteuid() == 0 else None
    if as_user:
        shutil.chown(root, user=as_user)
    server = PostgresServer(bindir, root, _free_port(), as_user)
    init = server._run("initdb", "-D", str(root / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8")
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stderr}")
    options = (
        f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    started = server._run(
        "pg_ctl", "-D", str(root / "data"), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start"
    )
    if started.returncode:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr} {log}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    try:
        yield server
    finally:
        server.stop()
