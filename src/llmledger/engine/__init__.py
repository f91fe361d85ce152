"""The engine: one ledger's recording, queries and keys, with no process globals and no knowledge of
who calls it. The HTTP server is a door onto it (and the gateway and the in-process SDK will be)."""

from llmledger.engine.engine import Engine
from llmledger.engine.recording import IngestResult, Rejected

__all__ = ["Engine", "IngestResult", "Rejected"]
