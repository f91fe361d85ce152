"""One bad value must never stop metering (issue 8, part 2): each case in a fresh process.

Prints, per case, what happened to the bad value (typed error, quarantined, stored) and to the
valid events recorded after it. `--src` runs against another checkout's `src/` (the "before").

    python bench/bad_values.py [--src /tmp/before/src]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PRELUDE = """
import os, sys, time, resource, threading, llmledger
from datetime import datetime, timezone
db = sys.argv[1]
def cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
def bad(**kw):
    try:
        llmledger.track(provider="openai", model="gpt-4o", **kw); return "accepted"
    except Exception as e:
        return f"raised {type(e).__name__}"
def good(n):
    for _ in range(n): llmledger.track(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=2)
def report(what, n_good):
    t = time.perf_counter(); ok = llmledger.flush(timeout=5); waited = time.perf_counter() - t
    try:
        stored = len(llmledger.events(limit=None))
    except Exception as e:
        stored = f"events() raised {type(e).__name__}"
    q = getattr(llmledger.stats(), "events_quarantined", "n/a")
    print(f"bad value {what}; {n_good} valid after it: stored={stored}, "
          f"flush ok={ok} in {waited:.1f}s, quarantined={q}")
"""

CASES = {
    "tokens 2**63": (
        "llmledger.init(ledger=db, flush_interval=0.02);r = bad(input_tokens=2**63); good(5); report(r, 5)"
    ),
    "tenant lone surrogate": (
        "llmledger.init(ledger=db, flush_interval=0.02);"
        "r = bad(tenant='\\ud800'); good(1000); report(r, 1000)"
    ),
    "year 9999 + monthly limit": (
        "llmledger.init(ledger=db, flush_interval=0.02); llmledger.set_limit(usd=100, per='month');"
        "r = bad(input_tokens=1, timestamp=datetime(9999, 12, 31, tzinfo=timezone.utc));"
        "good(5); report(r, 5)"
    ),
    "cost 1e1000000 + USD limit": (
        "llmledger.init(ledger=db, flush_interval=0.02); llmledger.set_limit(usd=100, per='month');"
        "r = bad(input_tokens=1, cost_usd='1e1000000'); good(5); report(r, 5)"
    ),
    "two events of 2**63-1 tokens, then usage()": (
        "llmledger.init(ledger=db, flush_interval=0.02);"
        "r1 = bad(input_tokens=2**63-1); r2 = bad(input_tokens=2**63-1);"
        "good(5); llmledger.flush(timeout=5)\n"
        "for name, f in (('usage', lambda: llmledger.usage('tenant')), ('spend', llmledger.spend)):\n"
        "    try: f(); print(f'{r1}/{r2}: {name}() ok')\n"
        "    except Exception as e: print(f'{r1}/{r2}: {name}() raised {type(e).__name__}: {str(e)[:80]}')"
    ),
    "shutdown with the ledger failing: CPU over 1 s after": (
        "import sqlite3; llmledger.init(ledger=db, flush_interval=0.02); good(1); llmledger.flush()\n"
        "c = sqlite3.connect(db); c.execute('ALTER TABLE llmledger_events RENAME TO parked'); c.commit()\n"
        "good(5); llmledger.shutdown(timeout=0.5); c0 = cpu(); time.sleep(1.0)\n"
        "print(f'CPU {cpu() - c0:.2f} s in the 1 s after shutdown; llmledger threads alive: '"
        "f'{[t.name for t in threading.enumerate() if t.name.startswith(\"llmledger\")]}')"
    ),
    "init(flush_interval=inf)": (
        "try:\n    llmledger.init(ledger=db, flush_interval=float('inf'))\n"
        "except Exception as e:\n    print(f'init raised {type(e).__name__}'); raise SystemExit\n"
        "good(5); c0 = cpu(); ok = llmledger.flush(timeout=2); print(f'accepted; flush ok={ok}')"
    ),
    "init(flush_interval=nan)": (
        "try:\n    llmledger.init(ledger=db, flush_interval=float('nan'))\n"
        "except Exception as e:\n    print(f'init raised {type(e).__name__}'); raise SystemExit\n"
        "good(1); llmledger.flush(timeout=1); c0 = cpu(); time.sleep(1.0);"
        "print(f'accepted; CPU {cpu() - c0:.2f} s over 1 s idle')"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", default=str(Path(__file__).resolve().parent.parent / "src"))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": args.src}
    for name, body in CASES.items():
        db = Path(tempfile.mkdtemp(prefix="llmledger-bad-")) / "ledger.db"
        try:
            out = subprocess.run(
                [sys.executable, "-c", PRELUDE + body, str(db)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            text = (out.stdout.strip() or out.stderr.strip()[-300:]).replace("\n", " | ")
            retries = out.stderr.count("will retry")
            print(f"{name:45} {text}" + (f" [{retries} retry log lines]" if retries else ""), flush=True)
        except subprocess.TimeoutExpired:
            print(f"{name:45} TIMED OUT after 120 s", flush=True)


if __name__ == "__main__":
    main()
