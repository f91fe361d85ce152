"""The usage event: its type, validation, wire form and identifiers."""

from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.events.schema import (
    ATTRIBUTION_FIELDS,
    NON_TOKEN_UNITS,
    SCHEMA_VERSION,
    TOKEN_FIELDS,
    CostSource,
    Status,
)

__all__ = [
    "ATTRIBUTION_FIELDS",
    "NON_TOKEN_UNITS",
    "SCHEMA_VERSION",
    "TOKEN_FIELDS",
    "CostSource",
    "Status",
    "UsageEvent",
    "uuid7",
]
