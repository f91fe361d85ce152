"""The limits API in remote mode: `set_limit`, `limits`, `delete_limit`, `top_up`, `remaining` and
`check` go to the server's `/api/v1/limits` endpoints (`server/routes/limits.py`).

Definitions are checked here first with the embedded code (`limit_admin.check_definition`), so a bad one
raises the same `LimitDefinitionError` without a round trip; the server checks them again. Changing
limits needs an admin key, reading them a read key: otherwise `AuthenticationError`. A server that
does not answer raises `ServerUnavailable` (these calls are the caller's own, not metering).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger.engine.limit_admin import LimitStatus, check_definition, fits, tightest_first
from llmledger.errors import LimitDefinitionError, ValidationError
from llmledger.limit.model import SCOPE_KEYS, Limit
from llmledger.storage.decide import Standing

if TYPE_CHECKING:
    from llmledger.sdk.runtime import Runtime

__all__ = ["check", "define", "delete", "limits", "status", "top_up"]

_SEPARATE = frozenset(("tags", "thresholds", "fallback_price", *SCOPE_KEYS))
"""Keywords of `set_limit` not sent as they are (the scope, and lists of decimal strings)."""


def _http(runtime: Runtime) -> Any:
    assert runtime.remote is not None
    return runtime.remote.http


def _text(name: str, value: Any) -> Any:
    """A keyword's JSON form: amounts as decimal strings (a float's shortest repr), the rest as given."""
    if name in ("usd", "tokens", "requests"):
        return value if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return value if isinstance(value, (str, int, float, dict)) else str(value)


def define(runtime: Runtime, **fields: Any) -> Limit:
    """Create or replace a limit on the server (the keywords of `set_limit`); returns it as stored.
    Raises `LimitDefinitionError` listing the definition's problems."""
    check_definition(**fields)  # every problem, as embedded mode words it, before anything is sent
    body: dict[str, Any] = {k: _text(k, v) for k, v in fields.items() if k not in _SEPARATE and v is not None}
    body["thresholds"] = [str(t) for t in fields.get("thresholds", (0.5, 0.8, 1.0))]
    if fields.get("fallback_price") is not None:
        body["fallback_price"] = [str(p) for p in fields["fallback_price"]]
    if isinstance(body.get("downgrade"), Mapping):
        body["downgrade"] = dict(body["downgrade"])
    scope = {k: fields[k] for k in SCOPE_KEYS if fields.get(k) is not None}
    if fields.get("tags"):
        scope["tags"] = dict(fields["tags"])
    body["scope"] = scope
    try:
        answer = _http(runtime).request("POST", "/api/v1/limits", json_body=body).body
    except ValidationError as exc:
        raise LimitDefinitionError(str(exc)) from None
    return Limit.from_dict(answer)


def limits(runtime: Runtime) -> list[Limit]:
    """Every limit the server holds (that this key may see)."""
    answer = _http(runtime).request("GET", "/api/v1/limits").body
    return [Limit.from_dict(d) for d in answer["limits"]]


def delete(runtime: Runtime, limit_id: str) -> bool:
    """Remove a limit on the server; False if there was none."""
    try:
        _http(runtime).request("DELETE", f"/api/v1/limits/{limit_id}")
    except ValidationError as exc:
        if exc.status in (404, 422):  # 422: not even a limit id
            return False
        raise
    return True


def top_up(runtime: Runtime, limit_id: str, amount: Any, scope: Mapping[str, Any]) -> Decimal:
    """Add credit to a lifetime limit on the server; the credit granted so far. Raises
    `LimitDefinitionError` (no such limit, not a lifetime limit, a bad amount)."""
    wire = {k: v for k, v in scope.items() if v is not None}
    try:
        answer = (
            _http(runtime)
            .request(
                "POST", f"/api/v1/limits/{limit_id}/top-up", json_body={"amount": str(amount), "scope": wire}
            )
            .body
        )
    except ValidationError as exc:
        raise LimitDefinitionError(f"top-up of {limit_id!r}: {exc}") from None
    return Decimal(answer["granted"])


def status(runtime: Runtime, scope: Mapping[str, str | None]) -> list[LimitStatus]:
    """Every limit that applies to `scope` (as `scope_of_call` builds it), tightest first."""
    found = {limit.id: limit for limit in limits(runtime)}
    wanted = {lid: subject for lid, limit in found.items() if (subject := limit.subject(scope)) is not None}
    if not wanted:
        return []
    params: dict[str, Any] = {k: v for k, v in scope.items() if v is not None and not k.startswith("tag:")}
    tags = [f"{k[4:]}:{v}" for k, v in scope.items() if k.startswith("tag:") and v is not None]
    if tags:
        params["tag"] = tags
    rows = _http(runtime).request("GET", "/api/v1/limits/status", params=params).body["statuses"]
    return tightest_first(
        LimitStatus(
            limit=found[row["limit_id"]],
            subject=row["subject"],
            spent=Decimal(row["spent"]),
            reserved=Decimal(row["reserved"]),
            allowed=Decimal(row["allowed"]),
            remaining=Decimal(row["remaining"]),
            resets_at=None if row["resets_at"] is None else datetime.fromisoformat(row["resets_at"]),
        )
        for row in rows
        if wanted.get(row["limit_id"]) == row["subject"]
    )


def check(
    runtime: Runtime,
    scope: Mapping[str, str | None],
    *,
    provider: str,
    model: str,
    input_tokens: int,
    max_output_tokens: int | None,
) -> list[LimitStatus]:
    """Would a call fit? Its worst case (priced here) against where each limit stands on the server.
    Raises `LimitExceeded` if a hard limit would refuse it; reserves nothing."""
    from llmledger.engine.costs import limit_amount
    from llmledger.limit.request import shape_of

    shape = shape_of(
        None,
        model,
        provider,
        default_output_cap=runtime.config.default_output_cap,
        max_output_tokens=max_output_tokens,
        input_tokens=input_tokens,
    )
    standings = (
        Standing(s.limit, s.subject, s.spent, s.reserved, s.allowed, s.resets_at)
        for s in status(runtime, scope)
    )
    return fits(standings, lambda limit: limit_amount(limit, runtime.pricer, provider, model, shape))
