"""Quarantine: events the ledger could not store, kept with the reason until retried.

Revision ID: 0005_quarantine
Revises: 0004_api_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_quarantine"
down_revision = "0004_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llmledger_quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64)),
        sa.Column("quarantined_us", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("llmledger_quarantine")
