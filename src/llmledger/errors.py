"""Typed errors raised by llmledger's public API.

Every error says what was wrong and what to do about it. Input errors are `ValueError` subclasses so
callers that already catch `ValueError` keep working.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

__all__ = [
    "AttributionRefused",
    "AuthenticationError",
    "ConfigError",
    "InvalidEventError",
    "InvalidQueryError",
    "InvalidShapeError",
    "InvalidUsageError",
    "LedgerBusy",
    "LedgerError",
    "LimitDefinitionError",
    "LimitExceeded",
    "LimitExceededException",
    "LimitUndecided",
    "LlmLedgerError",
    "PriceOverrideError",
    "RateLimitError",
    "RateLimited",
    "ServerError",
    "ServerUnavailable",
    "StaleReadError",
    "UnpricedRefused",
    "UpstreamRefused",
    "ValidationError",
]


class LlmLedgerError(Exception):
    """Base class of every error llmledger raises on purpose."""


class InvalidUsageError(LlmLedgerError, ValueError):
    """Usage given to `track()` / `track_usage()` is not valid (negative tokens, empty model, ...)."""


class InvalidEventError(LlmLedgerError, ValueError):
    """A usage event's wire form (JSON / dict) does not match the documented schema."""


class InvalidQueryError(LlmLedgerError, ValueError):
    """A ledger query has an unknown filter, group-by column or time bound."""


class ConfigError(LlmLedgerError, ValueError):
    """`init()` or an environment variable was given a value llmledger cannot use."""


class PriceOverrideError(ConfigError):
    """The price overrides file (TOML) is malformed; the message names the entry and the field."""


class LedgerError(LlmLedgerError):
    """The ledger (database) could not be opened or migrated."""


class LimitDefinitionError(LlmLedgerError, ValueError):
    """A spend limit definition is not valid (unknown scope, bad window, two metrics, ...)."""


class LimitExceeded(LlmLedgerError):
    """A hard spend limit would be exceeded: raised BEFORE the request is sent to the provider.

    Attributes say which limit decided and why: `limit_id`, `scope` (e.g. `tenant=acme`), `subject`
    (the counter, e.g. `user=u1` for a per-user limit), `metric` (`usd`, `tokens`, `requests`),
    `limit` (the amount), `spent` (committed in this window), `reserved` (held by calls in flight,
    and by finished calls until their event is written), `requested` (this call's worst case),
    `remaining`, `resets_at` (None for lifetime credit) and `retry_after` (seconds until the window
    resets, or None).
    """

    def __init__(
        self,
        *,
        limit_id: str,
        scope: str,
        subject: str,
        metric: str,
        limit: Decimal,
        spent: Decimal,
        reserved: Decimal,
        requested: Decimal,
        resets_at: datetime | None,
        window: str,
    ) -> None:
        self.limit_id = limit_id
        self.scope = scope
        self.subject = subject
        self.metric = metric
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested
        self.remaining = max(Decimal(0), limit - spent - reserved)
        self.resets_at = resets_at
        self.window = window
        now = datetime.now(timezone.utc)
        self.retry_after: float | None = (
            max(0.0, (resets_at - now).total_seconds()) if resets_at is not None else None
        )
        unit = "$" if metric == "usd" else ""
        tail = f" {metric}" if metric != "usd" else ""
        who = f"{scope} ({subject})" if subject and subject not in scope else scope
        when = f"resets at {resets_at.isoformat()}" if resets_at is not None else "does not reset (top it up)"
        super().__init__(
            f"limit {limit_id} for {who} would be exceeded: {unit}{spent}{tail} spent and "
            f"{unit}{reserved}{tail} held by calls in flight or just finished (not yet written) "
            f"of {unit}{limit}{tail} per {window}, this call needs up to "
            f"{unit}{requested}{tail} "
            f"({unit}{self.remaining}{tail} remaining); it {when}"
        )


class RateLimited(LimitExceeded):
    """A `throttle` limit has no room now (and the call could not wait for it): retry after `retry_after`."""


LimitExceededException = LimitExceeded
"""Alias of `LimitExceeded`."""


class ServerError(LlmLedgerError):
    """A llmledger server answered with an error, or could not be reached (`llmledger.Client`).

    `status` is the HTTP status (None when no answer came); the message is the server's own.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(ServerError):
    """The server refused the API key (401: missing, wrong or revoked) or its scope or tenant (403)."""


class RateLimitError(ServerError):
    """The server's rate limit for this key held after every retry; `retry_after` is in seconds."""

    def __init__(self, message: str, *, status: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ValidationError(ServerError, ValueError):
    """The server refused what was sent (422, or an event listed in `rejected`); says what to fix."""


class ServerUnavailable(ServerError):
    """No answer (connection refused, timeout) or 5xx after every retry: try again later."""


class LedgerBusy(LedgerError):
    """The ledger did not answer within the bounded wait (`init(limit_timeout=...)`): it is locked by
    another process or too slow. Raised inside llmledger; a limit check turns it into its
    `on_ledger_fault` policy."""


class LimitUndecided(LlmLedgerError):
    """A spend limit applies but the ledger could not decide it (locked, unreachable, disk full, an
    internal fault), and `init(on_ledger_fault="closed")` refuses such calls: nothing was sent.

    `reason` says what failed; retry later, or use `on_ledger_fault="open"` (the default: send the
    call, count it in `stats().calls_unchecked`, and meter it)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"a spend limit applies but the ledger could not decide it ({reason}); the call was not "
            'sent (init(on_ledger_fault="closed")). Retry later, or check the ledger\'s health.'
        )


class StaleReadError(LedgerError):
    """A read (`spend`, `usage`, `events`) could not see the writes it promises: events recorded
    before it are still waiting (the ledger is locked or slow, the flush timed out). Retry, or pass
    `flush=False` to read what the ledger holds now."""


class AttributionRefused(LlmLedgerError, ValueError):
    """A gateway request's attribution headers are invalid (HTTP 400), or name a tenant its key may
    not act for (HTTP 403: `forbidden` is True). The message names the header and what to send."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


class UpstreamRefused(LlmLedgerError, OSError):
    """An upstream the gateway will not call: not on its allow-list, or leading to an address it
    may not reach (loopback, private, link-local, cloud metadata). The message says which and how
    an operator allows it (`--allow-upstream URL`, `LLMLEDGER_ALLOWED_UPSTREAMS`)."""


class UnpricedRefused(LimitExceeded):
    """A USD limit refused a call to a model with no known price (its `unpriced="refuse"` policy)."""


class InvalidShapeError(LlmLedgerError, ValueError):
    """A request shape (`llmledger.limit.worst.Shape` in its wire form) is malformed: the message names
    the field and what it must be."""
