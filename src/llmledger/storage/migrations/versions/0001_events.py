"""Create the usage events table.

Revision ID: 0001_events
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.storage.tables import ExactDecimal

revision = "0001_events"
down_revision = None
branch_labels = None
depends_on = None

_TOKENS = (
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


def upgrade() -> None:
    op.create_table(
        "llmledger_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("requested_model", sa.String(256)),
        sa.Column("endpoint", sa.String(64)),
        sa.Column("service_tier", sa.String(32)),
        *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in _TOKENS],
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
    )
    op.create_index("ix_llmledger_events_ts", "llmledger_events", ["ts_us"])
    op.create_index("ix_llmledger_events_tenant_ts", "llmledger_events", ["tenant", "ts_us"])
    op.create_index("ix_llmledger_events_user_ts", "llmledger_events", ["user", "ts_us"])


def downgrade() -> None:
    op.drop_table("llmledger_events")
