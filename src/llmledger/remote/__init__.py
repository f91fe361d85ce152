"""Talking to a llmledger server: `Client` (track and read over HTTP) and its HTTP transport."""

from llmledger.remote.client import Client

__all__ = ["Client"]
