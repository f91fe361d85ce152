"""The in-process SDK: `init()`, manual tracking, and ledger queries."""

from llmledger.sdk.queries import events, flush, spend, usage
from llmledger.sdk.runtime import Config, Runtime, Stats, init, shutdown
from llmledger.sdk.track import UsageTracker, track, track_usage

__all__ = [
    "Config",
    "Runtime",
    "Stats",
    "UsageTracker",
    "events",
    "flush",
    "init",
    "shutdown",
    "spend",
    "track",
    "track_usage",
    "usage",
]
