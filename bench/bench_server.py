"""Server ingest, sustained: `POST /api/v1/events` in batches of 500 over loopback HTTP (target:
>= 20,000 events/s on this 2-core machine), side by side with the floor — the same events written
by `Ledger.write` in-process with no HTTP, no JSON and no validation.

A real `llmledger serve` process (uvicorn, one worker) on a real SQLite file (or PostgreSQL with
`--postgres URL`); two client threads keep it busy with JSON batches of realistic events (50
tenants, 1,000 users, a tag; half arrive priced, half are priced by the server; `--gzip` compresses
them as the SDK does). The clients send pre-encoded bodies (only the event ids change), so they
take little of the machine's CPU from the server.

Besides events/s (wall clock), it prints the server process's CPU time per event (from
/proc/<pid>/stat): on a machine shared with other work, events per CPU-second of the server is the
figure that says what one dedicated core would sustain. `engine.ingest` in-process (no HTTP)
splits the cost between the engine and the HTTP layer.

    python bench/bench_server.py [--seconds 30] [--batch 500] [--gzip] [--postgres URL]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx2

from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.storage import Ledger

ADMIN = "llk_0011223344556677_bench-admin-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx2.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def wire_events(n: int, start: int) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = []
    for i in range(start, start + n):
        item: dict[str, Any] = {
            "event_id": uuid7(),
            "timestamp": now,
            "provider": "openai",
            "model": "gpt-4o-mini-2024-07-18",
            "endpoint": "chat.completions",
            "input_tokens": 1200,
            "cache_read_tokens": 1024,
            "output_tokens": 80,
            "duration_ms": 412.5,
            "tenant": f"tenant-{i % 50}",
            "user": f"user-{i % 1000}",
            "feature": "chat",
            "tags": {"plan": "pro"},
        }
        if i % 2:
            item["cost_usd"] = "0.0001356"
            item["cost_source"] = "catalog"
        out.append(item)
    return out


_ID = "@@event-id@@"
_ids = itertools.count()


def body_maker(batch: int, compress: bool) -> Any:
    """A function returning a new request body of `batch` events (fresh event ids) cheaply."""
    template = wire_events(batch, 0)
    for item in template:
        item["event_id"] = _ID
    parts = json.dumps({"events": template}).split(f'"{_ID}"')
    prefix = uuid7()[:23]

    def make() -> bytes:
        ids = [f'"{prefix}-{next(_ids):012x}"' for _ in range(batch)]
        text = "".join(itertools.chain.from_iterable(zip(parts, [*ids, ""], strict=True)))
        data = text.encode()
        return gzip.compress(data, compresslevel=5) if compress else data

    return make


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_rate(
    url: str, seconds: float, batch: int, threads: int, compress: bool = False
) -> tuple[float, list[float], int]:
    stop = time.monotonic() + seconds
    sent = [0] * threads
    latencies: list[float] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/json"}
    if compress:
        headers["Content-Encoding"] = "gzip"

    def worker(slot: int) -> None:
        client = httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
        make = body_maker(batch, compress)
        n = 0
        while time.monotonic() < stop:
            body = make()
            t0 = time.perf_counter()
            answer = client.post("/api/v1/events", content=body, headers=headers)
            took = time.perf_counter() - t0
            if answer.status_code != 200 or answer.json()["accepted"] != batch:
                raise SystemExit(f"ingest failed: {answer.status_code} {answer.text[:200]}")
            n += batch
            with lock:
                latencies.append(took)
        sent[slot] = n
        client.close()

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(sent) / (time.perf_counter() - t0), latencies, sum(sent)


def engine_rate(ledger: str, seconds: float, batch: int) -> tuple[float, float]:
    """`Engine.ingest` of wire items in-process (validation, pricing, idempotent write; no HTTP):
    (events/s, CPU microseconds per event)."""
    from llmledger.engine import Engine

    engine = Engine(ledger)
    make = body_maker(batch, False)
    stop = time.monotonic() + seconds
    n = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    while time.monotonic() < stop:
        items = json.loads(make())["events"]
        result = engine.ingest(items)
        assert result.accepted == batch and not result.rejected, result.rejected[:1]
        n += batch
    rate = n / (time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / n * 1e6
    engine.close()
    return rate, cpu


def floor_rate(ledger: str, seconds: float, batch: int) -> float:
    store = Ledger(ledger)
    stop = time.monotonic() + seconds
    n = 0
    t0 = time.perf_counter()
    while time.monotonic() < stop:
        events = [UsageEvent.from_dict(e) for e in wire_events(batch, n)]
        store.write(events)
        n += batch
    rate = n / (time.perf_counter() - t0)
    store.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL instead of a SQLite file")
    parser.add_argument("--gzip", action="store_true", help="gzip the request bodies (as the SDK does)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="llmledger-bench-"))
    ledger = args.postgres or f"sqlite:///{folder / 'server.db'}"
    floor_ledger = args.postgres or f"sqlite:///{folder / 'floor.db'}"
    port = free_port()
    env = {**os.environ, "LLMLEDGER_ADMIN_KEY": ADMIN, "LLMLEDGER_RATE_LIMIT": "1000000"}
    main_code = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"
    server = subprocess.Popen(
        [sys.executable, "-c", main_code, "serve", "--ledger", ledger, "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        http_rate(url, 2.0, args.batch, args.threads, args.gzip)  # warm-up: catalogue, connections
        cpu0 = cpu_seconds(server.pid)
        rate, latencies, sent = http_rate(url, args.seconds, args.batch, args.threads, args.gzip)
        server_cpu = (cpu_seconds(server.pid) - cpu0) / sent * 1e6
    finally:
        server.terminate()
        server.wait(30)
    engine_ledger = args.postgres or f"sqlite:///{folder / 'engine.db'}"
    in_process, engine_cpu = engine_rate(engine_ledger, min(args.seconds, 10.0), args.batch)
    floor = floor_rate(floor_ledger, min(args.seconds, 10.0), args.batch)
    q = statistics.quantiles(latencies, n=100)
    kind = "postgresql" if args.postgres else "sqlite"
    print(f"ledger: {kind}; batch {args.batch}; {args.threads} clients")
    print(f"server ingest: {rate:,.0f} events/s sustained over {args.seconds:.0f} s (target >= 20,000)")
    print(f"  batch latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms ({len(latencies)} batches)")
    print(
        f"  server CPU {server_cpu:.1f} us/event = {1e6 / server_cpu:,.0f} events per CPU-second "
        f"(load average now {os.getloadavg()[0]:.1f})"
    )
    print(f"engine.ingest in-process (no HTTP): {in_process:,.0f} events/s, CPU {engine_cpu:.1f} us/event")
    print(f"floor (Ledger.write in-process, parsed events): {floor:,.0f} events/s")
    print(f"server / floor: {rate / floor:.2f}")


if __name__ == "__main__":
    main()
