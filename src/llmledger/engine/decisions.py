"""The vocabulary of a limit decision: the `EnforcementPolicy` an enforcer follows, the `Reservation`
it answers with, and the `LimitExceeded` a refused standing raises."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from llmledger.errors import ConfigError, LimitExceeded
from llmledger.storage.limits import Standing

__all__ = ["EnforcementPolicy", "Reservation", "exceeded", "owned_reservation_id", "seconds_until"]


@dataclass(frozen=True, slots=True)
class EnforcementPolicy:
    """How an enforcer decides.

    `limit_timeout`: seconds a decision may wait for the ledger's write lock (0.001-60).
    `on_ledger_fault`: `"open"` (a call the ledger cannot decide goes ahead, counted) or `"closed"`
    (`LimitUndecided`). `default_output_cap`: the output tokens a call without a cap is assumed to
    use at most. `reservation_ttl`: seconds after which the reservation of a call that never ended is
    dropped. Raises `ConfigError` naming the bad field.
    """

    limit_timeout: float = 0.5
    on_ledger_fault: str = "open"
    default_output_cap: int = 4096
    reservation_ttl: float = 900.0

    def __post_init__(self) -> None:
        for name, low, high in (("limit_timeout", 0.001, 60.0), ("reservation_ttl", 1.0, 30 * 86400.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(
                    f"{name} must be a number of seconds in [{low:g}, {high:g}], got {value!r:.80}"
                )
        cap = self.default_output_cap
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 10_000_000:
            raise ConfigError(
                f"default_output_cap must be a whole number of tokens in [1, 10,000,000], got {cap!r:.80}"
            )
        if self.on_ledger_fault not in ("open", "closed"):
            raise ConfigError(
                "on_ledger_fault must be 'open' (send unchecked calls, counted) or 'closed' (refuse them), "
                f"got {self.on_ledger_fault!r:.80}"
            )


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of an admitted call: `id` (None when no limit applies, or the ledger could not
    decide under `on_ledger_fault="open"`), `model` (the model to send instead when a soft limit's
    downgrade applies, else None) and `expires_at` (UTC; when an unsettled reservation is dropped)."""

    id: str | None
    model: str | None = None
    expires_at: datetime | None = None
    unchecked: bool = False
    """True when a limit applied but the ledger could not decide and the policy is "open"."""
    repeated: bool = False
    """True when the caller-chosen `reservation_id` was held already (a door's retry of the same
    request): the call is covered by that reservation; `expires_at` is not read here
    (`Engine.held_until` reads it)."""


def seconds_until(at: datetime | None, now_us: int) -> float | None:
    return None if at is None else max(0.0, at.timestamp() - now_us / 1_000_000)


def exceeded(standing: Standing, needed: Decimal, kind: type[LimitExceeded] = LimitExceeded) -> LimitExceeded:
    """The `LimitExceeded` (or `kind`) a refused standing raises, saying all of why."""
    limit = standing.limit
    return kind(
        limit_id=limit.id,
        scope=limit.describe_scope(),
        subject=standing.subject,
        metric=limit.metric,
        limit=standing.allowed,
        spent=standing.spent,
        reserved=standing.reserved,
        requested=needed,
        resets_at=standing.resets_at,
        window=limit.window.describe(),
    )


def owned_reservation_id(reservation_id: str, tenant: str | None) -> str:
    """The id a reservation is stored under: a door's id as it is, or, for a key bound to `tenant`, a
    digest of the tenant and the id (36 characters, like a UUID). A tenant-bound key names its
    reservations by the ids it chose; whatever id it sends, it can only ever reach its own tenant's."""
    if tenant is None:
        return reservation_id
    return "t" + hashlib.sha256(f"{tenant}\x00{reservation_id}".encode()).hexdigest()[:35]
