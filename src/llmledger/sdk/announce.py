"""What a runtime does with each finished event besides storing it: the `on_event` hook, the debug
line, and the count (and one warning) of events recorded without a price."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING

from llmledger.events.event import UsageEvent
from llmledger.events.schema import TOKEN_FIELDS

if TYPE_CHECKING:
    from llmledger.sdk.config import Config

__all__ = ["Announcer", "debug_line"]

log = logging.getLogger("llmledger")


class Announcer:
    """Announces a runtime's events (any thread) and counts the unpriced ones by provider/model."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._unpriced: dict[str, int] = {}

    def __call__(self, event: UsageEvent) -> None:
        config = self.config
        if event.cost_usd is None:
            self._note_unpriced(event)
        if not config.enabled:
            return
        if config.on_event is not None:
            try:
                config.on_event(event)
            except Exception as exc:  # the user's hook: log and go on, never break the call
                log.warning("llmledger: on_event hook raised %s: %s", type(exc).__name__, exc)
        if config.debug:
            print(debug_line(event), file=sys.stderr)

    def unpriced(self) -> dict[str, int]:
        """Events recorded without a price so far, by `provider/model`."""
        with self._lock:
            return dict(self._unpriced)

    def after_fork(self) -> None:
        """In a forked child: a new lock (another parent thread may have held this one)."""
        self._lock = threading.Lock()

    def _note_unpriced(self, event: UsageEvent) -> None:
        key = f"{event.provider}/{event.model}"
        # An unread response (a raw response never parsed) has no usage to price: its model may well
        # have a price, so say what is unknown instead of "no price".
        unread = not event.complete and not any(getattr(event, f) for f in TOKEN_FIELDS)
        if unread:
            key += " (usage unknown)"
        with self._lock:
            seen = self._unpriced.get(key, 0)
            self._unpriced[key] = seen + 1
        if seen:
            return
        if unread:
            log.warning(
                "llmledger: the usage of a %s/%s call is unknown; recorded without cost (cost_usd=None): %s",
                event.provider,
                event.model,
                event.unpriced_reason,
            )
        else:
            log.warning(
                "llmledger: no price for %s; recorded as unpriced (cost_usd=None): %s",
                key,
                event.unpriced_reason,
            )


def debug_line(e: UsageEvent) -> str:
    """One human line per event: `[llmledger] openai gpt-4o-mini tenant=acme 1234→56 tok $0.00042`."""
    who = " ".join(f"{k}={getattr(e, k)}" for k in ("tenant", "user", "feature") if getattr(e, k))
    cost = f"${e.cost_usd:.6f}".rstrip("0").rstrip(".") if e.cost_usd is not None else "unpriced"
    parts = ["[llmledger]", e.provider, e.model, who, f"{e.input_tokens}→{e.output_tokens} tok", cost]
    if e.status != "ok":
        parts.append(f"{e.status}:{e.error_type}")
    return " ".join(p for p in parts if p)
