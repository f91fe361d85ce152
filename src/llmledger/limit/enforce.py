"""Enforcement: match a call to the limits that apply, reserve its worst case, raise if refused.

`strict` (the default) reserves an upper bound: input tokens bounded by the UTF-8 bytes of the whole
request body (byte-level tokenizers never produce more tokens than bytes; the body also covers
message framing and tool definitions), output by the request's own cap
(`max_tokens` / `max_completion_tokens` / `max_output_tokens`, else `default_output_cap`), priced at
the dearer of plain input and 1-hour cache writes. So committed spend cannot pass a hard limit when
the provider honours the cap. `estimate` reserves the average actual use of recent calls of the same
model and feature instead (strict until there is history): a nearly full budget still admits calls
that fit, and the overshoot is bounded by (calls in flight) x (their excess over the average).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger.errors import LimitExceeded, RateLimited
from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.instrumentation.estimate import estimate_tokens, request_text
from llmledger.limit.model import Limit
from llmledger.storage.limits import Held, Standing, event_amount

if TYPE_CHECKING:
    from llmledger.sdk.runtime import Runtime

__all__ = ["Alert", "Enforcer", "exceeded", "output_cap", "strict_input_bound"]

log = logging.getLogger("llmledger")
_CAP_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
_REFRESH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Alert:
    """A threshold crossed (`on_threshold` receives it once per limit, subject and window)."""

    limit: Limit
    subject: str
    threshold: Decimal
    spent: Decimal
    allowed: Decimal


def strict_input_bound(body: Mapping[str, Any] | None) -> int:
    """An upper bound of a request's input tokens: the UTF-8 bytes of its whole JSON body.

    A byte-level tokenizer never makes more tokens than bytes, and serializing the body covers what
    the provider counts beside the message text: per-message framing, tool definitions, system
    prompts. (Images and audio referenced by URL are not bounded by this.)
    """
    if not body:
        return 0
    try:
        return len(json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8"))
    except (TypeError, ValueError):
        return len(request_text(body).encode("utf-8")) * 2 + 1024


def output_cap(body: Mapping[str, Any] | None) -> int | None:
    """The output token cap a request sets, if any (OpenAI, Anthropic, Responses, Gemini)."""
    if not body:
        return None
    for key in _CAP_KEYS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    config = body.get("generationConfig")
    if isinstance(config, Mapping):
        value = config.get("maxOutputTokens")
        if isinstance(value, int) and value > 0:
            return value
    return None


class Enforcer:
    """A runtime's view of the limits: cached definitions, reservations, learned averages."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._limits: list[Limit] = []
        self._checked = 0.0
        self._averages: dict[tuple[str, str, str | None], Decimal] = {}
        self._warned: set[str] = set()
        self.refused = 0
        """Calls refused so far (`stats().calls_refused`)."""

    def limits(self, *, fresh: bool = False) -> list[Limit]:
        """The limits in force (re-read from the ledger at most once a second, or when `fresh`)."""
        now = time.monotonic()
        if fresh or now - self._checked > _REFRESH_SECONDS:
            _, loaded = self.runtime.ledger.limits.load()  # one query unless they changed
            with self._lock:
                self._limits = loaded
            self._checked = now
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

        Returns (reservation id, or None when no limit applies; the model to send instead when a soft
        limit's downgrade applies, or None). Raises `LimitExceeded` (before anything is sent) when a
        hard limit refuses, and `RateLimited` when a throttle has no room within its `max_wait`.
        """
        matched = [
            (limit, subject) for limit in self.limits() if (subject := limit.subject(scope)) is not None
        ]
        if not matched:
            return None, None
        config = self.runtime.config
        store = self.runtime.ledger.limits
        cap = max_output_tokens or output_cap(body) or config.default_output_cap
        swap = self._downgrade(matched, model, provider, feature, input_tokens, body, cap)
        if swap is not None:
            model = swap
        held = [
            Held(limit, subject, self.worst_case(limit, provider, model, feature, input_tokens, body, cap))
            for limit, subject in matched
        ]
        rid = uuid7()
        deadline: float | None = None
        while True:
            decision = store.reserve(held, rid, datetime.now(timezone.utc), config.reservation_ttl)
            if not decision.violated:
                break
            standing, needed = decision.violated[0]
            limit = standing.limit
            if limit.mode != "throttle":
                self._refuse()
                raise exceeded(standing, needed)
            wait = _seconds_until(standing.resets_at)
            if deadline is None:
                deadline = time.monotonic() + limit.max_wait
            if wait is None or time.monotonic() + wait > deadline:
                self._refuse()
                raise exceeded(standing, needed, RateLimited)
            time.sleep(max(wait, 0.005))  # wait for the oldest slot to roll out, then try again
        hook = config.on_threshold
        for standing, level in decision.fired:
            if hook is not None:
                try:
                    hook(Alert(standing.limit, standing.subject, level, standing.spent, standing.allowed))
                except Exception as exc:  # the user's hook: log, never break the call
                    log.warning("llmledger: on_threshold hook raised %s: %s", type(exc).__name__, exc)
        return rid, swap

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
        """What one call may use at most of `limit`'s metric (its learned average in estimate mode)."""
        if limit.metric == "requests":
            return Decimal(1)
        if limit.enforcement == "estimate":
            learned = self._averages.get((limit.metric, model or "", feature))
            if learned is not None:
                return learned
        if input_tokens is None:
            input_tokens = (
                strict_input_bound(body)
                if limit.enforcement == "strict"
                else estimate_tokens(request_text(body))
            )
        if limit.metric == "tokens":
            return Decimal(input_tokens + cap)
        return self._price(provider, model, input_tokens, cap)

    def _price(self, provider: str, model: str | None, input_tokens: int, cap: int) -> Decimal:
        pricer = self.runtime.pricer
        now = datetime.now(timezone.utc)
        worst = Decimal(0)
        for usage in (
            {"input_tokens": input_tokens, "output_tokens": cap},
            {"input_tokens": input_tokens, "cache_write_tokens": input_tokens, "output_tokens": cap},
            {
                "input_tokens": input_tokens,
                "cache_write_tokens": input_tokens,
                "cache_write_1h_tokens": input_tokens,
                "output_tokens": cap,
            },
        ):
            priced = pricer.price(provider, model or "unknown", dict(usage), now)
            if priced.cost is None:
                key = f"{provider}/{model}"
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning(
                        "llmledger: %s has no price, so USD limits cannot bound its calls (reserved $0); "
                        "add it to a price overrides file",
                        key,
                    )
                return worst
            worst = max(worst, priced.cost)
        return worst

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
        self.runtime.ledger.limits.release([reservation_id])


def _seconds_until(at: datetime | None) -> float | None:
    return None if at is None else max(0.0, (at - datetime.now(timezone.utc)).total_seconds())


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
