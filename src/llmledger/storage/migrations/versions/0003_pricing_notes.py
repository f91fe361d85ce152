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

_TABLE = "llmledger_events"


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("partially_priced", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("cost_note", sa.Text),
        sa.Column("computed_cost_usd", ExactDecimal()),
    ]


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite and PostgreSQL both have it): no table rebuild, no reflection; a
    # column already there (a ledger another process upgraded first) is left as it is.
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(_TABLE)}
    for column in _columns():
        if column.name not in have:
            op.add_column(_TABLE, column)


def downgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
