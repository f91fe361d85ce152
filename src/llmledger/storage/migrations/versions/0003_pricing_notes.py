"""Events: partially priced flag, cost note, llmledger's own price beside a provider-reported cost.

Revision ID: 0003_pricing_notes
Revises: 0002_limits
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.storage.tables import ExactDecimal

revision = "0003_pricing_notes"
down_revision = "0002_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llmledger_events") as batch:
        batch.add_column(sa.Column("partially_priced", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("cost_note", sa.Text))
        batch.add_column(sa.Column("computed_cost_usd", ExactDecimal()))


def downgrade() -> None:
    with op.batch_alter_table("llmledger_events") as batch:
        batch.drop_column("computed_cost_usd")
        batch.drop_column("cost_note")
        batch.drop_column("partially_priced")
