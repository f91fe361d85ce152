"""`llmledger demo`: the command (the tour itself is in `llmledger.cli.demo`, which needs the SDKs)."""

from __future__ import annotations

from typing import Annotated

import typer

from llmledger.cli.app import app, console, fail

__all__ = ["demo"]


@app.command()
def demo(
    ledger: Annotated[
        str | None,
        typer.Option(
            metavar="URL|PATH",
            help="Ledger for the demo [default: a fresh temporary folder, removed afterwards]. "
            "A ledger holding other events is refused.",
        ),
    ] = None,
    calls: Annotated[
        int, typer.Option(min=1, max=10_000, metavar="N", help="How many LLM calls to simulate")
    ] = 60,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary ledger (its path is printed) to explore it")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Then serve the demo ledger over HTTP (prints its URL and an admin key)"
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="With --serve: the address to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="With --serve: the port (0: any free port)")
    ] = 8787,
) -> None:
    """A self-contained tour: real openai/anthropic clients against an in-process fake provider."""
    try:
        from llmledger.cli.demo import run_demo
    except ImportError as exc:
        fail(f"the demo needs the SDKs: pip install 'llmledger[openai,anthropic]' ({exc})")
    then = None
    if serve:
        from llmledger.cli.demo_serve import serve_ledger

        def then(path: str) -> None:
            serve_ledger(console, path, host, port)

    run_demo(console, ledger, calls, keep=keep, then=then)
