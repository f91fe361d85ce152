"""`llmledger rollups rebuild | check`: the per-hour and per-day sums reports and the dashboard read."""

from __future__ import annotations

from typing import Any

import typer
from rich.text import Text

from llmledger.cli.app import LedgerOpt, app, console, open_ledger

__all__ = ["check", "rebuild", "rollups_app", "show_differences"]

rollups_app = typer.Typer(
    name="rollups",
    help="Per-hour and per-day sums of the events (kept with every write; see docs/dashboard.md).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(rollups_app)


def _ledger() -> Any:
    from llmledger.sdk import runtime as _rt

    runtime = _rt.current()
    runtime.writer.flush()
    return runtime.ledger


@rollups_app.command()
def rebuild(ledger: LedgerOpt = None) -> None:
    """Recompute every rollup row from the events (one write transaction; writers wait meanwhile)."""
    open_ledger(ledger)
    rows = _ledger().rebuild_rollups()
    console.print(Text(f"ok: {rows:,} rollup rows rebuilt from the ledger's events"))


def show_differences(diffs: list[dict[str, Any]], most: int = 20) -> None:
    """Print the first `most` rollup differences, one a line."""
    for d in diffs[:most]:
        dims = ", ".join(f"{k}={v}" for k, v in (d["dims"] or {}).items())
        where = f"rollup {d['grain']} {d['cuboid']} {d['bucket_us']} [{dims}]"
        console.print(Text(f"{where}: ledger {d['ledger']} rollup {d['rollup']}"))
    if len(diffs) > most:
        console.print(Text(f"... and {len(diffs) - most} more"))


@rollups_app.command()
def check(ledger: LedgerOpt = None) -> None:
    """Prove the rollups equal the events' sums (exit 1 and list the differences if not)."""
    open_ledger(ledger)
    diffs = _ledger().check_rollups()
    if not diffs:
        console.print(Text("ok: the rollups equal the ledger's events"))
        return
    show_differences(diffs)
    console.print(Text("run `llmledger rollups rebuild` to recompute them"))
    raise typer.Exit(1)
