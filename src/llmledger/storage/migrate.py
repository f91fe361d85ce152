"""Versioned schema migrations (Alembic), applied when a ledger is opened.

The common case — the schema is already current — is answered by one query, without importing
Alembic. Upgrades run under SQLite's write lock, so processes opening a new ledger at once queue.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmledger.storage.engine import IMMEDIATE

__all__ = ["HEAD", "current_revision", "upgrade"]

HEAD = "0008_forgotten_spend"
"""The newest migration; a test checks it equals Alembic's head."""


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database, or None for an empty database."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade(engine: Engine) -> None:
    """Bring the schema to `HEAD` (no-op when it is already there)."""
    if current_revision(engine) == HEAD:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "llmledger.storage:migrations")
    # ONE transaction under the write lock for the whole upgrade: Alembic would otherwise commit each
    # migration on its own (SQLite's dialect says "no transactional DDL"), and a process opening the
    # same new ledger could take the lock between two steps and run the next step first (seen:
    # "expected to match one row when updating '0002_limits' to '0003_pricing_notes'; 0 found").
    # Alembic reads the current revision inside this transaction, so the loser of the race finds
    # the schema already at HEAD.
    with engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
