"""`Engine`: a ledger (SQLite or PostgreSQL), its pricer and its keys, passed explicitly to the doors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmledger.engine.recording import IngestResult, ingest
from llmledger.events.event import UsageEvent
from llmledger.pricing.overrides import Overrides
from llmledger.pricing.pricer import Pricer
from llmledger.storage.keys import KeyStore
from llmledger.storage.ledger import Ledger
from llmledger.storage.queries import UsageRow

__all__ = ["Engine"]


class Engine:
    """Everything one ledger database serves, owned by whoever opened it.

    `url`: a SQLAlchemy URL (`sqlite:///path`, `postgresql://...`) or a SQLite file path.
    `prices`: a price overrides TOML file. Raises `LedgerError` / `ConfigError` when the ledger
    cannot be opened, `PriceOverrideError` for a bad overrides file.
    """

    def __init__(self, url: str, *, prices: str | Path | None = None) -> None:
        overrides = Overrides.load(prices) if prices else None
        self.pricer = Pricer(overrides)
        self.ledger = Ledger(url)
        self.keys = KeyStore(self.ledger.engine)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.ledger.dialect

    def ingest(
        self, items: Sequence[Any], *, tenant: str | None = None, return_events: bool = False
    ) -> IngestResult:
        """Validate, price and store wire-form events; see `llmledger.engine.recording.ingest`."""
        return ingest(self.ledger, self.pricer, items, tenant=tenant, return_events=return_events)

    def usage(
        self,
        group_by: Sequence[str],
        filters: Mapping[str, Any],
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """Requests, token sums and exact cost per group, most expensive first."""
        return self.ledger.usage(group_by, filters, since, until)

    def events(
        self,
        filters: Mapping[str, Any],
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        after: tuple[int, str] | None = None,
    ) -> list[UsageEvent]:
        """Events matching the filters, newest first; `after` is the keyset cursor of the last page."""
        return self.ledger.events(filters, since, until, limit, after=after)

    def spend(
        self, filters: Mapping[str, Any], since: datetime | None = None, until: datetime | None = None
    ) -> Decimal:
        """The exact USD total of the matching events."""
        return self.ledger.spend(filters, since, until)

    def ping(self) -> None:
        """Raise if the database does not answer (readiness): one trivial query."""
        with self.ledger.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def close(self) -> None:
        """Release the database connections."""
        self.ledger.close()
