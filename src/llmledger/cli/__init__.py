"""The `llmledger` command line."""

# importing the command modules registers their commands on the app
from llmledger.cli import (
    demo_cmd,
    doctor,
    limits_cmd,
    prices_cmd,
    proxy_cmd,
    quarantine_cmd,
    reports,
    retention_cmd,
    rollups_cmd,
    server_cmd,
)
from llmledger.cli.app import app, main

__all__ = [
    "app",
    "demo_cmd",
    "doctor",
    "limits_cmd",
    "main",
    "prices_cmd",
    "proxy_cmd",
    "quarantine_cmd",
    "reports",
    "retention_cmd",
    "rollups_cmd",
    "server_cmd",
]
