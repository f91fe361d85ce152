"""Enforcement: match a call to the limits that apply, reserve its worst case, raise if refused.

`strict` (the default) reserves an upper bound (`limit/worst.py`): the prompt bounded with the
model's real tokenizer (OpenAI) or by bytes (others), the output cap times the choices asked for,
at the dearest rate that could apply (service tier, long-context tier, audio/image output), plus
per-call tool fees. So committed spend cannot pass a hard limit when the provider honours the cap.
`estimate` reserves the average actual use of recent calls of the same model and feature instead.

A finished call's reservation is SETTLED to its actual use when the call ends (`settle`), before
its event is written. When the ledger cannot decide (locked past `limit_timeout`, disk full, an
internal fault) the `on_ledger_fault` policy applies: `open` sends the call (counted in
`stats().calls_unchecked`, metered as usual), `closed` raises `LimitUndecided`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from llmledger._internal import internal_error
from llmledger.errors import LedgerBusy, LimitExceeded, LimitUndecided, RateLimited
from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.instrumentation.estimate import estimate_tokens, request_text
from llmledger.limit import worst
from llmledger.limit.model import Alert, Limit
from llmledger.storage.limits import Held, Standing, event_amount
from llmledger.tokens import prompt_tokens_bound, warm

if TYPE_CHECKING:
    from llmledger.sdk.runtime import Runtime

__all__ = ["Alert", "Enforcer", "UnpricedRefused", "exceeded", "output_cap"]

log = logging.getLogger("llmledger")
output_cap = worst.output_cap
_REFRESH_SECONDS = 1.0
_LEDGER_FAULTS = (LedgerBusy, sa.exc.SQLAlchemyError, sqlite3.Error, OSError)
_TIERS_OF_AUTO = (None, "priority", "flex", "scale")


class UnpricedRefused(LimitExceeded):
    """A USD limit refused a call to a model with no known price (its `unpriced="refuse"` policy)."""


class Enforcer:
    """A runtime's view of the limits: cached definitions, reservations, learned averages."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
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
        self.refused = 0
        """Calls refused so far (`stats().calls_refused`)."""
        self.unchecked = 0
        """Calls sent without a decision because the ledger could not decide (`stats().calls_unchecked`)."""
        self.last_fault: str | None = None

    def limits(self, *, fresh: bool = False) -> list[Limit]:
        """The limits in force (re-read from the ledger at most once a second, or when `fresh`)."""
        now = time.monotonic()
        if fresh or now - self._checked > _REFRESH_SECONDS:
            store = self.runtime.ledger.limits
            store.decision_timeout = self.runtime.config.limit_timeout
            _, loaded = store.load()  # one query unless they changed
            with self._lock:
                self._limits = loaded
            self._checked = now
            if loaded and not self._warmed:
                self._warmed = True
                warm()  # load the tokenizer ahead of the first call (on a background thread)
        return self._limits

    def admit(
        self,
        scope: Mapping[str, str | None],
        *,
        provider: str,
        model: str | None,
        feature: str | None,
        input_tokens: int | None = None,
        body: Mapping[str, Any] | None = None,
        max_output_tokens: int | None = None,
    ) -> tuple[str | None, str | None]:
        """Reserve a call's worst case against every limit that applies.

        Returns (reservation id, or None when no limit applies or the ledger could not decide under
        `on_ledger_fault="open"`; the model to send instead when a soft limit's downgrade applies, or
        None). Raises `LimitExceeded` (before anything is sent) when a blocking limit refuses,
        `RateLimited` when a throttle has no room within its `max_wait`, and `LimitUndecided` when
        the ledger cannot decide and `on_ledger_fault="closed"`.
        """
        try:
            return self._admit(scope, provider, model, feature, input_tokens, body, max_output_tokens)
        except LimitExceeded:
            raise
        except Exception as exc:
            self.undecided(exc)
            return None, None

    def undecided(self, exc: Exception) -> None:
        """Apply `on_ledger_fault` to a decision the ledger could not make: count and log it, then
        return (open) or raise `LimitUndecided` (closed)."""
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
        with self._lock:
            self.unchecked += 1
            first = self.unchecked == 1
            self.last_fault = reason
        if not isinstance(exc, _LEDGER_FAULTS):  # our own bug: logged and counted (raised in our tests)
            try:
                internal_error(exc, "deciding a spend limit")
            except Exception as err:
                if self.runtime.config.on_ledger_fault == "closed":
                    raise LimitUndecided(reason) from err
                raise
        if self.runtime.config.on_ledger_fault == "closed":
            with self._lock:
                self.refused += 1
            raise LimitUndecided(reason) from exc
        if first or self.unchecked % 1000 == 0:
            log.warning(
                "llmledger: no limit decision (%s); %d call(s) sent unchecked (on_ledger_fault='open')",
                reason,
                self.unchecked,
            )

    def _admit(
        self,
        scope: Mapping[str, str | None],
        provider: str,
        model: str | None,
        feature: str | None,
        input_tokens: int | None,
        body: Mapping[str, Any] | None,
        max_output_tokens: int | None,
    ) -> tuple[str | None, str | None]:
        matched = [
            (limit, subject) for limit in self.limits() if (subject := limit.subject(scope)) is not None
        ]
        if not matched:
            return None, None
        config = self.runtime.config
        store = self.runtime.ledger.limits
        cap = max_output_tokens or worst.output_cap(body) or config.default_output_cap
        swap = self._downgrade(matched, model, provider, feature, input_tokens, body, cap)
        if swap is not None:
            model = swap
        held = [
            Held(
                limit,
                subject,
                self._needed(limit, subject, matched, provider, model, feature, input_tokens, body, cap),
            )
            for limit, subject in matched
        ]
        rid = uuid7()
        deadline: float | None = None
        while True:
            decision = store.reserve(held, rid, config.reservation_ttl)
            self.announce(decision.fired)
            if not decision.violated:
                break
            standing, needed = decision.violated[0]
            limit = standing.limit
            if limit.mode != "throttle":
                self._refuse()
                raise exceeded(standing, needed)
            wait = _seconds_until(standing.resets_at, decision.at_us)
            if deadline is None:
                deadline = time.monotonic() + limit.max_wait
            if wait is None or time.monotonic() + wait > deadline:
                self._refuse()
                raise exceeded(standing, needed, RateLimited)
            time.sleep(max(wait, 0.005))  # wait for the oldest slot to roll out, then try again
        with self._lock:
            if len(self._held) > 100_000:  # calls that never ended (their reservations expire)
                self._held.clear()
            self._held[rid] = tuple(h.limit for h in held)
        return rid, swap

    def announce(self, alerts: list[Alert]) -> None:
        """Hand alerts to `init(on_threshold=...)` (a fault in the hook is logged, never raised)."""
        hook = self.runtime.config.on_threshold
        if hook is None:
            return
        for alert in alerts:
            try:
                hook(alert)
            except Exception as exc:  # the user's hook: log, never break the call
                log.warning("llmledger: on_threshold hook raised %s: %s", type(exc).__name__, exc)

    def settle(self, reservation_id: str, event: UsageEvent) -> None:
        """The call of `reservation_id` ended with `event`: hold its actual use instead of its worst
        case until the event is written. A ledger fault leaves the worst case held (safe)."""
        with self._lock:
            held = self._held.pop(reservation_id, ())
        amounts = {limit.id: event_amount(limit, event) for limit in held}
        try:
            self.runtime.ledger.limits.settle(reservation_id, amounts)
        except _LEDGER_FAULTS as exc:
            log.debug("llmledger: settling %s failed (%s); held until written", reservation_id, exc)

    def _refuse(self) -> None:
        with self._lock:
            self.refused += 1

    def _downgrade(
        self,
        matched: list[tuple[Limit, str]],
        model: str | None,
        provider: str,
        feature: str | None,
        input_tokens: int | None,
        body: Mapping[str, Any] | None,
        cap: int,
    ) -> str | None:
        """The cheaper model a reached soft limit maps `model` to, if any."""
        if model is None:
            return None
        now = datetime.now(timezone.utc)
        for limit, subject in matched:
            target = dict(limit.downgrade).get(model)
            if target is None:
                continue
            standing = self.runtime.ledger.limits.standing(limit, subject, now)
            needed = self.worst_case(limit, provider, model, feature, input_tokens, body, cap)
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
        input_tokens: int | None,
        body: Mapping[str, Any] | None,
        cap: int,
    ) -> Decimal:
        needed = self.worst_case(limit, provider, model, feature, input_tokens, body, cap)
        if needed >= 0:
            return needed
        # an unpriced model under a USD limit: its `unpriced` policy decides
        if limit.unpriced == "tokens" and any(m.metric == "tokens" for m, _ in matched):
            return Decimal(0)
        if not limit.blocks:
            return Decimal(0)
        standing = self.runtime.ledger.limits.standing(limit, subject, _now())
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
        input_tokens: int | None,
        body: Mapping[str, Any] | None,
        cap: int,
    ) -> Decimal:
        """What one call may use at most of `limit`'s metric (its learned average in estimate mode).

        A negative result means: a USD limit and a model with no price (see `Limit.unpriced`)."""
        if limit.metric == "requests":
            return Decimal(1)
        if limit.enforcement == "estimate":
            learned = self._averages.get((limit.metric, model or "", feature))
            if learned is not None:
                return learned
        if input_tokens is None:
            input_tokens = (
                prompt_tokens_bound(body, model)
                if limit.enforcement == "strict"
                else estimate_tokens(request_text(body))
            )
        shape = worst.Shape(
            input_tokens=input_tokens,
            output_tokens=cap,
            choices=worst.choices(body),
            tier=worst.requested_tier(body),
            tool_calls=(tools := worst.tool_calls(body))[0],
            tool_kinds=tools[1],
            cache_write=worst.marks_cache(body),
            audio=worst.asks_audio(body, model),
        )
        if limit.metric == "tokens":
            extra = shape.tool_calls * worst.TOOL_INPUT_TOKENS
            return Decimal(input_tokens + extra + shape.choices * cap)
        return self._price(limit, provider, model, shape)

    def _price(self, limit: Limit, provider: str, model: str | None, shape: worst.Shape) -> Decimal:
        from llmledger.pricing.catalog import UnknownPrice

        pricer = self.runtime.pricer
        now = _now()
        tiers = _TIERS_OF_AUTO if shape.tier == "auto" else (shape.tier,)
        dearest = Decimal(-1)
        for tier in tiers:
            try:
                quote = pricer.quote(provider, model or "unknown", now, tier)
            except UnknownPrice:
                continue
            cost = worst.rates_cost(quote.prices, shape, quote.multiplier)
            if tier == "priority":
                standard = pricer.quote(provider, model or "unknown", now, None)
                if standard.prices == quote.prices:  # the catalogue has no priority price
                    cost *= worst.PRIORITY_FACTOR
            dearest = max(dearest, cost)
        if dearest >= 0:
            return dearest
        if limit.unpriced == "fallback" and limit.fallback_price is not None:
            per_in, per_out = limit.fallback_price
            tokens_in = shape.input_tokens + shape.tool_calls * worst.TOOL_INPUT_TOKENS
            return (tokens_in * per_in + shape.choices * shape.output_tokens * per_out) / 1_000_000
        key = f"{provider}/{model}"
        if key not in self._warned:
            self._warned.add(key)
            log.warning("llmledger: %s has no price; USD limits apply their `unpriced` policy", key)
        return Decimal(-1)

    def learn(self, event: UsageEvent) -> None:
        """Update the running averages `estimate` mode reserves (called for every written event)."""
        if event.status != "ok" or not self._limits:
            return
        for limit in self._limits:
            if limit.enforcement != "estimate":
                continue
            key = (limit.metric, event.requested_model or event.model, event.feature)
            actual = event_amount(limit, event)
            old = self._averages.get(key)
            self._averages[key] = actual if old is None else (old * 4 + actual) / 5

    def release(self, reservation_id: str) -> None:
        with self._lock:
            self._held.pop(reservation_id, None)
        self.runtime.ledger.limits.release([reservation_id])


def _fresh_lock(ref: weakref.ref[Enforcer]) -> None:
    enforcer = ref()
    if enforcer is not None:
        enforcer._lock = threading.Lock()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _seconds_until(at: datetime | None, now_us: int) -> float | None:
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
