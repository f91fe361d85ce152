"""This process's journals: where a ledger's journal lives, and one `Journal` per directory shared by
successive runtimes (see `sdk/spool.py` for what the records are)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from llmledger.transport.journal import Journal

__all__ = ["journal_dir", "journal_for", "release_journal"]

_journals: dict[str, Journal] = {}
_journals_lock = threading.Lock()


def journal_dir(ledger: str) -> Path:
    """Where the journal of the ledger at `ledger` lives: `<file>.journal/` beside a SQLite file,
    else `$XDG_CACHE_HOME/llmledger/journal/<hash of the URL>/` (one directory per ledger)."""
    from llmledger.storage.engine import normalize_url

    url = normalize_url(ledger)
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :] + ".journal")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "llmledger" / "journal" / hashlib.sha256(url.encode()).hexdigest()[:16]


def journal_for(ledger: str, directory: Path | None = None) -> Journal:
    """This process's journal for a ledger (or for `directory`: remote mode's): one per directory,
    shared by successive runtimes, so a call begun under one runtime and ended under the next is
    acknowledged in the same journal."""
    path = str((journal_dir(ledger) if directory is None else directory).absolute())
    with _journals_lock:
        journal = _journals.get(path)
        if journal is None:
            journal = _journals[path] = Journal(path)
        return journal


def release_journal(journal: Journal) -> None:
    """Close a runtime's journal when nothing in it is still owed (calls in flight keep it open)."""
    with _journals_lock:
        if journal.pending <= 0:
            journal.close()
            _journals.pop(str(journal.directory), None)
