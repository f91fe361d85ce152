"""The `llmledger` command line."""

from llmledger.cli import (
    limits_cmd,  # registers `limits` and `reconcile` on the app
    server_cmd,  # registers `serve` and `keys`
)
from llmledger.cli.app import app, main

__all__ = ["app", "limits_cmd", "main", "server_cmd"]
