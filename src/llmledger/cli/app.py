"""The `llmledger` command line: reports, events, prices, limits and the demo."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Annotated, Any

import typer
from rich.console import Console

from llmledger.errors import LlmLedgerError

__all__ = ["app", "main"]

app = typer.Typer(
    name="llmledger",
    help="Self-hosted metering and spend control for LLM apps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Reports are wide: when piped (no terminal to measure), don't squeeze them into 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
errors = Console(stderr=True, soft_wrap=True)

LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger", envvar="LLMLEDGER_DB", help="Ledger URL or SQLite path [default: ./llmledger.db]"
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, csv or json")]
SinceOpt = Annotated[str | None, typer.Option(help="Start: a duration (30d, 24h) or an ISO date")]
UntilOpt = Annotated[str | None, typer.Option(help="End (exclusive): a duration ago or an ISO date")]
Label = Annotated[str | None, typer.Option()]


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _check_format(fmt: str) -> None:
    from llmledger.cli.render import FORMATS

    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _filters(**labels: str | None) -> dict[str, Any]:
    return {k: v for k, v in labels.items() if v is not None}


def _open(ledger: str | None) -> None:
    import llmledger

    llmledger.init(ledger=ledger)


@app.command()
def report(
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="Group by: comma list of tenant, user, org, feature, "
            "agent, model, provider, day, month, tag:<name>",
        ),
    ] = "tenant,model",
    since: SinceOpt = "30d",
    until: UntilOpt = None,
    fmt: FormatOpt = "table",
    ledger: LedgerOpt = None,
    tenant: Label = None,
    user: Label = None,
    org: Label = None,
    feature: Label = None,
    model: Label = None,
    provider: Label = None,
) -> None:
    """Spend and tokens per group, most expensive first."""
    import llmledger
    from llmledger.cli.render import render_usage

    _check_format(fmt)
    keys = [k.strip() for k in by.split(",") if k.strip()]
    try:
        _open(ledger)
        rows = llmledger.usage(
            keys,
            since=since,
            until=until,
            **_filters(tenant=tenant, user=user, org=org, feature=feature, model=model, provider=provider),
        )
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    render_usage(rows, keys, fmt, console, f"LLM spend by {', '.join(keys)} (since {since or 'the start'})")


@app.command("events")
def events_cmd(
    limit: Annotated[int, typer.Option(min=1, help="How many events")] = 20,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: FormatOpt = "table",
    ledger: LedgerOpt = None,
    tenant: Label = None,
    user: Label = None,
    org: Label = None,
    feature: Label = None,
    model: Label = None,
    provider: Label = None,
    status: Label = None,
) -> None:
    """The most recent usage events."""
    import llmledger
    from llmledger.cli.render import render_events

    _check_format(fmt)
    try:
        _open(ledger)
        found = llmledger.events(
            limit=limit,
            since=since,
            until=until,
            **_filters(
                tenant=tenant,
                user=user,
                org=org,
                feature=feature,
                model=model,
                provider=provider,
                status=status,
            ),
        )
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    render_events(found, fmt, console)


@app.command()
def prices(
    model: Annotated[str, typer.Argument(help="Model name as the provider answers it, e.g. gpt-4o-mini")],
    provider: Annotated[str | None, typer.Option(help="Provider id (openai, anthropic, google, ...)")] = None,
    at: Annotated[str | None, typer.Option(help="Price at this ISO date/time (price history)")] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="Service tier (flex, priority, ...)")] = None,
    prices_file: Annotated[
        str | None, typer.Option("--prices", envvar="LLMLEDGER_PRICES", help="Price overrides TOML file")
    ] = None,
) -> None:
    """Show the price llmledger would use for MODEL, and where it comes from."""
    from llmledger._time import parse_time_bound
    from llmledger.pricing import Overrides, Pricer
    from llmledger.pricing.catalog import UnknownPrice

    try:
        when = parse_time_bound(at) or datetime.now(timezone.utc)
        quote = Pricer(Overrides.load(prices_file) if prices_file else None).quote(
            provider, model, when, tier
        )
    except UnknownPrice as exc:
        raise _fail(f"{exc}") from exc
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"[bold]{quote.provider}[/bold] {quote.model}  →  {quote.matched}")
    console.print(
        f"source: {quote.source} ({quote.origin}); at {quote.at:%Y-%m-%d %H:%M} UTC"
        + (f"; tier {quote.service_tier}" if quote.service_tier else "")
    )
    for key, value in quote.price_lines():
        console.print(f"  {key:<24} {value}")
    if quote.adjustments:
        console.print(f"multiplier ×{quote.multiplier} from {', '.join(quote.adjustments)}")


@app.command()
def demo(
    ledger: Annotated[
        str | None, typer.Option(help="Ledger for the demo [default: a fresh temporary file]")
    ] = None,
    calls: Annotated[int, typer.Option(min=1, max=10_000, help="How many LLM calls to simulate")] = 60,
) -> None:
    """A self-contained tour: real openai/anthropic clients against an in-process fake provider."""
    from llmledger.cli.demo import run_demo

    try:
        run_demo(console, ledger, calls)
    except ImportError as exc:
        raise _fail(f"the demo needs the SDKs: pip install 'llmledger[openai,anthropic]' ({exc})") from exc


def main() -> None:
    """Entry point of the `llmledger` script."""
    app()
