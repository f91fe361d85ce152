"""Spend limits in remote mode: the server decides (reservations over HTTP).

Until a limit is defined on the server, a remote-mode call is never held up: `limits()` is empty and
the instrumentation sends the call at once. (Reservations through `POST /api/v1/reservations` are
the next step; see docs/server.md.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmledger.sdk.runtime import Runtime

__all__ = ["RemoteEnforcer"]


class RemoteEnforcer:
    """The `Enforcer` of a remote-mode runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.refused = 0
        self.unchecked = 0
        self.last_fault: str | None = None

    def limits(self, *, fresh: bool = False) -> list[Any]:
        """The limits this process enforces locally: none (the server holds them)."""
        return []
