"""llmledger: self-hosted metering and spend control for LLM apps.

```python
import llmledger

llmledger.init()                                   # SQLite ledger at ./llmledger.db
with llmledger.attribute(tenant="acme", feature="chat"):
    event = llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1200, output_tokens=80)
print(event.cost_usd, llmledger.spend(tenant="acme"))
```

Importing this package is light: no web framework, no provider SDK, no database driver.
"""

from typing import TYPE_CHECKING

from llmledger._version import __version__
from llmledger.attribution import (
    Attribution,
    attribute,
    current_attribution,
    reset_attribution,
    set_attribution,
)
from llmledger.attribution.labels import labels
from llmledger.attribution.labels import on_first_use as _on_first_labels
from llmledger.errors import (
    AuthenticationError,
    ConfigError,
    InvalidEventError,
    InvalidQueryError,
    InvalidUsageError,
    LedgerBusy,
    LedgerError,
    LimitDefinitionError,
    LimitExceeded,
    LimitExceededException,
    LimitUndecided,
    LlmLedgerError,
    PriceOverrideError,
    RateLimited,
    RateLimitError,
    ServerError,
    ServerUnavailable,
    StaleReadError,
    ValidationError,
)
from llmledger.events import UsageEvent
from llmledger.identity import alias_models, model_identity
from llmledger.sdk.queries import events, flush, spend, usage
from llmledger.sdk.runtime import Stats, init, shutdown
from llmledger.sdk.runtime import current as _current_runtime
from llmledger.sdk.track import UsageTracker, track, track_usage

if TYPE_CHECKING:  # the lazy API below, typed for mypy and IDEs (loaded on first use at run time)
    from llmledger.remote import Client
    from llmledger.sdk.limits import (
        LimitStatus,
        check,
        delete_limit,
        guard,
        limits,
        load_limits,
        reconcile,
        remaining,
        set_limit,
        top_up,
    )
    from llmledger.sdk.retention import delete_events

_LIMITS_API = (
    "LimitStatus",
    "check",
    "delete_limit",
    "guard",
    "limits",
    "load_limits",
    "model_identity",
    "reconcile",
    "remaining",
    "set_limit",
    "top_up",
)


def __getattr__(name: str) -> object:
    # The spend-limit and retention API need SQLAlchemy: load it on first use, keeping
    # `import llmledger` light.
    if name == "Client":  # the server's client needs http.client and ssl: also on first use
        from llmledger.remote import Client

        return Client
    if name in _LIMITS_API:
        from llmledger.sdk import limits as _limits

        return getattr(_limits, name)
    if name == "delete_events":
        from llmledger.sdk.retention import delete_events as _delete_events

        return _delete_events
    raise AttributeError(f"module 'llmledger' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def uninstrument() -> None:
    """Remove llmledger's patches from the provider SDKs, restoring every original method exactly."""
    from llmledger.instrumentation import uninstrument as _uninstrument

    _uninstrument()


def _take_labels_off() -> None:
    # A `labels()` header must never reach a provider, even in a process that never calls `init()`
    # (a worker or a test that forgot it): the SDKs take it off once llmledger's labels patch is in.
    from llmledger.instrumentation import keep_labels

    keep_labels()


_on_first_labels(_take_labels_off)


def stats() -> Stats:
    """Counters for this process: events recorded, pending, dropped, unpriced; write and internal errors."""
    return _current_runtime().stats()


__all__ = [
    "Attribution",
    "AuthenticationError",
    "Client",
    "ConfigError",
    "InvalidEventError",
    "InvalidQueryError",
    "InvalidUsageError",
    "LedgerBusy",
    "LedgerError",
    "LimitDefinitionError",
    "LimitExceeded",
    "LimitExceededException",
    "LimitStatus",
    "LimitUndecided",
    "LlmLedgerError",
    "PriceOverrideError",
    "RateLimitError",
    "RateLimited",
    "ServerError",
    "ServerUnavailable",
    "StaleReadError",
    "Stats",
    "UsageEvent",
    "UsageTracker",
    "ValidationError",
    "__version__",
    "alias_models",
    "attribute",
    "check",
    "current_attribution",
    "delete_events",
    "delete_limit",
    "events",
    "flush",
    "guard",
    "init",
    "labels",
    "limits",
    "load_limits",
    "model_identity",
    "reconcile",
    "remaining",
    "reset_attribution",
    "set_attribution",
    "set_limit",
    "shutdown",
    "spend",
    "stats",
    "top_up",
    "track",
    "track_usage",
    "uninstrument",
    "usage",
]
