"""Forgotten spend: what deleted events had used of the limits' windows (deleting no longer refunds).

Revision ID: 0008_forgotten_spend
Revises: 0007_rollups
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.storage.tables import ExactDecimal

revision = "0008_forgotten_spend"
down_revision = "0007_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llmledger_forgotten_spend",
        sa.Column("limit_id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(1024), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("used", ExactDecimal(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("llmledger_forgotten_spend")
