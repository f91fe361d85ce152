"""Faults inside llmledger never break the host app: they are logged once per place, counted in
`stats().internal_errors`, and swallowed — except under pytest, where they are re-raised so that our
own bugs fail our own tests (the rule logfire and sentry follow)."""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["internal_error", "internal_error_count"]

log = logging.getLogger("llmledger")
_lock = threading.Lock()
_count = 0
_logged: set[str] = set()


def internal_error(exc: BaseException, where: str) -> None:
    """Record an unexpected exception raised inside llmledger at `where`."""
    global _count
    with _lock:
        _count += 1
        first = where not in _logged
        _logged.add(where)
    if first:
        log.error("llmledger internal error in %s (further ones are only counted)", where, exc_info=exc)
    if os.environ.get("PYTEST_CURRENT_TEST") and not os.environ.get("LLMLEDGER_SWALLOW_INTERNAL_ERRORS"):
        raise exc


def internal_error_count() -> int:
    """How many internal errors were recorded in this process."""
    return _count


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)
