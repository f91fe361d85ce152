"""Reservation round trip over loopback HTTP (target: p50 <= 1 ms), side by side with its floor —
the same decision made in-process by `Engine.reserve` / `Engine.release` (no HTTP, no JSON).

A real `llmledger serve` process (uvicorn, one worker) on a real SQLite file with one strict USD
limit that every call matches and none exhausts; one client on a keep-alive connection
(`http.client`, stdlib: no client library in the figure) sends `POST /api/v1/reservations` with a
shape, then `DELETE /api/v1/reservations/{id}`; each request is timed on its own.

Besides the wall-clock quantiles it prints the server process's CPU time per round trip (from
/proc/<pid>/stat): on a machine shared with other work, the figure that does not count waiting.

    python bench/bench_reservations.py [--n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmledger.engine import Engine
from llmledger.limit.shape import Shape

ADMIN = "llk_0011223344556677_bench-admin-secret-0123456789"
WHO = {"tenant": "acme", "user": "u1", "feature": "chat"}
SHAPE = Shape(input_tokens=800, output_tokens=500)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantiles(samples: list[float]) -> tuple[float, float, float]:
    """(p50, p99, spread: the interquartile range) in microseconds."""
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100)
    return q[49] * 1e6, q[98] * 1e6, (q[74] - q[24]) * 1e6


def in_process(path: str, n: int) -> tuple[list[float], list[float]]:
    engine = Engine(path)
    reserve: list[float] = []
    release: list[float] = []
    for _ in range(n // 10):  # warm up (tokenizer-free shape; caches, connections)
        engine.release(engine.reserve(WHO, provider="openai", model="gpt-4o", shape=SHAPE).id or "")
    for _ in range(n):
        t0 = time.perf_counter()
        got = engine.reserve(WHO, provider="openai", model="gpt-4o", shape=SHAPE)
        t1 = time.perf_counter()
        engine.release(got.id or "")
        t2 = time.perf_counter()
        reserve.append(t1 - t0)
        release.append(t2 - t1)
    engine.close()
    return reserve, release


def over_http(port: int, n: int) -> tuple[list[float], list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    body = json.dumps({"provider": "openai", "model": "gpt-4o", "attribution": WHO, "shape": SHAPE.to_wire()})
    reserve: list[float] = []
    release: list[float] = []
    for i in range(n + n // 10):
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/reservations", body, headers)
        answer = conn.getresponse()
        rid = json.loads(answer.read())["reservation_id"]
        t1 = time.perf_counter()
        assert answer.status == 201 and rid, answer.status
        conn.request("DELETE", f"/api/v1/reservations/{rid}", headers=headers)
        gone = conn.getresponse()
        gone.read()
        t2 = time.perf_counter()
        assert gone.status == 204
        if i >= n // 10:  # the first tenth warms up
            reserve.append(t1 - t0)
            release.append(t2 - t1)
    conn.close()
    return reserve, release


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        setup = Engine(path)
        setup.set_limit(usd=1_000_000, per="month", tenant="acme")
        setup.close()
        port = free_port()
        env = {**os.environ, "LLMLEDGER_ADMIN_KEY": ADMIN, "LLMLEDGER_RATE_LIMIT": "1000000"}
        main = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"
        cmd = [sys.executable, "-c", main, "serve", "--ledger", f"sqlite:///{path}", "--port", str(port)]
        server = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.1)
            print(f"{'':28} {'p50 µs':>9} {'p99 µs':>9} {'IQR µs':>9}   (n={args.n} per round)")
            for r in range(1, args.rounds + 1):
                rows = [("Engine.reserve (floor)", "Engine.release (floor)", in_process(path, args.n))]
                cpu0 = cpu_seconds(server.pid)
                rows.append(("HTTP reserve round trip", "HTTP release round trip", over_http(port, args.n)))
                cpu = (cpu_seconds(server.pid) - cpu0) / (args.n + args.n // 10) * 1e6
                for reserve_name, release_name, (reserve, release) in rows:
                    for name, samples in ((reserve_name, reserve), (release_name, release)):
                        p50, p99, iqr = quantiles(samples)
                        print(f"round {r}: {name:26} {p50:9.0f} {p99:9.0f} {iqr:9.0f}")
                print(
                    f"round {r}: server CPU {cpu:.0f} µs per reserve + release "
                    f"(load average {os.getloadavg()[0]:.1f})"
                )
        finally:
            server.terminate()
            server.wait(15)


if __name__ == "__main__":
    main()
