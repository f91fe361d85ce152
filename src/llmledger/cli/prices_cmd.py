"""`llmledger prices MODEL`: the price llmledger would use, and where it comes from."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated

import typer
from rich.text import Text

from llmledger.cli.app import app, console, fail

__all__ = ["SERVICE_TIERS", "prices"]

_AMOUNT = re.compile(r"\$([0-9.]+E[-+]?[0-9]+)")

SERVICE_TIERS = ("auto", "default", "standard", "flex", "scale", "priority", "batch")
"""Service tiers the providers name (OpenAI: auto/default/flex/scale/priority; Anthropic:
standard/priority/batch; Gemini: standard/flex/priority)."""


@app.command()
def prices(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="Model name as the provider answers it, e.g. gpt-4o-mini")
    ],
    provider: Annotated[
        str | None, typer.Option(metavar="ID", help="Provider id (openai, anthropic, google, ...)")
    ] = None,
    at: Annotated[
        str | None, typer.Option(metavar="WHEN", help="Price at this ISO date/time (price history)")
    ] = None,
    tier: Annotated[
        str | None, typer.Option("--tier", metavar="TIER", help=f"Service tier: {', '.join(SERVICE_TIERS)}")
    ] = None,
    prices_file: Annotated[
        str | None,
        typer.Option("--prices", envvar="LLMLEDGER_PRICES", metavar="FILE", help="Price overrides TOML file"),
    ] = None,
) -> None:
    """Show the price llmledger would use for MODEL, and where it comes from."""
    from llmledger._time import parse_time_bound
    from llmledger.pricing import Overrides, Pricer
    from llmledger.pricing.catalog import UnknownPrice

    if tier is not None and tier not in SERVICE_TIERS:
        fail(f"--tier must be one of {', '.join(SERVICE_TIERS)}, got {tier!r}")
    when = parse_time_bound(at) or datetime.now(timezone.utc)
    overrides = Overrides.load(prices_file) if prices_file else None
    if provider is None and overrides is not None:
        # an override names its provider: find it, so `--prices FILE` alone is honoured
        owners = {r.provider for r in overrides.rules if r.since <= when and r.matches(r.provider, model)}
        if len(owners) == 1:
            provider = owners.pop()
    try:
        quote = Pricer(overrides).quote(provider, model, when, tier)
    except UnknownPrice as exc:
        fail(str(exc))
    console.print(Text(f"{quote.provider} {quote.model}  →  {quote.matched}", style="bold"))
    console.print(
        Text(
            f"source: {quote.source} ({quote.origin}); at {quote.at:%Y-%m-%d %H:%M} UTC"
            + (f"; tier {quote.service_tier}" if quote.service_tier else "")
        )
    )
    for key, value in quote.price_lines():  # "$1E-7" -> "$0.0000001": never an exponent
        value = _AMOUNT.sub(lambda m: f"${Decimal(m.group(1)):f}", value)
        console.print(Text(f"  {key:<24} {value}"))
    if quote.adjustments:
        console.print(Text(f"multiplier ×{quote.multiplier} from {', '.join(quote.adjustments)}"))
