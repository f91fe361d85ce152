"""Rollups: per-hour and per-day sums of the events, built here for the events already stored.

Revision ID: 0007_rollups
Revises: 0006_webhook_deliveries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.storage.tables import ExactDecimal

revision = "0007_rollups"
down_revision = "0006_webhook_deliveries"
branch_labels = None
depends_on = None

_DIMENSIONS = ("tenant", "user", "org", "feature", "agent", "model", "provider")
_MEASURES = (
    "requests",
    "errors",
    "unpriced",
    "estimated",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def upgrade() -> None:
    op.create_table(
        "llmledger_rollups",
        sa.Column("grain", sa.BigInteger, primary_key=True),
        sa.Column("cuboid", sa.String(8), primary_key=True),
        sa.Column("bucket_us", sa.BigInteger, primary_key=True),
        sa.Column("key", sa.String(32), primary_key=True),
        *[sa.Column(name, sa.String(256)) for name in _DIMENSIONS],
        *[sa.Column(name, sa.BigInteger, nullable=False) for name in _MEASURES],
        sa.Column("cost_usd", ExactDecimal()),
        sqlite_with_rowid=False,
    )
    # The events already in the ledger: summed here, in the migration's transaction.
    from llmledger.storage.rollups import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("llmledger_rollups")
