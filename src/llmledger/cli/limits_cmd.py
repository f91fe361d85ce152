"""`llmledger limits set | list | rm` and `llmledger reconcile`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llmledger.cli.app import Label, LedgerOpt, _fail, _open, app, console
from llmledger.errors import LlmLedgerError

__all__ = ["limits_app"]

limits_app = typer.Typer(help="Spend limits: set, list, remove.", no_args_is_help=True)
app.add_typer(limits_app, name="limits")


@limits_app.command("set")
def set_cmd(
    ledger: LedgerOpt = None,
    usd: Annotated[str | None, typer.Option(help="Amount in USD")] = None,
    tokens: Annotated[int | None, typer.Option(help="Amount in tokens (input + output)")] = None,
    requests: Annotated[int | None, typer.Option(help="Amount in requests")] = None,
    per: Annotated[str, typer.Option(help="day, week, month, lifetime or rolling:<1h|24h|30d>")] = "month",
    tz: Annotated[str, typer.Option(help="Time zone of calendar windows")] = "UTC",
    mode: Annotated[str, typer.Option(help="hard (block) or soft (alert)")] = "hard",
    enforcement: Annotated[str | None, typer.Option(help="strict or estimate")] = None,
    tenant: Label = None,
    user: Label = None,
    org: Label = None,
    feature: Label = None,
    agent: Label = None,
    model: Label = None,
    provider: Label = None,
    tag: Annotated[list[str] | None, typer.Option(help="name=value (repeatable); value may be *")] = None,
) -> None:
    """Create or replace a limit. Scope values may be `*` (each distinct value)."""
    from llmledger.sdk import limits as L

    tags = {}
    for item in tag or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise _fail(f"--tag must be name=value, got {item!r}")
        tags[name] = value
    try:
        _open(ledger)
        limit = L.set_limit(
            usd=usd,
            tokens=tokens,
            requests=requests,
            per=per,
            tz=tz,
            mode=mode,
            enforcement=enforcement,
            tags=tags or None,
            tenant=tenant,
            user=user,
            org=org,
            feature=feature,
            agent=agent,
            model=model,
            provider=provider,
        )
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"{limit.id}  {limit.metric} {limit.amount} per {limit.window.describe()}  ({limit.describe_scope()})"
    )


@limits_app.command("list")
def list_cmd(ledger: LedgerOpt = None) -> None:
    """Every limit, with what its fixed scope has spent in the current window."""
    from llmledger.sdk import limits as L

    try:
        _open(ledger)
        table = Table("id", "scope", "amount", "window", "mode", "spent now", "reserved", "resets")
        for limit in L.limits():
            fixed = {
                k: v
                for k, v in limit.scope
                if v != "*" and k in ("tenant", "user", "org", "feature", "agent")
            }
            statuses = (
                [s for s in L.remaining(**fixed) if s.limit.id == limit.id]
                if "*" not in dict(limit.scope).values()
                else []
            )
            s = statuses[0] if statuses else None
            table.add_row(
                limit.id,
                limit.describe_scope(),
                f"{limit.amount} {limit.metric}",
                limit.window.describe(),
                f"{limit.mode}/{limit.enforcement}",
                str(s.spent) if s else "per subject",
                str(s.reserved) if s else "",
                s.resets_at.isoformat(timespec="minutes") if s and s.resets_at else "",
            )
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    console.print(table)


@limits_app.command("load")
def load_cmd(
    path: Annotated[str, typer.Argument(help="A TOML file of [[limits]] tables")], ledger: LedgerOpt = None
) -> None:
    """Create or replace the limits of a TOML file (all or nothing)."""
    from llmledger.sdk import limits as L

    try:
        _open(ledger)
        loaded = L.load_limits(path)
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    for limit in loaded:
        console.print(f"{limit.id}  {limit.metric} {limit.amount} per {limit.window.describe()}")


@limits_app.command("rm")
def rm_cmd(
    limit_id: Annotated[str, typer.Argument(help="The limit's id (see `limits list`)")],
    ledger: LedgerOpt = None,
) -> None:
    """Remove a limit."""
    from llmledger.sdk import limits as L

    _open(ledger)
    if not L.delete_limit(limit_id):
        raise _fail(f"no limit with id {limit_id!r}")
    console.print(f"removed {limit_id}")


@app.command()
def reconcile(ledger: LedgerOpt = None) -> None:
    """Prove every limit's counters equal the ledger's events (exit 1 and list the differences if not)."""
    from llmledger.sdk import limits as L

    _open(ledger)
    diffs = L.reconcile()
    if not diffs:
        console.print(f"ok: the counters of {len(L.limits())} limit(s) equal the ledger's events")
        return
    for d in diffs:
        where = f"{d['limit_id']} {d['subject'] or '-'} bucket {d['bucket']}"
        console.print(f"{where}: ledger {d['ledger']} counter {d['counter']}")
    raise typer.Exit(1)
