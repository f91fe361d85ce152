"""Managing limits and reading where they stand: define, delete, top up, status, check, reconcile.

Functions of an `Enforcer` (its ledger's `LimitStore` and cached definitions), shared by every door:
the SDK's `set_limit()`/`remaining()`/..., the `Engine`, and the server's `/api/v1/limits`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from llmledger.engine.decisions import exceeded
from llmledger.engine.limits import Enforcer
from llmledger.errors import LimitDefinitionError
from llmledger.limit.define import make_limit
from llmledger.limit.model import Limit
from llmledger.storage.limit_subjects import subjects
from llmledger.storage.limits import Standing

__all__ = [
    "LimitStatus",
    "check",
    "check_definition",
    "define",
    "delete",
    "find",
    "fits",
    "limit_id",
    "status",
    "statuses",
    "subject_of",
    "tightest_first",
    "top_up",
]


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """Where one limit stands for a scope: spent and reserved in this window, what remains, when it resets."""

    limit: Limit
    subject: str
    spent: Decimal
    reserved: Decimal
    allowed: Decimal
    remaining: Decimal
    resets_at: datetime | None

    @classmethod
    def of(cls, s: Standing) -> LimitStatus:
        return cls(s.limit, s.subject, s.spent, s.reserved, s.allowed, s.remaining, s.resets_at)


def limit_id(limit: Limit) -> str:
    """A limit's id: derived from its scope, metric and window (the same ones replace each other)."""
    key = json.dumps([limit.scope, limit.metric, limit.window.kind, limit.window.seconds, limit.window.tz])
    return "lim_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def check_definition(**fields: Any) -> Limit:
    """A limit from `set_limit`'s keyword arguments, not stored and without its id: what every door
    (embedded, remote) checks before anything is stored or sent. Raises `LimitDefinitionError`
    listing every problem of the definition."""
    for name in ("tags", "downgrade"):
        value = fields.get(name)
        if value is not None and not isinstance(value, Mapping):
            example = "{'plan': 'free'}" if name == "tags" else "{'gpt-4o': 'gpt-4o-mini'}"
            raise LimitDefinitionError(f"{name} must be a dict, e.g. {name}={example}, got {value!r}")
    return make_limit("", **fields)


def define(enforcer: Enforcer, **fields: Any) -> Limit:
    """Create (or replace) a limit from `set_limit`'s keyword arguments and return it. Raises
    `LimitDefinitionError` listing every problem of the definition."""
    draft = check_definition(**fields)
    limit = dataclasses.replace(draft, id=limit_id(draft))
    enforcer.store.put(limit, datetime.now(timezone.utc))
    enforcer.limits(fresh=True)
    return limit


def find(enforcer: Enforcer, limit_id: str) -> Limit:
    """The limit with this id; `LimitDefinitionError` when there is none."""
    for limit in enforcer.limits(fresh=True):
        if limit.id == limit_id:
            return limit
    raise LimitDefinitionError(f"no limit with id {limit_id!r}; see llmledger.limits()")


def delete(enforcer: Enforcer, limit_id: str) -> bool:
    """Remove a limit (and its counters, reservations, credit); False if there was none."""
    gone = enforcer.store.delete(limit_id)
    enforcer.limits(fresh=True)
    return gone


def subject_of(limit: Limit, scope: Mapping[str, Any]) -> str:
    """The counter of a limit a scope names: the values of its `*` dimensions (`user=u1`)."""
    parts = []
    tags = scope.get("tags") or {}
    for key, want in limit.scope:
        if want != "*":
            continue
        have = tags.get(key[4:]) if key.startswith("tag:") else scope.get(key)
        if not isinstance(have, str) or not have:
            raise LimitDefinitionError(
                f"limit {limit.id} ({limit.describe_scope()}) applies to each {key}: name one"
            )
        parts.append(f"{key}={have}")
    return "&".join(parts)


