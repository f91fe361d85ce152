"""`llmledger quarantine list | show | retry | drop`: events the ledger could not store, kept with the
reason."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from llmledger.cli.app import LedgerOpt, _fail, app, console, errors, fail, open_ledger
from llmledger.errors import LlmLedgerError

__all__ = ["quarantine_app"]

quarantine_app = typer.Typer(
    help="Events the ledger could not store: list, show, retry, drop.", no_args_is_help=True
)
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
        store = _rt.current().ledger
        missing = [i for i in ids or [] if quarantine.get(store, i) is None]
        if missing:
            fail(f"no quarantined row {missing[0]} (see `llmledger quarantine list`); nothing retried")
        written, kept = quarantine.retry(store, ids or None)
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{written} event(s) written, {kept} still quarantined")


RowId = Annotated[int, typer.Argument(metavar="ID", help="The row's id (see `quarantine list`)")]


@quarantine_app.command("show")
def show_cmd(row_id: RowId, ledger: LedgerOpt = None) -> None:
    """One quarantined row: its reason and the record kept (the event's JSON, or what was left of it)."""
    from llmledger.sdk import runtime as _rt
    from llmledger.storage import quarantine

    open_ledger(ledger)
    row = quarantine.get(_rt.current().ledger, row_id)
    if row is None:
        fail(f"no quarantined row {row_id} (see `llmledger quarantine list`)")
    console.print(
        Text(
            f"id {row.id}  event_id {row.event_id or '-'}  quarantined {row.quarantined_at:%Y-%m-%d %H:%M:%S}"
        )
    )
    console.print(Text(f"reason: {row.reason}"))
    console.out(row.record, highlight=False)


@quarantine_app.command("drop")
def drop_cmd(
    row_id: RowId,
    ledger: LedgerOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Discard a quarantined row for good (an event that can never be stored)."""
    from llmledger.sdk import runtime as _rt
    from llmledger.storage import quarantine

    open_ledger(ledger)
    store = _rt.current().ledger
    row = quarantine.get(store, row_id)
    if row is None:
        fail(f"no quarantined row {row_id} (see `llmledger quarantine list`)")
    errors.print(Text(f"row {row.id} (event_id {row.event_id or '-'}): {row.reason}"))
    if not yes and not typer.confirm(
        f"Discard quarantined row {row_id}? It cannot be retried after", err=True
    ):
        fail("nothing discarded", status=1)
    if not quarantine.drop(store, row_id):
        fail(f"no quarantined row {row_id} (see `llmledger quarantine list`)")
    console.print(Text(f"discarded quarantined row {row_id}"))
