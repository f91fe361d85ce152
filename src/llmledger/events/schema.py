"""The usage event's schema: its field names, the token convention's subset rules, the billed
units that are not tokens, and the bounds every store holds (see docs/usage-event.schema.json)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Literal

__all__ = [
    "ATTRIBUTION_FIELDS",
    "COST_SOURCES",
    "MAX_AMOUNT",
    "MAX_DURATION_MS",
    "MAX_LABEL",
    "MAX_REQUEST_ID",
    "MAX_TAGS",
    "MAX_TEXT",
    "MAX_TOKENS",
    "MIN_EXPONENT",
    "NON_TOKEN_UNITS",
    "SCHEMA_VERSION",
    "STATUSES",
    "SUBSETS",
    "TEXT_LIMITS",
    "TOKEN_FIELDS",
    "TS_MAX",
    "TS_MIN",
    "CostSource",
    "Status",
]

SCHEMA_VERSION = 1

CostSource = Literal["catalog", "provider", "override", "manual"]
Status = Literal["ok", "error", "cancelled"]
COST_SOURCES: frozenset[str] = frozenset(("catalog", "provider", "override", "manual"))
STATUSES: frozenset[str] = frozenset(("ok", "error", "cancelled"))

TOKEN_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "cache_audio_read_tokens",
    "input_image_tokens",
    "output_image_tokens",
)
"""Every token count an event carries, in wire order."""

# (part, whole): `part` is a subset of `whole`, so part <= whole must hold.
SUBSETS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("cache_read_tokens", "cache_write_tokens"), "input_tokens"),
    (("cache_write_1h_tokens",), "cache_write_tokens"),
    (("reasoning_tokens",), "output_tokens"),
    (("input_audio_tokens", "input_image_tokens"), "input_tokens"),
    (("cache_audio_read_tokens",), "cache_read_tokens"),
    (("cache_audio_read_tokens",), "input_audio_tokens"),
    (("output_audio_tokens", "output_image_tokens"), "output_tokens"),
)

NON_TOKEN_UNITS: frozenset[str] = frozenset(
    (
        "input_characters",
        "input_text_messages",
        "audio_seconds",
        "input_audio_seconds",
        "output_audio_seconds",
        "input_pixels",
        "input_document_pages",
        "input_annotated_document_pages",
        "rerank_searches",
        "web_searches",
        "social_searches",
        "storage_searches",
        "code_executions",
    )
)
"""Billed units that are not tokens (named as in the genai-prices unit registry)."""

ATTRIBUTION_FIELDS: tuple[str, ...] = ("tenant", "user", "org", "feature", "agent", "session")
MAX_LABEL = 256
"""The longest attribution label, tag name or tag value (characters)."""

# Bounds: what every store holds, with headroom. A count fits a signed 64-bit integer ~900 million
# times over, so no sum over a ledger can overflow; an amount keeps its exact decimal in any store;
# a timestamp stays inside every calendar computation (windows, months) with room to spare.
MAX_TOKENS = 10**10
"""The largest token count one event may carry."""
MAX_AMOUNT = Decimal(10**9)
"""The largest cost (USD) or billed unit amount one event may carry."""
MIN_EXPONENT = -30
"""The finest decimal an amount may carry (1e-30)."""
MAX_TEXT = 256
"""The longest label, tag, provider, model, endpoint, tier or error type (characters)."""
MAX_REQUEST_ID = 128
"""The longest request id (characters)."""
TEXT_LIMITS: dict[str, int] = {
    "provider": 64,
    "model": 256,
    "requested_model": 256,
    "endpoint": 64,
    "service_tier": 32,
    "error_type": 128,
    "request_id": MAX_REQUEST_ID,
    "cost_source": 16,
    "unpriced_reason": 4096,
}
"""The longest value of each text field (characters): the ledger's column widths."""
MAX_TAGS = 64
"""The most tags one event may carry."""
MAX_DURATION_MS = 1e10
"""The longest duration (ms, ~115 days)."""
TS_MIN = datetime(2000, 1, 1, tzinfo=timezone.utc)
TS_MAX = datetime(2100, 1, 1, tzinfo=timezone.utc)
"""Timestamps must fall in [TS_MIN, TS_MAX)."""
