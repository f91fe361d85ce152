"""The `llmledger` command-line interface (typer + rich)."""

from llmledger.cli.app import app, main

__all__ = ["app", "main"]
