"""The ledger's schema (SQLAlchemy Core). Migrations in `migrations/versions` must match it.

Timestamps are stored as integer microseconds since the Unix epoch (UTC): exact, fast to index and
compare, and identical on SQLite and PostgreSQL. Money uses `ExactDecimal`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from llmledger.events.schema import TOKEN_FIELDS

__all__ = [
    "ExactDecimal",
    "alerts",
    "api_keys",
    "counters",
    "credits",
    "events",
    "forgotten",
    "limits",
    "meta",
    "metadata",
    "quarantine",
    "reservations",
    "rollups",
    "webhook_deliveries",
]


class ExactDecimal(TypeDecorator[Decimal]):
    """A `Decimal` stored without loss: NUMERIC on PostgreSQL, canonical text on SQLite.

    (SQLite's NUMERIC affinity would turn many decimals into binary floats.) Sums on SQLite use the
    `dsum` aggregate registered by `llmledger.storage.engine`, which adds Decimals exactly.
    """

    impl = sa.String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String())
        return dialect.type_descriptor(sa.Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


metadata = sa.MetaData()

_token_columns = [sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in TOKEN_FIELDS]

events = sa.Table(
    "llmledger_events",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("schema_version", sa.SmallInteger, nullable=False),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("requested_model", sa.String(256)),
    sa.Column("endpoint", sa.String(64)),
    sa.Column("service_tier", sa.String(32)),
    *_token_columns,
    sa.Column("units", sa.JSON),
    sa.Column("cost_usd", ExactDecimal()),
    sa.Column("cost_source", sa.String(16)),
    sa.Column("unpriced_reason", sa.Text),
    sa.Column("partially_priced", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cost_note", sa.Text),
    sa.Column("computed_cost_usd", ExactDecimal()),
    sa.Column("duration_ms", sa.Float),
    sa.Column("time_to_first_token_ms", sa.Float),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_type", sa.String(128)),
    sa.Column("request_id", sa.String(128)),
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("tenant", sa.String(256)),
    sa.Column("user", sa.String(256)),
    sa.Column("org", sa.String(256)),
    sa.Column("feature", sa.String(256)),
    sa.Column("agent", sa.String(256)),
    sa.Column("session", sa.String(256)),
    sa.Column("tags", sa.JSON),
    sa.Index("ix_llmledger_events_ts", "ts_us"),
    sa.Index("ix_llmledger_events_tenant_ts", "tenant", "ts_us"),
    sa.Index("ix_llmledger_events_user_ts", "user", "ts_us"),
)

limits = sa.Table(
    "llmledger_limits",
    metadata,
    sa.Column("limit_id", sa.String(64), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)
"""Spend limit definitions (`Limit.to_dict()`)."""


def _bucket_amounts(name: str) -> sa.Table:
    """A table of one Decimal `used` per (limit, subject, window bucket)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("limit_id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(1024), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("used", ExactDecimal(), nullable=False),
    )


counters = _bucket_amounts("llmledger_counters")
"""What each limit's subjects have used per window bucket; kept equal to the ledger's events plus
the spend of `forgotten`."""

forgotten = _bucket_amounts("llmledger_forgotten_spend")
"""What deleted events (retention, erasure) had used of each limit's window buckets: spent money
stays spent, so their counters keep it, and `reconcile` adds it to what the remaining events make."""

reservations = sa.Table(
    "llmledger_reservations",
    metadata,
    sa.Column("reservation_id", sa.String(36), primary_key=True),
    sa.Column("limit_id", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(1024), nullable=False),
    sa.Column("bucket", sa.BigInteger, nullable=False),
    sa.Column("amount", ExactDecimal(), nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Index("ix_llmledger_reservations_subject", "limit_id", "subject"),
)
"""Worst-case amounts held by calls in flight; removed with the call's event, or expired."""

credits = sa.Table(
    "llmledger_credits",
    metadata,
    sa.Column("limit_id", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(1024), primary_key=True),
    sa.Column("granted", ExactDecimal(), nullable=False),
)
"""Top-ups of lifetime (prepaid credit) limits."""

alerts = sa.Table(
    "llmledger_alerts",
    metadata,
    sa.Column("limit_id", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(1024), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("threshold", sa.String(16), primary_key=True),
    sa.Column("fired_us", sa.BigInteger, nullable=False),
)
"""Threshold alerts already fired (once per limit, subject and window)."""

meta = sa.Table(
    "llmledger_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
"""Small counters, e.g. `limits_version` (bumped on every limit change, so processes reload)."""

api_keys = sa.Table(
    "llmledger_api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("tenant", sa.String(256)),
    sa.Column("name", sa.String(256)),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("revoked_us", sa.BigInteger),
)
"""API keys of the server: only a SHA-256 of each secret is kept (a key is shown once, at creation)."""

quarantine = sa.Table(
    "llmledger_quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64)),
    sa.Column("quarantined_us", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
)
"""Events the writer could not store (a value no store holds), with the reason: listed and retried
by `llmledger quarantine list|retry`. `record` is the event's JSON wire form (ASCII-escaped)."""

webhook_deliveries = sa.Table(
    "llmledger_webhook_deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(36), primary_key=True),
    sa.Column("hook", sa.String(32), nullable=False),
    sa.Column("alert_key", sa.String(512), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_us", sa.BigInteger, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("done_us", sa.BigInteger),
    sa.Column("last_error", sa.String(256)),
    sa.UniqueConstraint("hook", "alert_key", name="uq_llmledger_webhook_deliveries_alert"),
    sa.Index("ix_llmledger_webhook_deliveries_due", "status", "next_us"),
)
"""Threshold alerts to POST to each webhook (`hook`: a digest of its URL): one row per webhook,
limit, subject, window and threshold (`alert_key`), `pending` until delivered (or `failed` after
the last attempt); `next_us` is when it is due, or until when a server has claimed it."""

_ROLLUP_DIMENSIONS = ("tenant", "user", "org", "feature", "agent", "model", "provider")
_ROLLUP_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)

rollups = sa.Table(
    "llmledger_rollups",
    metadata,
    sa.Column("grain", sa.BigInteger, primary_key=True),
    sa.Column("cuboid", sa.String(8), primary_key=True),
    sa.Column("bucket_us", sa.BigInteger, primary_key=True),
    sa.Column("key", sa.String(32), primary_key=True),
    *[sa.Column(name, sa.String(256)) for name in _ROLLUP_DIMENSIONS],
    *[
        sa.Column(name, sa.BigInteger, nullable=False)
        for name in ("requests", "errors", "unpriced", "estimated", *_ROLLUP_TOKENS)
    ],
    sa.Column("cost_usd", ExactDecimal()),
    sqlite_with_rowid=False,
)
"""Per-hour and per-day sums of the events by dimension sets (`llmledger.storage.rollups`); `grain`
is the bucket's length in microseconds, `bucket_us` its start, `key` a digest of the dimensions."""
