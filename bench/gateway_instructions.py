"""Deterministic cost of the gateway's own work per request: CPU instructions, from callgrind.

Wall-clock CPU per request on this shared machine moves by ±30 % from run to run; instruction
counts do not. The gateway ASGI app runs in one process under `valgrind --tool=callgrind`, driven
in-process (no HTTP server in front: uvicorn's parsing is the same for every gateway and is left
out), forwarding to the loopback fake provider in another process with its real upstream client,
metering into a real SQLite ledger; the event loop's thread is counted (the request's path:
parsing, pricing, the journal line, the upstream client), not the background writer's batched
SQLite work. Each configuration runs with K and 5K requests; the difference divided by 4K is one
request's cost.

    python bench/gateway_instructions.py [json|stream] [--k 200]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WORK = """
import asyncio, sys
sys.path.insert(0, {here!r})
from gateway_instructions import drive
asyncio.run(drive({up!r}, {ledger!r}, {stream!r}, {n}))
"""

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello, how are you today?"}]%s}'


async def drive(up: str, ledger: str, stream: bool, n: int) -> None:
    """Send `n` (+3 warm-up) requests through an in-process gateway to the provider at `up`."""
    from bench_gateway import ADMIN
    from llmledger.gateway.app import create_gateway
    from llmledger.gateway.settings import GatewaySettings
    from llmledger.server.state import RateLimiter

    settings = GatewaySettings(allow_upstreams=(up,), providers={f"{up}/v1": "openai"})
    if "limiter" in inspect.signature(create_gateway).parameters:  # one key sends it all
        gw = create_gateway(settings, ledger=ledger, limiter=RateLimiter(1e6))
    else:  # a version before per-key rate limits (for before/after counts)
        gw = create_gateway(settings, ledger=ledger)
    gw.engine.keys.create("admin", name="bench", secret=ADMIN)
    body = BODY % (b',"stream":true' if stream else b"")
    headers = [
        (b"x-ledger-key", ADMIN.encode()),
        (b"x-ledger-upstream", f"{up}/v1".encode()),
        (b"x-ledger-tenant", b"acme"),
        (b"content-type", b"application/json"),
    ]
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    never = asyncio.Event()

    status = [200]

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]  # type: ignore[assignment]
        elif status[0] != 200:
            raise SystemExit(f"HTTP {status[0]}: {message.get('body')!r}")

    for _ in range(n + 3):
        first = [True]

        async def receive(first: list[bool] = first) -> dict[str, object]:
            if first:
                first.clear()
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()
            return {"type": "http.disconnect"}

        await gw(dict(scope, query_string=b""), receive, send)
    gw.recorder.flush()
    await gw.aclose()
    gw.engine.close()


def instructions(up: str, stream: bool, n: int) -> int:
    """Instructions (Ir) of the event loop's thread of a process sending `n` requests through the
    gateway: the request's path (journal line included). The writer thread is left out: its
    periodic wake-ups scale with wall time, which valgrind stretches (counts would vary with load)."""
    with tempfile.TemporaryDirectory() as tmp:
        code = WORK.format(here=str(HERE), up=up, ledger=f"sqlite:///{tmp}/b.db", stream=stream, n=n)
        out = Path(tmp) / "cg.out"
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                code,
            ],
            capture_output=True,
        )
        main = Path(f"{out}-01")  # the event loop's thread (the writer thread's SQLite work is apart)
        if not main.exists():
            raise SystemExit(f"the measured process failed: {done.stderr.decode()[-2000:]}")
        text = main.read_text()
        return int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", choices=("json", "stream"), default="json")
    parser.add_argument("--k", type=int, default=200)
    args = parser.parse_args()
    from bench_gateway import free_port, start

    port = free_port()
    up = f"http://127.0.0.1:{port}"
    proc = start([sys.executable, str(HERE / "gateway_parts.py"), "upstream", str(port)], up)
    try:
        stream = args.mode == "stream"
        low = instructions(up, stream, args.k)
        high = instructions(up, stream, 5 * args.k)
        per = (high - low) / (4 * args.k)
        print(f"gateway {args.mode}: {per:,.0f} instructions per request (K={args.k})")
        if stream:
            print(f"  per stream event (103 a stream): {per / 103:,.0f}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
