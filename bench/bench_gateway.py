"""The gateway's overhead, measured side by side in one run: the same requests sent directly to a
loopback fake provider and through the gateway in front of it (a real `llmledger proxy` process,
metering into a real SQLite ledger: usage read, priced, journaled, written).

Non-stream chat completions and streams of 100 chunks, at concurrency 1 and 32; p50/p99 latency,
requests/s, and the CPU the proxy process used per request (from /proc, user + system; "loop": its
main thread alone, the event loop, without the writer thread's SQLite work). Rounds
alternate direct and gateway so both see the same machine load. `--stacks` also measures bare
one-hop forwarders (raw ASGI + aiohttp / the gateway's own client / httpx2, FastAPI + aiohttp): the floor
each stack puts under a gateway, which is how the gateway's stack was chosen.

`--before SRC` also runs a second gateway from another source tree (e.g. main's `src`), in the
same rounds: before and after interleaved on the same machine load.

    python bench/bench_gateway.py [--requests 2000] [--rounds 3] [--stacks] [--before SRC]
                                  [--only json|stream] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).parent
ADMIN = "llk_0011223344556677_bench-admin-secret-0123456789"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU of a process and its threads so far (`thread`: of that thread only)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start(cmd: list[str], url: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd} exited with {proc.returncode}")
        try:
            with socket.create_connection((url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1])), 1):
                return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{cmd} did not start")


async def one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], stream: bool
) -> float:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as r:
        if r.status != 200:
            raise SystemExit(f"{url}: HTTP {r.status}: {await r.text()}")
        if stream:
            async for _ in r.content.iter_any():
                pass
        else:
            await r.read()
    return time.perf_counter() - t0


async def load(
    url: str, headers: dict[str, str], stream: bool, concurrency: int, total: int
) -> tuple[list[float], float]:
    """(latencies, wall seconds) of `total` requests from `concurrency` workers."""
    body = json.dumps({**BODY, "stream": True} if stream else BODY).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench-provider", **headers}
    connector = aiohttp.TCPConnector(limit=0)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(n: int) -> None:
            for _ in range(n):
                latencies.append(await one(session, url, body, headers, stream))

        per = total // concurrency
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(per) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, wall


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure(target: dict[str, Any], stream: bool, concurrency: int, total: int) -> dict[str, float]:
    pid = target["pid"]
    before = cpu_seconds(pid) if pid else 0.0
    loop_before = cpu_seconds(pid, pid) if pid else 0.0  # the main thread runs the event loop
    latencies, wall = asyncio.run(load(target["url"], target["headers"], stream, concurrency, total))
    cpu = (cpu_seconds(pid) - before) if pid else 0.0
    loop = (cpu_seconds(pid, pid) - loop_before) if pid else 0.0
    return {"lat": latencies, "wall": wall, "cpu": cpu, "loop": loop, "n": len(latencies)}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stacks", action="store_true", help="also the bare one-hop stack candidates")
    parser.add_argument("--before", help="a source tree to run a second ('before') gateway from")
    parser.add_argument("--only", choices=("json", "stream"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    try:
        up_port = free_port()
        up = f"http://127.0.0.1:{up_port}"
        procs.append(start([sys.executable, str(HERE / "gateway_parts.py"), "upstream", str(up_port)], up))
        gw_port = free_port()
        gw = f"http://127.0.0.1:{gw_port}"
        config = tmp / "gateway.toml"
        config.write_text(
            f'[gateway]\nallow_upstreams = ["{up}"]\n[gateway.providers]\n"{up}/v1" = "openai"\n'
        )
        main_ = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"
        cmd = [sys.executable, "-c", main_, "proxy", "--ledger", f"sqlite:///{tmp / 'bench.db'}"]
        gw_proc = start(
            [*cmd, "--port", str(gw_port), "--config", str(config)],
            gw,
            {"LLMLEDGER_ADMIN_KEY": ADMIN, "LLMLEDGER_RATE_LIMIT": "1000000"},  # one key sends it all
        )
        procs.append(gw_proc)
        via = {"X-Ledger-Key": ADMIN, "X-Ledger-Upstream": f"{up}/v1", "X-Ledger-Tenant": "acme"}
        gateways = ["gateway"]
        before: dict[str, dict[str, Any]] = {}
        if args.before:
            b_port = free_port()
            b_url = f"http://127.0.0.1:{b_port}"
            b_proc = start(
                [*cmd[:-1], f"sqlite:///{tmp / 'before.db'}", "--port", str(b_port), "--config", str(config)],
                b_url,
                {"LLMLEDGER_ADMIN_KEY": ADMIN, "LLMLEDGER_RATE_LIMIT": "1000000", "PYTHONPATH": args.before},
            )
            procs.append(b_proc)
            gateways.append("gateway-before")
            before["gateway-before"] = {
                "url": f"{b_url}/v1/chat/completions",
                "headers": via,
                "pid": b_proc.pid,
            }
        targets: dict[str, dict[str, Any]] = {
            "direct": {"url": f"{up}/v1/chat/completions", "headers": {}, "pid": 0},
            "gateway": {
                "url": f"{gw}/v1/chat/completions",
                "headers": via,
                "pid": gw_proc.pid,
            },
            **before,
        }
        if args.stacks:
            for role in ("hop-asgi-aiohttp", "hop-asgi-lean", "hop-asgi-httpx2", "hop-fastapi-aiohttp"):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                proc = start([sys.executable, str(HERE / "gateway_parts.py"), role, str(port), up], url)
                procs.append(proc)
                targets[role] = {"url": f"{url}/v1/chat/completions", "headers": {}, "pid": proc.pid}
        for name, target in targets.items():  # warm-up: connections, imports, the price catalogue
            measure(target, False, 4, 200)
            if name == "direct" or name in gateways:
                measure(target, True, 4, 40)
        results: dict[str, Any] = {}
        for stream in (False, True):
            if args.only and args.only != ("stream" if stream else "json"):
                continue
            for concurrency in (1, 32):
                total = args.requests // (10 if stream else 1)
                total -= total % concurrency
                pooled: dict[str, dict[str, Any]] = {}
                for _ in range(args.rounds):
                    for name, target in targets.items():
                        if stream and name != "direct" and name not in gateways:
                            continue
                        got = measure(target, stream, concurrency, total)
                        into = pooled.setdefault(
                            name, {"lat": [], "wall": 0.0, "cpu": 0.0, "loop": 0.0, "n": 0}
                        )
                        into["lat"] += got["lat"]
                        into["wall"] += got["wall"]
                        into["cpu"] += got["cpu"]
                        into["loop"] += got["loop"]
                        into["n"] += got["n"]
                key = f"{'stream' if stream else 'json'} c={concurrency}"
                results[key] = {
                    name: {
                        "p50_ms": pct(p["lat"], 0.50),
                        "p99_ms": pct(p["lat"], 0.99),
                        "req_s": p["n"] / p["wall"],
                        "cpu_ms_per_req": p["cpu"] / p["n"] * 1000 if targets[name]["pid"] else None,
                        "loop_ms_per_req": p["loop"] / p["n"] * 1000 if targets[name]["pid"] else None,
                        "n": p["n"],
                    }
                    for name, p in pooled.items()
                }
        report(results)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def report(results: dict[str, Any]) -> None:
    print(f"load average: {os.getloadavg()[0]:.1f} (2 cores; other sessions share the machine)")
    for key, rows in results.items():
        print(f"\n{key}")
        print(
            f"  {'target':22} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'CPU ms/req':>11}"
            f" {'loop ms':>8} {'+p50':>7} {'+p99':>7}"
        )
        direct = rows["direct"]
        for name, row in rows.items():
            cpu = "" if row["cpu_ms_per_req"] is None else f"{row['cpu_ms_per_req']:.3f}"
            loop = "" if row.get("loop_ms_per_req") is None else f"{row['loop_ms_per_req']:.3f}"
            added = (
                ""
                if name == "direct"
                else f"{row['p50_ms'] - direct['p50_ms']:7.3f} {row['p99_ms'] - direct['p99_ms']:7.3f}"
            )
            print(
                f"  {name:22} {row['p50_ms']:8.3f} {row['p99_ms']:8.3f} {row['req_s']:8.0f} {cpu:>11}"
                f" {loop:>8} {added}"
            )
        if key.startswith("stream"):
            d, chunks = rows["direct"], 103
            for name in ("gateway", "gateway-before"):
                g = rows.get(name)
                if g is None:
                    continue
                if g["cpu_ms_per_req"] is not None:
                    print(
                        f"  {name} CPU per stream chunk: {g['cpu_ms_per_req'] * 1000 / chunks:.1f} µs "
                        f"(stream of {chunks} events, whole request included)"
                    )
                added = (g["p50_ms"] - d["p50_ms"]) * 1000 / chunks
                print(f"  {name} added per chunk (p50 latency): {added:.1f} µs")


if __name__ == "__main__":
    main()
