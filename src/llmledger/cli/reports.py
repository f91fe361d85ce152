"""`llmledger report` and `llmledger events`: read-only views of a ledger."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from llmledger.cli.app import FormatOpt, LedgerOpt, SinceOpt, UntilOpt, app, console, fail, label, open_ledger

__all__ = ["events_cmd", "report"]

TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", metavar="NAME=VALUE", help="Only events with this tag (repeatable)"),
]


def check_format(fmt: str) -> None:
    """Fail unless `fmt` is one of the formats."""
    from llmledger.cli.render import FORMATS

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def parse_tags(items: list[str] | None, *, star: bool = False) -> dict[str, str]:
    """`--tag plan=free --tag team=a` as a dict; fails naming a malformed item."""
    from llmledger.errors import InvalidQueryError
    from llmledger.storage.queries import tag_pairs

    message = f"--tag must be name=value{' (value may be *)' if star else ''}, got {{item}}"
    try:
        return tag_pairs(items, "=", empty_values=False, message=message)
    except InvalidQueryError as exc:
        fail(str(exc))


def check_times(*bounds: str | None) -> None:
    """Fail on a `--since` / `--until` that is not a time (before any ledger is opened)."""
    from llmledger._time import parse_time_bound

    for bound in bounds:
        parse_time_bound(bound)


def filters(tags: list[str] | None, **labels: str | None) -> dict[str, Any]:
    """The query filters the options name (options left out filter nothing)."""
    from llmledger.events.schema import STATUSES

    status = labels.get("status")
    if status is not None and status not in STATUSES:
        fail(f"--status must be one of {', '.join(sorted(STATUSES))}, got {status!r}")
    for name, value in labels.items():
        if value is not None and not value.strip():
            fail(f"--{name.replace('_', '-')} must not be empty")
    from llmledger.storage.queries import text_filters

    out = text_filters(labels, None)  # the API's parser
    parsed = parse_tags(tags)
    if parsed:
        out["tags"] = parsed
    return out


@app.command()
def report(
    by: Annotated[
        str,
        typer.Option(
            "--by",
            metavar="KEYS",
            help="Group by, a comma list of: tenant, user, org, feature, agent, model, requested_model, "
            "provider, endpoint, status, day, month, tag:<name>. Day and month groups are sorted by date.",
        ),
    ] = "tenant,model",
    since: SinceOpt = "30d",
    until: UntilOpt = None,
    fmt: FormatOpt = "table",
    ledger: LedgerOpt = None,
    tenant: Annotated[str | None, label("tenant")] = None,
    user: Annotated[str | None, label("user")] = None,
    org: Annotated[str | None, label("org")] = None,
    feature: Annotated[str | None, label("feature")] = None,
    agent: Annotated[str | None, label("agent")] = None,
    model: Annotated[str | None, label("model (as answered)")] = None,
    requested_model: Annotated[str | None, label("model (as requested)")] = None,
    provider: Annotated[str | None, label("provider")] = None,
    tag: TagOpt = None,
) -> None:
    """Spend and tokens per group, most expensive first (by date for day / month)."""
    import llmledger
    from llmledger.cli.render import render_usage

    check_format(fmt)
    keys = [k.strip() for k in by.split(",")]
    if not by.strip() or not all(keys):
        fail(f"--by needs group keys separated by commas (e.g. tenant,model), got {by!r}")
    from llmledger.storage.queries import group_expression

    for key in keys:
        group_expression(key, "sqlite")  # an unknown key raises InvalidQueryError, before opening
    check_times(since, until)
    wanted = filters(
        tag,
        tenant=tenant,
        user=user,
        org=org,
        feature=feature,
        agent=agent,
        model=model,
        requested_model=requested_model,
        provider=provider,
    )
    open_ledger(ledger)
    rows = llmledger.usage(keys, since=since, until=until, **wanted)
    render_usage(rows, keys, fmt, console, f"LLM spend by {', '.join(keys)} (since {since or 'the start'})")


@app.command("events")
def events_cmd(
    limit: Annotated[int, typer.Option(min=1, max=2**62, metavar="N", help="How many events")] = 20,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: FormatOpt = "table",
    ledger: LedgerOpt = None,
    tenant: Annotated[str | None, label("tenant")] = None,
    user: Annotated[str | None, label("user")] = None,
    org: Annotated[str | None, label("org")] = None,
    feature: Annotated[str | None, label("feature")] = None,
    agent: Annotated[str | None, label("agent")] = None,
    model: Annotated[str | None, label("model (as answered)")] = None,
    requested_model: Annotated[str | None, label("model (as requested)")] = None,
    provider: Annotated[str | None, label("provider")] = None,
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="Only events with this status: ok, error, cancelled")
    ] = None,
    tag: TagOpt = None,
) -> None:
    """The most recent usage events, newest first."""
    import llmledger
    from llmledger.cli.render import render_events

    check_format(fmt)
    check_times(since, until)
    wanted = filters(
        tag,
        tenant=tenant,
        user=user,
        org=org,
        feature=feature,
        agent=agent,
        model=model,
        requested_model=requested_model,
        provider=provider,
        status=status,
    )
    open_ledger(ledger)
    render_events(llmledger.events(limit=limit, since=since, until=until, **wanted), fmt, console)