def top_up(enforcer: Enforcer, limit_id: str, amount: Any, scope: Mapping[str, Any]) -> Decimal:
    """Add credit to a lifetime limit (for `*` scopes, `scope` names the subject). Returns the total
    credit granted so far on top of the limit's amount. Raises `LimitDefinitionError`."""
    limit = find(enforcer, limit_id)
    if limit.window.kind != "lifetime":
        raise LimitDefinitionError(
            f"limit {limit_id} resets every {limit.window.kind}; only lifetime limits take top-ups"
        )
    metric = "usd" if limit.metric == "usd" else "tokens"
    try:
        value = make_limit("", **{metric: amount}).amount
    except LimitDefinitionError as exc:  # name the argument the caller gave, not the limit's metric
        raise LimitDefinitionError(str(exc).replace(f"{metric} must", "amount must", 1)) from None
    if value <= 0:
        raise LimitDefinitionError(f"a top-up must be positive, got {amount!r}")
    return enforcer.store.top_up(limit, subject_of(limit, scope), value)


def tightest_first(statuses: Iterable[LimitStatus]) -> list[LimitStatus]:
    """`statuses` ordered by the share of their limit that remains, smallest first."""
    return sorted(statuses, key=lambda s: (s.remaining / s.allowed) if s.allowed else Decimal(0))


def fits(standings: Iterable[Standing], needed: Callable[[Limit], Decimal]) -> list[LimitStatus]:
    """`check`'s rule, for every door (the standings read here or from a server): raise
    `LimitExceeded` for a hard limit whose standing refuses what the call may need of it
    (`needed(limit)`); otherwise where each limit stands, tightest first."""
    out = []
    for standing in standings:
        amount = needed(standing.limit)
        if standing.limit.blocks and standing.refuses(amount):
            raise exceeded(standing, amount)
        out.append(LimitStatus.of(standing))
    return tightest_first(out)


def status(enforcer: Enforcer, scope: Mapping[str, str | None]) -> list[LimitStatus]:
    """Every limit that applies to `scope` (as `scope_of_call` builds it), tightest first."""
    now = datetime.now(timezone.utc)
    return tightest_first(
        LimitStatus.of(enforcer.store.standing(limit, subject, now))
        for limit in enforcer.limits(fresh=True)
        if (subject := limit.subject(scope)) is not None
    )


def check(
    enforcer: Enforcer,
    scope: Mapping[str, str | None],
    *,
    provider: str,
    model: str,
    input_tokens: int,
    max_output_tokens: int | None,
) -> list[LimitStatus]:
    """Would a call fit? Raises `LimitExceeded` if a hard limit would refuse its worst case; otherwise
    `status(scope)`. Reserves nothing."""
    cap = max_output_tokens or enforcer.policy.default_output_cap
    now = datetime.now(timezone.utc)
    standings = (
        enforcer.store.standing(limit, subject, now)
        for limit in enforcer.limits(fresh=True)
        if (subject := limit.subject(scope)) is not None
    )
    feature = scope.get("feature")
    return fits(
        standings, lambda limit: enforcer.worst_case(limit, provider, model, feature, input_tokens, None, cap)
    )


def statuses(
    enforcer: Enforcer,
    query: Mapping[str, str],
    *,
    limit_id: str | None = None,
    need_dimension: str | None = None,
    most: int = 1000,
) -> list[LimitStatus]:
    """Where limits stand for every subject a query matches: `query` maps scope dimensions
    (`tenant`, `user`..., `tag:<name>`) to values. A limit is left out when one of its fixed values
    differs from the query's; for its `*` dimensions the query names, that subject; for those it does
    not name, every subject the ledger has for it now (spend in this window, a reservation, credit),
    at most `most`. `need_dimension`: only limits scoped by that dimension (a tenant-bound reader)."""
    now = datetime.now(timezone.utc)
    out: list[LimitStatus] = []
    for limit in enforcer.limits(fresh=True):
        if limit_id is not None and limit.id != limit_id:
            continue
        scope = dict(limit.scope)
        if need_dimension is not None and need_dimension not in scope:
            continue
        if any(want != "*" and key in query and query[key] != want for key, want in scope.items()):
            continue
        stars = [key for key, want in scope.items() if want == "*"]
        if all(key in query for key in stars):
            names = ["&".join(f"{key}={query[key]}" for key in stars)]
        else:
            named = {f"{key}={query[key]}" for key in stars if key in query}
            names = [
                name
                for name in subjects(enforcer.store.engine, limit, now, most)
                if named <= set(name.split("&"))
            ]
        out.extend(LimitStatus.of(enforcer.store.standing(limit, name, now)) for name in names[:most])
    return out
