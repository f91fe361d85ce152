"""Webhook deliveries: each threshold alert a server POSTs to each configured webhook, recorded so
that it is delivered once per limit, subject and window across replicas, and retried until it is.

Revision ID: 0006_webhook_deliveries
Revises: 0005_quarantine
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_webhook_deliveries"
down_revision = "0005_quarantine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llmledger_webhook_deliveries",
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
    )
    op.create_index(
        "ix_llmledger_webhook_deliveries_due", "llmledger_webhook_deliveries", ["status", "next_us"]
    )


def downgrade() -> None:
    op.drop_index("ix_llmledger_webhook_deliveries_due", "llmledger_webhook_deliveries")
    op.drop_table("llmledger_webhook_deliveries")
