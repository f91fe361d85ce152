"""Rendering reports and events as a rich table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from llmledger.events.event import UsageEvent
from llmledger.storage.queries import UsageRow

__all__ = ["FORMATS", "render_events", "render_usage"]

FORMATS = ("table", "csv", "json")
_ROW_FIELDS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_requests",
    "errors",
)


def _usd(value: Decimal | None) -> str:
    if value is None:
        return "unpriced"
    return f"${value:,.6f}" if value < 1 else f"${value:,.2f}"


def usage_records(rows: Sequence[UsageRow]) -> list[dict[str, Any]]:
    """Rows as plain dicts (cost as an exact decimal string)."""
    out = []
    for row in rows:
        record: dict[str, Any] = dict(row.group)
        for f in _ROW_FIELDS:
            value = getattr(row, f)
            record[f] = str(value) if isinstance(value, Decimal) else value
        out.append(record)
    return out


def render_usage(
    rows: Sequence[UsageRow], group_by: Sequence[str], fmt: str, console: Console, title: str
) -> None:
    """Print a usage report in `fmt` (table, csv or json)."""
    if fmt == "json":
        console.print_json(json.dumps(usage_records(rows)))
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[*group_by, *_ROW_FIELDS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(usage_records(rows))
        console.out(buffer.getvalue(), end="", highlight=False)
        return
    table = Table(title=title, title_justify="left")
    for key in group_by:
        table.add_column(key)
    for name in ("requests", "input tok", "cached", "cache write", "output tok", "reasoning", "cost"):
        table.add_column(name, justify="right")
    total = Decimal(0)
    for row in rows:
        total += row.cost_usd
        cost = _usd(row.cost_usd) + (f" (+{row.unpriced_requests} unpriced)" if row.unpriced_requests else "")
        table.add_row(
            *[str(row.group[k]) if row.group[k] is not None else "-" for k in group_by],
            f"{row.requests:,}",
            f"{row.input_tokens:,}",
            f"{row.cache_read_tokens:,}",
            f"{row.cache_write_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.reasoning_tokens:,}",
            cost,
        )
    table.caption = f"total {_usd(total)} over {sum(r.requests for r in rows):,} requests"
    console.print(table)


def render_events(events: Sequence[UsageEvent], fmt: str, console: Console) -> None:
    """Print events in `fmt` (table, csv or json)."""
    if fmt == "json":
        console.print_json(json.dumps([e.to_dict() for e in events]))
        return
    if fmt == "csv":
        buffer = io.StringIO()
        records = [e.to_dict() for e in events]
        fields = list(records[0]) if records else ["event_id"]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for record in records:
            record["tags"] = json.dumps(record["tags"])
            record["units"] = json.dumps(record["units"])
            writer.writerow(record)
        console.out(buffer.getvalue(), end="", highlight=False)
        return
    table = Table(title=f"{len(events)} event(s), newest first", title_justify="left")
    for name in (
        "time (UTC)",
        "provider",
        "model",
        "tenant",
        "user",
        "feature",
        "in",
        "out",
        "cost",
        "status",
    ):
        table.add_column(name, justify="right" if name in ("in", "out", "cost") else "left")
    for e in events:
        table.add_row(
            e.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
            e.provider,
            e.model,
            e.tenant or "-",
            e.user or "-",
            e.feature or "-",
            f"{e.input_tokens:,}",
            f"{e.output_tokens:,}",
            _usd(e.cost_usd),
            e.status if e.status == "ok" else f"{e.status} ({e.error_type})",
        )
    console.print(table)
