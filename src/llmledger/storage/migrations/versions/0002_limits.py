"""Spend limits: definitions, counters, reservations, credits, alerts.

Revision ID: 0002_limits
Revises: 0001_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.storage.tables import ExactDecimal

revision = "0002_limits"
down_revision = "0001_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llmledger_limits",
        sa.Column("limit_id", sa.String(64), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "llmledger_counters",
        sa.Column("limit_id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(1024), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("used", ExactDecimal(), nullable=False),
    )
    op.create_table(
        "llmledger_reservations",
        sa.Column("reservation_id", sa.String(36), primary_key=True),
        sa.Column("limit_id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("amount", ExactDecimal(), nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_llmledger_reservations_subject", "llmledger_reservations", ["limit_id", "subject"])
    op.create_table(
        "llmledger_credits",
        sa.Column("limit_id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(1024), primary_key=True),
        sa.Column("granted", ExactDecimal(), nullable=False),
    )
    op.create_table(
        "llmledger_alerts",
        sa.Column("limit_id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(1024), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("threshold", sa.String(16), primary_key=True),
        sa.Column("fired_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "llmledger_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for name in ("llmledger_meta", "llmledger_alerts", "llmledger_credits", "llmledger_reservations"):
        op.drop_table(name)
    op.drop_table("llmledger_counters")
    op.drop_table("llmledger_limits")
