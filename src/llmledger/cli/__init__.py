"""The `llmledger` command line."""

from llmledger.cli import limits_cmd  # registers `limits` and `reconcile` on the app
from llmledger.cli.app import app, main

__all__ = ["app", "limits_cmd", "main"]
