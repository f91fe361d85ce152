"""Transport: how events travel from the caller's thread to a sink (the ledger, later a server)."""

from llmledger.transport.writer import BackgroundWriter, WriterCounters

__all__ = ["BackgroundWriter", "WriterCounters"]
