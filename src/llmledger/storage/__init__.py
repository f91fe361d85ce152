"""Storage: the SQL ledger (SQLite or PostgreSQL), its schema and migrations."""

from llmledger.storage.ledger import Ledger
from llmledger.storage.queries import FILTER_COLUMNS, GROUP_KEYS, UsageRow

__all__ = ["FILTER_COLUMNS", "GROUP_KEYS", "Ledger", "UsageRow"]
