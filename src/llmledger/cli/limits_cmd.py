"""`llmledger limits set | list | load | rm | top-up` and `llmledger reconcile`."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from llmledger._csv import safe_cell
from llmledger.cli.app import FormatOpt, LedgerOpt, app, console, fail, label, open_ledger
from llmledger.cli.reports import check_format, parse_tags

if TYPE_CHECKING:
    from llmledger.limit.model import Limit

__all__ = ["limits_app", "scope_text"]

limits_app = typer.Typer(
    help="Spend limits: set, list, load, rm, top-up.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(limits_app, name="limits")

Scope = Annotated[str | None, typer.Option(metavar="NAME", help="Scope: this value, or * for each value")]


def scope_text(limit: Limit) -> str:
    """`each user, tag plan=free`, `tenant=acme, model=gpt-4o`, `everything`."""
    parts = []
    for key, value in limit.scope:
        name = f"tag {key[4:]}" if key.startswith("tag:") else key
        parts.append(f"each {name}" if value == "*" else f"{name}={value}")
    return ", ".join(parts) or "everything"


def _describe(limit: Limit) -> Text:
    unit = "$" if limit.metric == "usd" else ""
    tail = "" if limit.metric == "usd" else f" {limit.metric}"
    text = f"{limit.id}  {unit}{limit.amount}{tail} per {limit.window.describe()}  ({scope_text(limit)}; "
    return Text(text + f"{limit.mode}/{limit.enforcement})")


@limits_app.command("set")
def set_cmd(
    ledger: LedgerOpt = None,
    usd: Annotated[str | None, typer.Option(metavar="AMOUNT", help="Amount in USD, e.g. 50 or 0.25")] = None,
    tokens: Annotated[int | None, typer.Option(metavar="N", help="Amount in tokens (input + output)")] = None,
    requests: Annotated[int | None, typer.Option(metavar="N", help="Amount in requests")] = None,
    per: Annotated[
        str,
        typer.Option(
            metavar="WINDOW",
            help="day, week or month (calendar, in --tz); lifetime (prepaid credit, see top-up); "
            "rolling:<duration>, e.g. rolling:1h, rolling:24h, rolling:30d",
        ),
    ] = "month",
    tz: Annotated[str, typer.Option(metavar="ZONE", help="Time zone of calendar windows")] = "UTC",
    mode: Annotated[
        str,
        typer.Option(
            metavar="MODE",
            help="hard: refuse calls over the limit (LimitExceeded); soft: allow them and alert "
            "(optionally --downgrade to a cheaper model); throttle: wait up to --max-wait for room, "
            "else RateLimited",
        ),
    ] = "hard",
    enforcement: Annotated[
        str | None,
        typer.Option(
            metavar="HOW",
            help="strict: reserve each call's worst case before it is sent (never exceeded); "
            "estimate: reserve an estimate (faster, may overshoot by one call)",
        ),
    ] = None,
    max_wait: Annotated[
        float, typer.Option(metavar="SECONDS", help="throttle mode: how long a call may wait for room")
    ] = 0.0,
    downgrade: Annotated[
        list[str] | None,
        typer.Option(metavar="MODEL=CHEAPER", help="soft mode: once reached, send MODEL calls to CHEAPER"),
    ] = None,
    tenant: Scope = None,
    user: Scope = None,
    org: Scope = None,
    feature: Scope = None,
    agent: Scope = None,
    model: Scope = None,
    provider: Scope = None,
    tag: Annotated[
        list[str] | None, typer.Option(metavar="NAME=VALUE", help="Tag scope (repeatable); value may be *")
    ] = None,
) -> None:
    """Create or replace a limit. Scope values may be * (each distinct value has its own counter)."""
    from llmledger.sdk import limits as L

    tags = parse_tags(tag, star=True)
    swaps: dict[str, str] = {}
    for item in downgrade or []:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            fail(f"--downgrade must be MODEL=CHEAPER, got {item!r}")
        swaps[old] = new
    open_ledger(ledger, must_exist=False)
    limit = L.set_limit(
        usd=usd,
        tokens=tokens,
        requests=requests,
        per=per,
        tz=tz,
        mode=mode,
        enforcement=enforcement,
        max_wait=max_wait,
        downgrade=swaps or None,
        tags=tags or None,
        tenant=tenant,
        user=user,
        org=org,
        feature=feature,
        agent=agent,
        model=model,
        provider=provider,
    )
    console.print(_describe(limit))


def _subjects(limit: Limit, now: datetime) -> list[str]:
    """The counters of a limit in its current window: "" for a fixed scope, each subject for `*`."""
    import sqlalchemy as sa

    import llmledger.sdk.runtime as rt
    from llmledger.limit.windows import span
    from llmledger.storage.tables import counters, credits, reservations

    if "*" not in dict(limit.scope).values():
        return [""]
    window = span(limit.window, now)
    found: set[str] = set()
    with rt.current().ledger.engine.connect() as conn:
        for table in (counters, reservations):
            rows = conn.execute(
                sa.select(table.c.subject).where(
                    table.c.limit_id == limit.id, table.c.bucket.between(window.first, window.last)
                )
            )
            found.update(rows.scalars())
        found.update(
            conn.execute(sa.select(credits.c.subject).where(credits.c.limit_id == limit.id)).scalars()
        )
    return sorted(found)


@limits_app.command("list")
def list_cmd(ledger: LedgerOpt = None, fmt: FormatOpt = "table") -> None:
    """Every limit, with what each subject has spent and holds in the current window."""
    import llmledger.sdk.runtime as rt
    from llmledger.cli.render import Column, money, print_columns
    from llmledger.sdk import limits as L

    check_format(fmt)
    open_ledger(ledger)
    now = datetime.now(timezone.utc)
    store = rt.current().ledger.limits
    rows: list[list[str]] = []
    records: list[dict[str, Any]] = []  # csv / json: exact values
    for limit in L.limits():
        unit = "" if limit.metric == "usd" else f" {limit.metric}"

        def show(value: Decimal, unit: str = unit, usd: bool = limit.metric == "usd") -> str:
            return money(value) if usd else f"{value:,}{unit}"

        subjects = _subjects(limit, now)
        window = f"{limit.window.describe()}, {limit.mode}"
        base = {"id": limit.id, "scope": scope_text(limit), "metric": limit.metric}
        base.update(window=limit.window.describe(), mode=limit.mode)
        if not subjects:
            rows.append(
                [limit.id, scope_text(limit), "(none yet)", show(limit.amount), window, "", "", "", ""]
            )
            records.append({**base, "subject": None, "limit": str(limit.amount)})
        for subject in subjects:
            s = store.standing(limit, subject, now)
            rows.append(
                [
                    limit.id,
                    scope_text(limit),
                    subject.replace("&", ", ") or "-",
                    show(s.allowed),
                    window,
                    show(s.spent),
                    show(s.reserved),
                    show(s.remaining),
                    s.resets_at.strftime("%Y-%m-%d %H:%M") if s.resets_at else "never",
                ]
            )
            records.append(
                {
                    **base,
                    "subject": subject,
                    "limit": str(s.allowed),
                    "spent": str(s.spent),
                    "reserved": str(s.reserved),
                    "left": str(s.remaining),
                    "resets_at": s.resets_at.isoformat() if s.resets_at else None,
                }
            )
    if fmt != "table":
        _print_records(records, fmt)
        return
    headers = ("id", "scope", "subject", "limit", "per", "spent", "reserved", "left", "resets (UTC)")
    columns = [
        Column(h, [r[i] for r in rows], numeric=h in ("limit", "spent", "reserved", "left"))
        for i, h in enumerate(headers)
    ]
    for c in columns:
        c.keep = c.header in ("id", "scope", "subject", "limit", "per", "spent", "left")
        c.fold = c.header in ("scope", "subject", "per", "resets (UTC)")
    print_columns(console, columns, f"{len(L.limits())} limit(s)", "")


_FIELDS = (
    "id",
    "scope",
    "subject",
    "metric",
    "limit",
    "window",
    "mode",
    "spent",
    "reserved",
    "left",
    "resets_at",
)


def _print_records(records: list[dict[str, Any]], fmt: str) -> None:
    """`limits list --format csv|json`: one record per limit and subject, amounts as exact decimals."""
    import csv
    import io
    import json

    full = [{f: r.get(f) for f in _FIELDS} for r in records]
    if fmt == "json":
        console.print_json(json.dumps(full))
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: safe_cell(v) for k, v in record.items()} for record in full)
    console.out(buffer.getvalue(), end="", highlight=False)


@limits_app.command("load")
def load_cmd(
    path: Annotated[str, typer.Argument(metavar="FILE", help="A TOML file of [[limits]] tables")],
    ledger: LedgerOpt = None,
) -> None:
    """Create or replace the limits of a TOML file (all or nothing; every problem is listed)."""
    from llmledger.sdk import limits as L

    open_ledger(ledger, must_exist=False)
    for limit in L.load_limits(path):
        console.print(_describe(limit))


@limits_app.command("rm")
def rm_cmd(
    limit_id: Annotated[str, typer.Argument(metavar="ID", help="The limit's id (see `limits list`)")],
    ledger: LedgerOpt = None,
) -> None:
    """Remove a limit (its counters, reservations and credit go with it)."""
    from llmledger.sdk import limits as L

    open_ledger(ledger)
    if not L.delete_limit(limit_id):
        fail(f"no limit with id {limit_id!r} (see `llmledger limits list`)")
    console.print(Text(f"removed {limit_id}"))


@limits_app.command("top-up")
def top_up_cmd(
    limit_id: Annotated[str, typer.Argument(metavar="ID", help="A lifetime limit's id (see `limits list`)")],
    amount: Annotated[str, typer.Argument(metavar="AMOUNT", help="Credit to add, in the limit's metric")],
    ledger: LedgerOpt = None,
    tenant: Annotated[str | None, label("tenant (for a limit on each tenant)")] = None,
    user: Annotated[str | None, label("user (for a limit on each user)")] = None,
    org: Annotated[str | None, label("org (for a limit on each org)")] = None,
    feature: Annotated[str | None, label("feature (for a limit on each feature)")] = None,
    agent: Annotated[str | None, label("agent (for a limit on each agent)")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(metavar="NAME=VALUE", help="The tag value, for a limit on each value")
    ] = None,
) -> None:
    """Add prepaid credit to a lifetime limit (name the subject of a limit on each user, tenant...)."""
    from llmledger.sdk import limits as L

    scope = {"tenant": tenant, "user": user, "org": org, "feature": feature, "agent": agent}
    given: dict[str, object] = {k: v for k, v in scope.items() if v is not None}
    tags = parse_tags(tag)
    if tags:
        given["tags"] = tags
    open_ledger(ledger)
    if all(limit.id != limit_id for limit in L.limits()):
        fail(f"no limit with id {limit_id!r} (see `llmledger limits list`)")
    total = L.top_up(limit_id, amount, **given)
    console.print(Text(f"{limit_id}: {total} granted in top-ups so far"))


@app.command()
def reconcile(ledger: LedgerOpt = None) -> None:
    """Prove every limit's counters and the rollups equal the ledger's events (exit 1 and list the
    differences if not)."""
    from llmledger.cli.rollups_cmd import show_differences
    from llmledger.sdk import limits as L
    from llmledger.sdk import runtime as _rt

    open_ledger(ledger)
    diffs = L.reconcile()
    drift = _rt.current().ledger.check_rollups()
    if not diffs and not drift:
        console.print(Text(f"ok: the counters of {len(L.limits())} limit(s) equal the ledger's events"))
        console.print(Text("ok: the rollups equal the ledger's events"))
        return
    for d in diffs:
        where = f"{d['limit_id']} {d['subject'] or '-'} bucket {d['bucket']}"
        console.print(Text(f"{where}: ledger {d['ledger']} counter {d['counter']}"))
    show_differences(drift)
    if drift:
        console.print(Text("run `llmledger rollups rebuild` to recompute the rollups"))
    raise typer.Exit(1)
