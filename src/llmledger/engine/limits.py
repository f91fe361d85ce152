"""Enforcement: match a call to the limits that apply, reserve its worst case, raise if refused.

`strict` (the default) reserves an upper bound (`limit/worst.py` over the request's `Shape`): the
prompt bounded with the model's real tokenizer (OpenAI) or by bytes (others), the output cap times
the choices asked for, at the dearest rate that could apply, plus per-call tool fees. So committed
spend cannot pass a hard limit when the provider honours the cap. `estimate` reserves the average
actual use of recent calls of the same model and feature instead.

A finished call's reservation is SETTLED to its actual use when the call ends (`settle`), before its
event is written. When the ledger cannot decide (locked past `limit_timeout`, disk full, an internal
fault) the `on_ledger_fault` policy applies: `open` sends the call (counted in `unchecked`), `closed`
raises `LimitUndecided`.

An `Enforcer` belongs to whoever built it (the SDK runtime, the server's `Engine`): no process
globals, no knowledge of its caller. Its settings are an `EnforcementPolicy`; alerts go to `on_alert`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from llmledger._internal import internal_error
from llmledger.engine.costs import UNPRICED, limit_amount
from llmledger.engine.decisions import EnforcementPolicy, Reservation, exceeded, seconds_until
from llmledger.errors import LedgerBusy, LimitExceeded, LimitUndecided, RateLimited, UnpricedRefused
from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.limit.model import Alert, Limit
from llmledger.limit.request import shape_of
from llmledger.limit.shape import Shape
from llmledger.pricing.pricer import Pricer
from llmledger.storage.hotpath import TRY_ONLY, WouldWait
from llmledger.storage.limits import Held, LimitStore, event_amount, event_scope
from llmledger.tokens import warm

__all__ = ["EnforcementPolicy", "Enforcer", "Reservation", "exceeded"]

log = logging.getLogger("llmledger")
_REFRESH_SECONDS = 1.0
_LEDGER_FAULTS = (LedgerBusy, sa.exc.SQLAlchemyError, sqlite3.Error, OSError)
_ID_TAKEN = (sqlite3.IntegrityError, sa.exc.IntegrityError)
"""What inserting a reservation under an id already held raises (SQLite's driver, or PostgreSQL's)."""
AlertHook = Callable[[Alert], object]


_NONE = Reservation(None)
_UNCHECKED = Reservation(None, unchecked=True)


class Enforcer:
    """One ledger's limits as a caller sees them: cached definitions, reservations, learned averages.

    `store`: the ledger's `LimitStore`; `pricer` prices worst cases; `policy` the settings;
    `on_alert(alert)` receives every alert a decision fires (its faults are logged, never raised).
    Thread-safe.
    """

    def __init__(
        self,
        store: LimitStore,
        pricer: Pricer,
        policy: EnforcementPolicy | None = None,
        on_alert: AlertHook | None = None,
    ) -> None:
        self.store = store
        self.pricer = pricer
        self.policy = policy or EnforcementPolicy()
        self.on_alert = on_alert
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # a parent thread may hold the lock at a fork
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _fresh_lock(ref))
        self._limits: list[Limit] = []
        self._checked = 0.0
        self._averages: dict[tuple[str, str, str | None], Decimal] = {}
        self._held: dict[str, tuple[Limit, ...]] = {}
        self._warned: set[str] = set()
        self._warmed = False
        self._matched = threading.local()
        """`applies`'s last (scope, limits, matches) on this thread, reused by the `reserve` that
        follows it (the limit subjects are worked out once per call)."""
        self.refused = 0
        """Calls refused so far."""
        self.unchecked = 0
        """Calls a limit applied to that the ledger could not decide (sent under "open")."""
        self.last_fault: str | None = None

    def limits(self, *, fresh: bool = False) -> list[Limit]:
        """The limits in force (re-read from the ledger at most once a second, or when `fresh`)."""
        now = time.monotonic()
        if fresh or now - self._checked > _REFRESH_SECONDS:
            if TRY_ONLY.get():  # a read of the ledger: not on a caller that must not wait
                raise WouldWait
            self.store.decision_timeout = self.policy.limit_timeout
            _, loaded = self.store.load()  # one query unless they changed
            with self._lock:
                self._limits = loaded
            self._checked = now
            if loaded and not self._warmed:
                self._warmed = True
                warm()  # load the tokenizer ahead of the first call (on a background thread)
        return self._limits

    def applies(self, scope: Mapping[str, str | None]) -> bool:
        """Whether a limit in force (as `limits()` last read them) applies to `scope`: a call no
        limit matches is not reserved, so the caller need not journal a reservation for it."""
        limits = self._limits
        matched = _matches(limits, scope)
        self._matched.last = (scope, limits, matched)
        return bool(matched)

    def admit(self, scope: Mapping[str, str | None], **call: Any) -> tuple[str | None, str | None]:
        """`reserve` (same arguments) as a pair: (reservation id or None, the model to send instead
        or None)."""
        got = self.reserve(scope, **call)
        return got.id, got.model

    def reserve(
        self,
        scope: Mapping[str, str | None],
        *,
        provider: str,
        model: str | None,
        feature: str | None,
        input_tokens: int | None = None,
        body: Mapping[str, Any] | None = None,
        max_output_tokens: int | None = None,
        shape: Shape | None = None,
        reservation_id: str | None = None,
    ) -> Reservation:
        """Reserve a call's worst case against every limit that applies to `scope` (attribution keys
        plus `model`/`provider`, as `limit.model.scope_of_call` builds it).

        The call is described by a `shape` (what a door without the body sends), or a provider request
        `body` (the shape is read from it), or just `input_tokens` and `max_output_tokens`. Raises
        `LimitExceeded` (before anything is sent) when a blocking limit refuses (`UnpricedRefused`
        for a USD limit and a model without a price), `RateLimited` when a throttle has no room within
        its `max_wait`, and `LimitUndecided` when the ledger cannot decide and
        `on_ledger_fault="closed"`.

        `reservation_id` lets the caller name the reservation before it exists (a door that
        journals it first, so that its death at any instant releases it on replay); a new UUIDv7
        otherwise.
        """
        try:
            return self._reserve(
                scope, provider, model, feature, input_tokens, body, max_output_tokens, shape, reservation_id
            )
        except (LimitExceeded, WouldWait):
            raise
        except Exception as exc:
            if reservation_id is not None and isinstance(exc, _ID_TAKEN):
                # the id is held already (a retry of `POST /api/v1/reservations` after a lost answer):
                # the call is covered by that reservation — not a ledger fault to count and log
                return Reservation(reservation_id, repeated=True)
            self.undecided(exc)
            return _UNCHECKED

    def undecided(self, exc: Exception) -> None:
        """Apply `on_ledger_fault` to a decision the ledger could not make: count and log it, then
        return (open) or raise `LimitUndecided` (closed)."""
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
        closed = self.policy.on_ledger_fault == "closed"
        with self._lock:
            self.unchecked += 1
            first = self.unchecked == 1
            self.last_fault = reason
        if not isinstance(exc, _LEDGER_FAULTS):  # our own bug: logged and counted (raised in our tests)
            try:
                internal_error(exc, "deciding a spend limit")
            except Exception as err:
                if closed:
                    raise LimitUndecided(reason) from err
                raise
        if closed:
            with self._lock:
                self.refused += 1
            raise LimitUndecided(reason) from exc
        if first or self.unchecked % 1000 == 0:
            log.warning(
                "llmledger: no limit decision (%s); %d call(s) sent unchecked (on_ledger_fault='open')",
                reason,
                self.unchecked,
            )

    def _reserve(
        self,
        scope: Mapping[str, str | None],
        provider: str,
        model: str | None,
        feature: str | None,
        input_tokens: int | None,
        body: Mapping[str, Any] | None,
        max_output_tokens: int | None,
        shape: Shape | None,
        reservation_id: str | None,
    ) -> Reservation:
        limits = self.limits()
        last = getattr(self._matched, "last", None)
        if last is not None and last[0] is scope and last[1] is limits:
            matched = last[2]  # `applies` just matched this very scope against these limits
        else:
            matched = _matches(limits, scope)
        self._matched.last = None
        if not matched:
            return _NONE
        if shape is None:
            shape = self._shape(matched, body, model, provider, input_tokens, max_output_tokens)
        swap = self._downgrade(matched, model, provider, feature, shape)
        if swap is not None:
            model = swap
            if body is not None and input_tokens is None:  # the bound depends on the model's tokenizer
                shape = self._shape(matched, body, model, provider, input_tokens, max_output_tokens)
        costs: dict[Any, Decimal] = {}  # limits of one metric and kind share one worst case
        held = [
            Held(
                limit, subject, self._needed(limit, subject, matched, provider, model, feature, shape, costs)
            )
            for limit, subject in matched
        ]
        rid = reservation_id or uuid7()
        deadline: float | None = None
        while True:
            decision = self.store.reserve(held, rid, self.policy.reservation_ttl)
            self.announce(decision.fired)
            if not decision.violated:
                break
            standing, needed = decision.violated[0]
            limit = standing.limit
            if limit.mode != "throttle":
                self._refuse()
                raise exceeded(standing, needed)
            wait = seconds_until(standing.resets_at, decision.at_us)
            if deadline is None:
                deadline = time.monotonic() + limit.max_wait
            if wait is None or time.monotonic() + wait > deadline:
                self._refuse()
                raise exceeded(standing, needed, RateLimited)
            if TRY_ONLY.get():
                raise WouldWait
            time.sleep(max(wait, 0.005))  # wait for the oldest slot to roll out, then try again
        with self._lock:
            if len(self._held) > 100_000:  # calls that never ended (their reservations expire)
                self._held.clear()
            self._held[rid] = tuple(h.limit for h in held)
        expires = datetime.fromtimestamp(decision.at_us / 1e6 + self.policy.reservation_ttl, timezone.utc)
        return Reservation(rid, swap, expires)

    def _shape(
        self,
        matched: list[tuple[Limit, str]],
        body: Mapping[str, Any] | None,
        model: str | None,
        provider: str,
        input_tokens: int | None,
        max_output_tokens: int | None,
    ) -> Shape:
        metered = [limit for limit, _ in matched if limit.metric != "requests"]
        return shape_of(
            body,
            model,
            provider,
            default_output_cap=self.policy.default_output_cap,
            max_output_tokens=max_output_tokens,
            input_tokens=input_tokens,
            bound=any(limit.enforcement == "strict" for limit in metered),
            estimate=any(limit.enforcement == "estimate" for limit in metered),
        )

    def announce(self, alerts: list[Alert]) -> None:
        """Hand alerts to `on_alert` (a fault in the hook is logged, never raised)."""
        hook = self.on_alert
        if hook is None:
            return
        for alert in alerts:
            try:
                hook(alert)
            except Exception as exc:  # the user's hook: log, never break the call
                log.warning("llmledger: on_threshold hook raised %s: %s", type(exc).__name__, exc)

    def settle(self, reservation_id: str, event: UsageEvent | Mapping[str, Decimal]) -> None:
        """The call of `reservation_id` ended: hold its actual use instead of its worst case until its
        event is written. `event`: the call's `UsageEvent`, or the amounts (limit id -> amount in the
        limit's metric). A ledger fault leaves the worst case held (safe)."""
        with self._lock:
            held = self._held.pop(reservation_id, None)
        if isinstance(event, UsageEvent):
            if held is None:  # reserved elsewhere (another replica, a restart): the limits it matches
                scope = event_scope(event)
                held = tuple(limit for limit in self.limits() if limit.subject(scope) is not None)
            amounts = {limit.id: event_amount(limit, event) for limit in held}
        else:
            amounts = dict(event)
        try:
            self.store.settle(reservation_id, amounts)
        except _LEDGER_FAULTS as exc:
            log.debug("llmledger: settling %s failed (%s); held until written", reservation_id, exc)

    def release(self, reservation_id: str) -> bool:
        """Drop a reservation (the call was not made, or ended without an event); whether it was held
        (False: never made, released already, dropped by its event, or expired)."""
        with self._lock:
            self._held.pop(reservation_id, None)
        return self.store.release([reservation_id]) > 0

    def _refuse(self) -> None:
        with self._lock:
            self.refused += 1

    def _downgrade(
        self,
        matched: list[tuple[Limit, str]],
        model: str | None,
        provider: str,
        feature: str | None,
        shape: Shape,
    ) -> str | None:
        """The cheaper model a reached soft limit maps `model` to, if any."""
        if model is None:
            return None
        now = _now()
        for limit, subject in matched:
            target = dict(limit.downgrade).get(model)
            if target is None:
                continue
            if TRY_ONLY.get():  # reads the ledger
                raise WouldWait
            standing = self.store.standing(limit, subject, now)
            needed = self.worst_case(limit, provider, model, feature, shape=shape)
            if standing.refuses(needed):
                return target
        return None

    def _needed(
        self,
        limit: Limit,
        subject: str,
        matched: list[tuple[Limit, str]],
        provider: str,
        model: str | None,
        feature: str | None,
        shape: Shape,
        costs: dict[Any, Decimal],
    ) -> Decimal:
        key = (limit.metric, limit.enforcement, limit.unpriced, limit.fallback_price)
        needed = costs.get(key)
        if needed is None:
            needed = costs[key] = self.worst_case(limit, provider, model, feature, shape=shape)
        if needed >= 0:
            return needed
        # an unpriced model under a USD limit: its `unpriced` policy decides
        if limit.unpriced == "tokens" and any(m.metric == "tokens" for m, _ in matched):
            return Decimal(0)
        if not limit.blocks:
            return Decimal(0)
        if TRY_ONLY.get():  # reads the ledger
            raise WouldWait
        standing = self.store.standing(limit, subject, _now())
        self._refuse()
        error = exceeded(standing, Decimal(0), UnpricedRefused)
        error.args = (
            f"limit {limit.id} ({limit.describe_scope()}) is in USD and {provider}/{model} has no known "
            "price, so the call's cost cannot be bounded (the limit's unpriced='refuse' policy). Add a "
            "price override, or set_limit(..., unpriced='fallback', fallback_price=...) or "
            "unpriced='tokens' with a token limit on the same scope",
        )
        raise error

    def worst_case(
        self,
        limit: Limit,
        provider: str,
        model: str | None,
        feature: str | None,
        input_tokens: int | None = None,
        body: Mapping[str, Any] | None = None,
        cap: int | None = None,
        *,
        shape: Shape | None = None,
    ) -> Decimal:
        """What one call may use at most of `limit`'s metric (its learned average in estimate mode),
        for a `shape`, or the shape of `body` / `input_tokens` with output cap `cap`.

        A negative result means: a USD limit and a model with no price (see `Limit.unpriced`)."""
        if limit.metric == "requests":
            return Decimal(1)
        if limit.enforcement == "estimate":
            learned = self._averages.get((limit.metric, model or "", feature))
            if learned is not None:
                return learned
        if shape is None:
            strict = limit.enforcement == "strict"
            shape = shape_of(
                body,
                model,
                provider,
                default_output_cap=self.policy.default_output_cap,
                max_output_tokens=cap,
                input_tokens=input_tokens,
                bound=strict,
                estimate=not strict,
            )
        amount = limit_amount(limit, self.pricer, provider, model, shape)
        if amount == UNPRICED:
            key = f"{provider}/{model}"
            if key not in self._warned:
                self._warned.add(key)
                log.warning("llmledger: %s has no price; USD limits apply their `unpriced` policy", key)
        return amount

    def learn(self, event: UsageEvent) -> None:
        """Update the running averages `estimate` mode reserves (call it for every written event)."""
        if event.status != "ok" or not self._limits:
            return
        for limit in self._limits:
            if limit.enforcement != "estimate":
                continue
            key = (limit.metric, event.requested_model or event.model, event.feature)
            actual = event_amount(limit, event)
            old = self._averages.get(key)
            self._averages[key] = actual if old is None else (old * 4 + actual) / 5


def _matches(limits: list[Limit], scope: Mapping[str, str | None]) -> list[tuple[Limit, str]]:
    """(limit, subject) of each limit that applies to `scope`."""
    return [(limit, subject) for limit in limits if (subject := limit.subject(scope)) is not None]


def _fresh_lock(ref: weakref.ref[Enforcer]) -> None:
    enforcer = ref()
    if enforcer is not None:
        enforcer._lock = threading.Lock()


def _now() -> datetime:
    return datetime.now(timezone.utc)
