"""Typed errors raised by llmledger's public API.

Every error says what was wrong and what to do about it. Input errors are `ValueError` subclasses so
callers that already catch `ValueError` keep working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidEventError",
    "InvalidQueryError",
    "InvalidUsageError",
    "LedgerError",
    "LlmLedgerError",
    "PriceOverrideError",
]


class LlmLedgerError(Exception):
    """Base class of every error llmledger raises on purpose."""


class InvalidUsageError(LlmLedgerError, ValueError):
    """Usage given to `track()` / `track_usage()` is not valid (negative tokens, empty model, ...)."""


class InvalidEventError(LlmLedgerError, ValueError):
    """A usage event's wire form (JSON / dict) does not match the documented schema."""


class InvalidQueryError(LlmLedgerError, ValueError):
    """A ledger query has an unknown filter, group-by column or time bound."""


class ConfigError(LlmLedgerError, ValueError):
    """`init()` or an environment variable was given a value llmledger cannot use."""


class PriceOverrideError(ConfigError):
    """The price overrides file (TOML) is malformed; the message names the entry and the field."""


class LedgerError(LlmLedgerError):
    """The ledger (database) could not be opened or migrated."""
