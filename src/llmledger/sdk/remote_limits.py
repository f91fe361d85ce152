"""Spend limits in remote mode: the server decides, through reservations over HTTP.

Before a limited call is sent, `admit` reserves its worst case on the server
(`POST /api/v1/reservations` with the request's `Shape` — token counts, output cap, choices, tier,
tools — computed here: the prompt text never leaves the host) under an id the caller journaled
first (`instrumentation/call.py: gate`), so that a process killed at any instant has it released
when its journal is replayed (`RemoteSink.replay` deletes it on the server). A refusal raises the
same `LimitExceeded` / `RateLimited` / `UnpricedRefused` as embedded mode, before anything is sent.
The call's event carries its `reservation_id`: the server drops the reservation in the transaction
that stores the event.

The wait is bounded: every decision request has `limit_timeout` seconds (one attempt, on its own
kept-alive connection). When the server does not answer in time, is unreachable or cannot decide,
`on_ledger_fault` applies as in embedded mode: `open` sends the call (counted in
`stats().calls_unchecked`), `closed` raises `LimitUndecided`; a server that failed is not waited
for again by every call for a second. Which limits exist is read from `GET /api/v1/limits` (at most
once a second, in the background once read), so calls no limit can apply to never wait for the
network; a key that may not read limits (ingest scope) reserves every call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger.errors import (
    AuthenticationError,
    LimitExceeded,
    LimitUndecided,
    RateLimited,
    ServerError,
    ServerUnavailable,
    UnpricedRefused,
)
from llmledger.limit.model import Limit
from llmledger.remote.http import HttpClient
from llmledger.tokens import warm

if TYPE_CHECKING:
    from llmledger.events.event import UsageEvent
    from llmledger.sdk.runtime import Runtime

__all__ = ["RemoteEnforcer"]

log = logging.getLogger("llmledger")

_REFRESH_SECONDS = 1.0
_LABELS = ("tenant", "user", "org", "feature", "agent", "session")
_ANY = object()
"""What `limits()` holds when this key may not read the limits: some may apply; reserve every call."""
_REFUSALS: dict[str, type[LimitExceeded]] = {
    "limit_exceeded": LimitExceeded,
    "credit_exhausted": LimitExceeded,
    "rate_limited": RateLimited,
    "unpriced_refused": UnpricedRefused,
}


class RemoteEnforcer:
    """The `Enforcer` of a remote-mode runtime (the instrumentation's `gate` and `guard()` use it).

    Thread-safe. Raises nothing but the decisions (`LimitExceeded` and kinds, `LimitUndecided`).
    """

    def __init__(self, runtime: Runtime) -> None:
        config = runtime.config
        self.config = config
        # Decisions: one attempt each, bounded by limit_timeout, on their own connections.
        self.http = HttpClient(
            config.server or "", config.api_key or "", timeout=config.limit_timeout, max_retries=0
        )
        self._lock = threading.Lock()
        self._limits: list[Any] | None = None
        self._checked = 0.0
        self._refreshing = False
        self._down_until = 0.0
        self._down: ServerError | None = None
        """The failure of the last read of the limits, raised again until `_down_until`."""
        self.refused = 0
        """Calls refused so far (`stats().calls_refused`)."""
        self.unchecked = 0
        """Calls sent without a decision because the server could not decide (`stats().calls_unchecked`)."""
        self.last_fault: str | None = None

    # -- which limits exist -------------------------------------------------------------------

    def limits(self, *, fresh: bool = False) -> list[Any]:
        """The server's limits (`Limit`s; `[_ANY]` when this key may not list them), re-read at most
        once a second — in the background once they have been read. Raises `ServerError` when they
        were never read and the server does not answer (the caller applies `on_ledger_fault`)."""
        now = time.monotonic()
        known = self._limits
        if known is not None and not fresh:
            if now - self._checked > _REFRESH_SECONDS and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh_quietly, name="llmledger-limits", daemon=True).start()
            return known
        if now < self._down_until and not fresh:  # failed a moment ago: do not wait again per call
            down = self._down or ServerUnavailable("the server did not answer")
            raise type(down)(str(down), status=down.status)  # fresh: a raised one keeps its traceback
        try:
            return self._refresh()
        except ServerError as exc:
            self._down_until = time.monotonic() + _REFRESH_SECONDS
            self._down = exc  # the same kind again (a revoked key is not an unreachable server)
            raise

    def _refresh(self) -> list[Any]:
        found: list[Any]
        try:
            found = [Limit.from_dict(d) for d in self.http.request("GET", "/api/v1/limits").body["limits"]]
        except AuthenticationError as exc:
            if exc.status != 403:
                raise
            found = [_ANY]  # an ingest key cannot list them: reserve every call
        if found and self._limits is None:
            warm()  # load the tokenizer the worst cases need ahead of the first call (background)
        self._limits = found
        self._checked = time.monotonic()
        return found

    def _refresh_quietly(self) -> None:
        try:
            self._refresh()
        except Exception as exc:  # keep the last list; the next call tries again
            log.debug("llmledger: reading the server's limits failed: %s", exc)
            self._checked = time.monotonic()
        finally:
            self._refreshing = False

    def applies(self, scope: Mapping[str, str | None]) -> bool:
        """`Enforcer.applies`: whether a call of `scope` may need a reservation."""
        return self._may_apply(scope)

    def _may_apply(self, scope: Mapping[str, str | None]) -> bool:
        """Whether any known limit could apply to `scope`. A scope naming no tenant may still be
        one tenant's on the server (a tenant-bound key fills it in), so it matches any tenant."""
        for limit in self._limits or (_ANY,):
            if not isinstance(limit, Limit):  # _ANY
                return True
            if limit.subject(scope) is not None:
                return True
            if scope.get("tenant") is None:
                wanted = dict(limit.scope).get("tenant")
                named = {**scope, "tenant": "?" if wanted == "*" else wanted}
                if wanted is not None and limit.subject(named) is not None:
                    return True
        return False

    # -- decisions ----------------------------------------------------------------------------

    def admit(
        self,
        scope: Mapping[str, str | None],
        *,
        provider: str,
        model: str | None,
        feature: str | None = None,
        input_tokens: int | None = None,
        body: Mapping[str, Any] | None = None,
        max_output_tokens: int | None = None,
        reservation_id: str | None = None,
    ) -> tuple[str | None, str | None]:
        """Reserve a call's worst case on the server under `reservation_id` (the caller journaled it
        first): (the reservation id or None when no limit applies, the model to send instead or
        None). Raises `LimitExceeded` (and its kinds) when a limit refuses, and `LimitUndecided`
        when the server cannot decide in time and `on_ledger_fault="closed"`."""
        del feature  # in `scope`
        if not self._may_apply(scope):
            return None, None
        from llmledger.limit.request import shape_of

        shape = shape_of(
            body,
            model,
            provider,
            default_output_cap=self.config.default_output_cap,
            max_output_tokens=max_output_tokens,
            input_tokens=input_tokens,
        )
        who: dict[str, Any] = {k: scope.get(k) for k in _LABELS if scope.get(k) is not None}
        tags = {k[4:]: v for k, v in scope.items() if k.startswith("tag:") and v is not None}
        if tags:
            who["tags"] = tags
        payload: dict[str, Any] = {
            "provider": provider,
            "model": model or "unknown",
            "attribution": who,
            "shape": shape.to_wire(),
        }
        if reservation_id is not None:
            payload["reservation_id"] = reservation_id
        try:
            status, answer = self.http.exchange("POST", "/api/v1/reservations", payload)
        except ServerError as exc:
            self.undecided(exc)
            return None, None
        if status in (200, 201):
            if answer.get("unchecked"):
                self._count_unchecked("the server could not decide (its on_ledger_fault is open)")
            return answer.get("reservation_id"), answer.get("model")
        detail = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(detail, dict) and detail.get("type") in _REFUSALS:
            with self._lock:
                self.refused += 1
            raise _refusal(detail)
        if isinstance(detail, dict) and detail.get("type") == "limit_undecided":
            self.undecided(ServerUnavailable(str(detail.get("message")), status=status))
            return None, None
        self.undecided(ServerError(_message(answer, f"HTTP {status}"), status=status))
        return None, None

    def undecided(self, exc: Exception) -> None:
        """`on_ledger_fault` for a decision the server could not make: count and log it, then return
        (open) or raise `LimitUndecided` (closed)."""
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
        if self.config.on_ledger_fault == "closed":
            with self._lock:
                self.unchecked += 1
                self.refused += 1
                self.last_fault = reason
            raise LimitUndecided(reason) from exc
        self._count_unchecked(reason)

    def _count_unchecked(self, reason: str) -> None:
        with self._lock:
            self.unchecked += 1
            first = self.unchecked == 1
            self.last_fault = reason
        if first or self.unchecked % 1000 == 0:
            log.warning(
                "llmledger: a spend limit could not be decided by the server (%s); sent unchecked "
                "(on_ledger_fault='open'), %d so far",
                reason,
                self.unchecked,
            )

    def settle(self, reservation_id: str, event: UsageEvent | Mapping[str, Decimal]) -> None:
        """Nothing to do on the caller's thread: the call's event names its reservation, and the server
        replaces the worst case by the event's cost in the transaction that stores it (within
        `flush_interval`). Until then the worst case stays held: safe for a strict limit."""

    def release(self, reservation_id: str) -> None:
        """Drop a reservation (the call was not made). Best effort: a failure leaves it to expire
        on the server, or to the journal's replay."""
        try:
            self.drop(reservation_id)
        except ServerError as exc:
            log.debug("llmledger: releasing %s failed (%s); it expires on the server", reservation_id, exc)

    def drop(self, reservation_id: str) -> None:
        """`DELETE` a reservation; done when the server answers 204 or 404 (nothing held: released,
        dropped by its event, or expired). Raises `ServerError` otherwise (the journal's replay then
        keeps the record and tries again)."""
        status, answer = self.http.exchange("DELETE", f"/api/v1/reservations/{reservation_id}", None)
        if status not in (204, 404):
            raise ServerError(_message(answer, f"HTTP {status}"), status=status)

    def learn(self, event: UsageEvent) -> None:
        """Embedded mode learns averages for estimate limits; the server does (nothing to do)."""

    def announce(self, alerts: list[Any]) -> None:
        """Threshold alerts are the server's (its webhooks); nothing is announced here."""


def _refusal(detail: Mapping[str, Any]) -> LimitExceeded:
    def amount(name: str) -> Decimal:
        try:
            return Decimal(str(detail.get(name) or 0))
        except ArithmeticError:
            return Decimal(0)

    resets = detail.get("resets_at")
    exc = _REFUSALS[str(detail["type"])](
        limit_id=str(detail.get("limit_id") or ""),
        scope=str(detail.get("scope") or ""),
        subject=str(detail.get("subject") or ""),
        metric=str(detail.get("metric") or "usd"),
        limit=amount("limit"),
        spent=amount("spent"),
        reserved=amount("reserved"),
        requested=amount("requested"),
        resets_at=datetime.fromisoformat(resets) if isinstance(resets, str) else None,
        window="",
    )
    exc.args = (str(detail.get("message") or exc),)  # the server's own sentence, window included
    if detail.get("retry_after") is not None:
        exc.retry_after = float(detail["retry_after"])
    return exc


def _message(answer: Any, default: str) -> str:
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or default)
    return str(error) if error else default
