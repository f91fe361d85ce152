"""Rendering reports and events as a rich table, CSV or JSON.

Tables never read data as markup (every cell is a `Text`), and at any width they never cut a cost,
a count or a model name: label columns (tenant, user, ...) fold onto more lines, token columns
that are zero everywhere are left out, and if the table still does not fit, the least important
columns are dropped and a note under the table says which (CSV and JSON always have them all).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmledger._csv import safe_cell
from llmledger.events.event import UsageEvent
from llmledger.storage.queries import UsageRow

__all__ = ["FORMATS", "Column", "money", "print_columns", "render_events", "render_usage"]

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


def money(value: Decimal | None) -> str:
    """`$12.35`, `$0.0105`, `$0.0000001`: never an exponent; amounts under $1 keep every digit
    (up to 10 decimals), amounts from $1 on are shown to the cent."""
    if value is None:
        return "unpriced"
    if value.copy_abs() >= 1:
        return f"${value:,.2f}"
    text = f"{value.quantize(Decimal('1e-10')).normalize():f}" if value else "0"
    if "." not in text:
        text += ".00"
    elif len(text.split(".")[1]) < 2:
        text += "0"
    return f"${text}"


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


@dataclass
class Column:
    """One column of a table: its header and cells, and how it may give way when space is short."""

    header: str
    cells: list[str]
    numeric: bool = False
    keep: bool = False
    """Never dropped (costs, counts, models, group keys)."""
    fold: bool = False
    """May fold onto several lines (labels) instead of being dropped."""

    def width(self) -> int:
        return max([len(self.header), *(len(c) for c in self.cells)])

    def least(self) -> int:
        """The narrowest this column gets before optional columns are dropped instead."""
        return min(self.width(), 12) if self.fold else self.width()


def _fit(columns: list[Column], width: int) -> tuple[list[Column], list[str]]:
    """The columns to show in `width`, and those dropped: labels may fold to 12 characters, then
    optional columns go (from the end) until the rest fits; costs, counts and models never fold."""
    shown = list(columns)
    dropped: list[str] = []
    while sum(c.least() for c in shown) + 2 * (len(shown) - 1) > width:
        optional = [c for c in shown if not c.keep]
        if not optional:
            break
        gone = optional[-1]
        shown.remove(gone)
        dropped.append(gone.header)
    return shown, dropped


def print_columns(console: Console, columns: list[Column], title: str, caption: str) -> None:
    """Print the columns as a table that fits the console: folds labels, drops optional columns."""
    shown, dropped = _fit(columns, console.width)
    table = Table(
        title=Text(title),
        title_justify="left",
        caption=Text(caption),
        caption_justify="left",
        box=None,
        pad_edge=False,
        header_style="bold underline",
    )
    for c in shown:
        table.add_column(
            Text(c.header),
            justify="right" if c.numeric else "left",
            no_wrap=not c.fold,
            overflow="fold",
            min_width=c.least(),
        )
    for i in range(len(shown[0].cells) if shown else 0):
        table.add_row(*[Text(c.cells[i]) for c in shown])
    console.print(table)
    if dropped:
        console.print(
            Text(f"({', '.join(dropped)} not shown at this width: widen the terminal or use --format csv)")
        )


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
        writer.writerows({k: safe_cell(v) for k, v in record.items()} for record in usage_records(rows))
        console.out(buffer.getvalue(), end="", highlight=False)
        return
    groups = [
        Column(
            k, ["-" if r.group[k] is None else str(r.group[k]) for r in rows], keep=True, fold=k != "model"
        )
        for k in group_by
    ]
    # a row whose only calls are unpriced has no known cost: never shown as $0.00 (csv/json keep the
    # exact sum of the priced calls, with unpriced_requests beside it)
    shown = ["unpriced" if r.unpriced_requests and not r.cost_usd else money(r.cost_usd) for r in rows]
    cost = Column("cost", shown, numeric=True, keep=True)
    unpriced_counts = [r.unpriced_requests for r in rows]
    if any(unpriced_counts):  # unpriced calls have no cost: say how many, next to the cost
        counts_column = [f"{n:,}" if n else "" for n in unpriced_counts]
        cost_columns = [cost, Column("unpriced", counts_column, numeric=True, keep=True)]
    else:
        cost_columns = [cost]
    counts = [Column("requests", [f"{r.requests:,}" for r in rows], numeric=True, keep=True)]
    for header, name in (
        ("input tok", "input_tokens"),
        ("output tok", "output_tokens"),
        ("cached", "cache_read_tokens"),
        ("cache write", "cache_write_tokens"),
        ("reasoning", "reasoning_tokens"),
    ):
        values = [getattr(r, name) for r in rows]
        if any(values) or name in ("input_tokens", "output_tokens"):
            counts.append(Column(header, [f"{v:,}" for v in values], numeric=True))
    total = sum((r.cost_usd for r in rows), Decimal(0))
    caption = f"total {money(total)} over {sum(r.requests for r in rows):,} requests"
    unpriced = sum(r.unpriced_requests for r in rows)
    if unpriced:
        caption += f" ({unpriced:,} of them unpriced: not in the total)"
    print_columns(console, [*groups, *cost_columns, *counts], title, caption)


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
            writer.writerow({k: safe_cell(v) for k, v in record.items()})
        console.out(buffer.getvalue(), end="", highlight=False)
        return
    when = "%Y-%m-%d %H:%M:%S" if console.width >= 120 else "%m-%d %H:%M"  # narrow: room for labels
    columns = [
        Column("time (UTC)", [e.timestamp.strftime(when) for e in events], keep=True),
        Column("model", [e.model for e in events], keep=True),
        Column("cost", [money(e.cost_usd) for e in events], numeric=True, keep=True),
        Column("tenant", [e.tenant or "-" for e in events], keep=True, fold=True),
        Column("in", [f"{e.input_tokens:,}" for e in events], numeric=True),
        Column("out", [f"{e.output_tokens:,}" for e in events], numeric=True),
        Column("user", [e.user or "-" for e in events], fold=True),
        Column(
            "status",
            [e.status if e.status == "ok" else f"{e.status} ({e.error_type})" for e in events],
            fold=True,
        ),
        Column("feature", [e.feature or "-" for e in events], fold=True),
        Column("provider", [e.provider for e in events], fold=True),
    ]
    print_columns(console, columns, f"{len(events)} event(s), newest first", "")
