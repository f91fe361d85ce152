"""The `llmledger` command line: the app, its shared options, opening ledgers and reporting errors.

Every value and every user input shown goes through `rich.text.Text` (never parsed as markup), help
texts are plain (`rich_markup_mode=None`), and an llmledger error is one clean line on stderr with
exit status 2 (the traceback only with `llmledger --debug ...` or `LLMLEDGER_DEBUG=1`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from llmledger._version import __version__
from llmledger.errors import LlmLedgerError

__all__ = ["app", "console", "errors", "fail", "main", "open_ledger"]


class _Group(TyperGroup):
    """Turns an llmledger error raised by any command into `error: ...` and exit status 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LlmLedgerError as exc:
            if _debug():
                raise
            fail(str(exc))


app = typer.Typer(
    name="llmledger",
    help="Self-hosted metering and spend control for LLM apps.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    cls=_Group,
)
# markup=False: no string printed is ever read as markup (data such as a tenant "team[/x]" stays as is)
console = Console(highlight=False, markup=False)
errors = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
_DEBUG = {"on": False}


def _debug() -> bool:
    return _DEBUG["on"] or os.environ.get("LLMLEDGER_DEBUG", "").strip().lower() in ("1", "true", "yes")


def _show_version(value: bool) -> None:
    if value:
        console.print(Text(f"llmledger {__version__}"))
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error (also LLMLEDGER_DEBUG=1).")
    ] = False,
) -> None:
    """Self-hosted metering and spend control for LLM apps."""
    _DEBUG["on"] = debug


LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        envvar="LLMLEDGER_DB",
        metavar="URL|PATH",
        help="Ledger: a SQLite file path or a database URL [default: ./llmledger.db]",
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table, csv or json")]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        metavar="WHEN",
        help="Start: a duration ago (30d, 24h, 2w, 1y), mtd (month to date), ytd, or an ISO date",
    ),
]
UntilOpt = Annotated[
    str | None, typer.Option(metavar="WHEN", help="End (exclusive): a duration ago, mtd, ytd or an ISO date")
]


def label(what: str) -> Any:
    """A `--tenant`-style filter option."""
    return typer.Option(metavar="NAME", help=f"Only this {what}")


def fail(message: str, status: int = 2) -> NoReturn:
    """Print `error: message` on stderr (the message is never read as markup) and exit."""
    errors.print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(status)


def _fail(message: str) -> typer.Exit:
    """Print `error: message` and return the exit to raise (`raise _fail(...)`)."""
    errors.print(Text.assemble(("error: ", "bold red"), message))
    return typer.Exit(2)


def open_ledger(ledger: str | None, *, must_exist: bool = True) -> None:
    """Point llmledger at `ledger` (or LLMLEDGER_DB / ./llmledger.db) without instrumenting anything.

    Read-only commands pass `must_exist=True`: a SQLite path that does not exist is an error
    ("no ledger at PATH"), never a new empty ledger that reports "nothing was spent".
    """
    import llmledger
    from llmledger.sdk.runtime import DEFAULT_DB
    from llmledger.storage.engine import sqlite_path

    target = ledger if ledger is not None else os.environ.get("LLMLEDGER_DB") or DEFAULT_DB
    path = sqlite_path(target)
    if must_exist and path is not None and not Path(path).is_file():
        fail(f"no ledger at {path} (check --ledger or LLMLEDGER_DB; `llmledger doctor` shows what is found)")
    llmledger.init(ledger=target, instrument=False)


def main() -> None:
    """Entry point of the `llmledger` script."""
    if "--debug" in sys.argv[1:]:
        _DEBUG["on"] = True
    app()
