"""The engine: one ledger's recording, limits, queries and keys, with no process globals and no
knowledge of who calls it. The HTTP server and the gateway are doors onto an `Engine`; the in-process
SDK builds the same `Enforcer` over its own ledger."""

from llmledger.engine.engine import Engine
from llmledger.engine.limit_admin import LimitStatus
from llmledger.engine.limits import EnforcementPolicy, Enforcer, Reservation
from llmledger.engine.recording import IngestResult, Rejected

__all__ = [
    "EnforcementPolicy",
    "Enforcer",
    "Engine",
    "IngestResult",
    "LimitStatus",
    "Rejected",
    "Reservation",
]
