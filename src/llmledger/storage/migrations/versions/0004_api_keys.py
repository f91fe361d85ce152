"""API keys of the server (`llmledger serve`).

Revision ID: 0004_api_keys
Revises: 0003_pricing_notes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_api_keys"
down_revision = "0003_pricing_notes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llmledger_api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(256)),
        sa.Column("name", sa.String(256)),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_table("llmledger_api_keys")
