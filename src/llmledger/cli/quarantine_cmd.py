"""`llmledger quarantine list | retry`: events the ledger could not store, kept with the reason."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llmledger.cli.app import LedgerOpt, _fail, app, console, open_ledger
from llmledger.errors import LlmLedgerError

__all__ = ["quarantine_app"]

quarantine_app = typer.Typer(help="Events the ledger could not store: list, retry.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def list_cmd(
    ledger: LedgerOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many rows")] = 100,
) -> None:
    """Quarantined events, oldest first, with the reason each could not be stored."""
    from llmledger.sdk import runtime as _rt
    from llmledger.storage import quarantine

    try:
        open_ledger(ledger)
        store = _rt.current().ledger
        rows, total = quarantine.rows(store, limit), quarantine.count(store)
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    table = Table(title=f"Quarantine: {total} event(s)")
    for column in ("id", "event_id", "quarantined", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row.id), row.event_id or "-", f"{row.quarantined_at:%Y-%m-%d %H:%M:%S}", row.reason)
    console.print(table)


@quarantine_app.command("retry")
def retry_cmd(
    ledger: LedgerOpt = None,
    ids: Annotated[list[int] | None, typer.Argument(help="Row ids to retry (default: all)")] = None,
) -> None:
    """Validate quarantined events again; write those that now pass, keep the others."""
    from llmledger.sdk import runtime as _rt
    from llmledger.storage import quarantine

    try:
        open_ledger(ledger)
        written, kept = quarantine.retry(_rt.current().ledger, ids or None)
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{written} event(s) written, {kept} still quarantined")
