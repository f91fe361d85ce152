"""Remote mode: this process meters into a llmledger server (`init(server=..., api_key=...)`).

The same public API as embedded mode. Instrumentation and `track()` write the same journal records
on the caller's thread; the writer thread delivers the events to `POST /api/v1/events` (the
`RemoteSink`) instead of writing a local ledger, and acknowledges the journal only once the server
answered. Queries (`events()`, `usage()`, `spend()`) read the server's `GET` endpoints. No local
database is opened or created: the journal (under `$XDG_CACHE_HOME/llmledger/journal/remote-<hash>/`,
one directory per server and key) is the only file this mode writes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmledger._time import TimeBound
from llmledger.errors import ConfigError, InvalidQueryError
from llmledger.remote.client import Client

if TYPE_CHECKING:
    from llmledger.events.event import UsageEvent
    from llmledger.storage.queries import UsageRow

__all__ = ["Remote", "choose_mode", "remote_journal_dir", "server_settings"]

_SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def server_settings(server: str | None, api_key: str | None) -> tuple[str | None, str | None]:
    """`server` / `api_key` given to `init()`, else `LLMLEDGER_SERVER` / `LLMLEDGER_API_KEY`.

    Raises `ConfigError` when a server is named without a key (or a key without a server)."""
    if server is not None and not isinstance(server, str):
        raise ConfigError(
            f"server must be a URL such as 'http://127.0.0.1:8787', got {type(server).__name__}"
        )
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigError(f"api_key must be a string (llk_...), got {type(api_key).__name__}")
    server = server if server is not None else (os.environ.get("LLMLEDGER_SERVER") or None)
    api_key = api_key if api_key is not None else (os.environ.get("LLMLEDGER_API_KEY") or None)
    if server is None:
        if api_key is not None and os.environ.get("LLMLEDGER_API_KEY") != api_key:
            raise ConfigError("api_key is for remote mode: give server= (or LLMLEDGER_SERVER) too")
        return None, None
    if not server.strip():
        raise ConfigError("server must be a URL such as 'http://127.0.0.1:8787', got an empty string")
    if api_key is None or not api_key.strip():
        raise ConfigError(
            "remote mode needs an API key with the ingest scope: init(server=..., api_key='llk_...') or "
            "LLMLEDGER_API_KEY (create one with `llmledger keys create --scope ingest`)"
        )
    return server.strip(), api_key.strip()


def choose_mode(ledger: object, server: str | None, api_key: str | None) -> tuple[str | None, str | None]:
    """`init()`'s choice: (server, key) for remote mode, (None, None) for embedded mode. An explicit
    `ledger` wins over `LLMLEDGER_SERVER`. Raises `ConfigError` for both `ledger` and `server`, a key
    without a server, or a server URL that is not `http(s)://host[:port]`."""
    if ledger is not None and server is not None:
        raise ConfigError("give either ledger= (embedded mode) or server= (remote mode), not both")
    if ledger is not None:
        if api_key is not None:
            raise ConfigError("api_key is for remote mode (server=...), not for a local ledger")
        return None, None
    server, api_key = server_settings(server, api_key)
    if server is not None:
        from llmledger.remote.http import HttpClient

        HttpClient(server, api_key or "")  # checks the URL
    return server, api_key


def remote_journal_dir(server: str, api_key: str) -> Path:
    """The journal directory of one server and key: `$XDG_CACHE_HOME/llmledger/journal/remote-<hash>`
    (`LLMLEDGER_JOURNAL_DIR` overrides). Per key: what another process left is replayed with the
    key that recorded it."""
    explicit = os.environ.get("LLMLEDGER_JOURNAL_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(f"{server.rstrip('/')}\n{api_key}".encode()).hexdigest()[:16]
    return cache / "llmledger" / "journal" / f"remote-{digest}"


class Remote:
    """The server this process meters into: its client (queries, delivery) and journal directory.

    Raises `ConfigError` for a URL that is not http(s) or an empty key."""

    def __init__(self, server: str, api_key: str, *, timeout: float = 10.0) -> None:
        # Delivery retries a little here (jitter, Retry-After), then the writer backs off.
        self.client = Client(server, api_key, timeout=timeout, max_retries=2, backoff=0.2)
        self.http = self.client._http
        self.server = server
        self.journal_dir = remote_journal_dir(server, api_key)

    def __repr__(self) -> str:  # never the key
        return f"Remote({self.server!r})"

    # -- queries (the embedded signatures; `filters` as `events()` / `usage()` / `spend()`) -------

    def events(
        self, filters: Mapping[str, Any], since: TimeBound, until: TimeBound, limit: int | None
    ) -> list[UsageEvent]:
        """Events newest first (every page when `limit` is None)."""
        tags, rest = _split(filters)
        return self.client.events(since=since, until=until, limit=limit or 10**12, tags=tags, **rest)

    def usage(
        self, keys: Iterable[str], filters: Mapping[str, Any], since: TimeBound, until: TimeBound
    ) -> list[UsageRow]:
        """The usage report's rows, as `UsageRow` (as embedded mode returns them)."""
        from llmledger.storage.queries import GROUP_KEYS, UsageRow

        keys = list(keys)
        for key in keys:
            if key not in GROUP_KEYS and not (key.startswith("tag:") and len(key) > 4):
                raise InvalidQueryError(
                    f"cannot group by {key!r}; group by: {', '.join(GROUP_KEYS)}, tag:<name>"
                )
        tags, rest = _split(filters)
        rows = self.client.usage(keys, since=since, until=until, tags=tags, **rest)
        return [
            UsageRow(
                group={k: row.get(k) for k in keys},
                requests=int(row["requests"]),
                **{c: int(row[c]) for c in _SUMS},
                cost_usd=Decimal(row["cost_usd"]),
                unpriced_requests=int(row["unpriced_requests"]),
                errors=int(row["errors"]),
            )
            for row in rows
        ]

    def spend(self, filters: Mapping[str, Any], since: TimeBound, until: TimeBound) -> Decimal:
        """The exact USD spent by the matching events."""
        tags, rest = _split(filters)
        return self.client.spend(since=since, until=until, tags=tags, **rest)

    def close(self) -> None:
        self.client.close()


def _split(filters: Mapping[str, Any]) -> tuple[dict[str, str] | None, dict[str, Any]]:
    """(tags, other filters) for the query string, checked as embedded mode checks them (the same
    `InvalidQueryError` for an unknown filter or a bad value) before anything is sent."""
    from llmledger.storage.queries import where_clause  # builds expressions only: no database

    where_clause(filters, None, None)
    rest: dict[str, Any] = {
        k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in filters.items() if v is not None
    }
    tags: Mapping[str, Any] | None = rest.pop("tags", None)
    for name, value in rest.items():
        if value == []:
            raise InvalidQueryError(f"filter {name} is an empty list: it would match nothing")
    return ({str(k): str(v) for k, v in tags.items()} if tags else None), rest
