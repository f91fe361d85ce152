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

from llmledger.events.event import TOKEN_FIELDS

__all__ = ["ExactDecimal", "events", "metadata"]


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
