"""`llmledger delete`: retention (events before a date) and erasure requests (a tenant's or user's)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from llmledger.cli.app import LedgerOpt, app, console, fail, open_ledger

__all__ = ["delete"]


@app.command()
def delete(
    before: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN", help="Events older than this: an ISO date, or a duration ago (365d, 1y)"
        ),
    ] = None,
    tenant: Annotated[str | None, typer.Option(metavar="NAME", help="Every event of this tenant")] = None,
    user: Annotated[str | None, typer.Option(metavar="NAME", help="Every event of this user")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    ledger: LedgerOpt = None,
) -> None:
    """Delete events (all criteria must match). Spend-limit counters keep what they had spent (spent
    money stays spent: no credit is refunded), and reconcile stays clean."""
    import llmledger

    if before is None and tenant is None and user is None:
        fail("say which events to delete: --before WHEN, --tenant NAME and/or --user NAME")
    from llmledger.cli.reports import check_times

    check_times(before)  # a bad --before fails here, before the confirmation
    open_ledger(ledger)
    what = " and ".join(
        f"{name} {value!r}"
        for name, value in (("before", before), ("tenant", tenant), ("user", user))
        if value
    )
    if not yes and not typer.confirm(f"Delete every event matching {what}? This cannot be undone", err=True):
        fail("nothing deleted", status=1)
    gone = llmledger.delete_events(before=before, tenant=tenant, user=user)
    console.print(Text(f"deleted {gone} event(s) matching {what}"))
