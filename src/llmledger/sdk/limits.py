"""The spend-limit API: `set_limit`, `limits`, `delete_limit`, `top_up`, `remaining`, `check`, `guard`.

Limits live in the ledger database, so every process sharing the ledger enforces the same ones. In
remote mode they live on the server (`sdk/remote_admin.py`, `sdk/remote_limits.py`).
Instrumented SDK calls are checked automatically; `guard()` does the same around calls you make
yourself (record them with `track()` inside the block).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmledger.attribution.context import _current, attribution_from
from llmledger.engine import limit_admin
from llmledger.engine.limit_admin import LimitStatus
from llmledger.errors import LimitDefinitionError
from llmledger.events.checks import check_tokens
from llmledger.events.ids import uuid7
from llmledger.limit.define import make_limit
from llmledger.limit.model import SCOPE_KEYS, Limit, scope_of_call
from llmledger.sdk import remote_admin, spool
from llmledger.sdk import runtime as _rt

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "LimitStatus",
    "check",
    "delete_limit",
    "guard",
    "limits",
    "reconcile",
    "remaining",
    "set_limit",
    "top_up",
]

_guarding: ContextVar[list[Any] | None] = ContextVar("llmledger_guard", default=None)


def set_limit(
    *,
    usd: Any = None,
    tokens: Any = None,
    requests: Any = None,
    per: str = "month",
    tz: str = "UTC",
    week_start: str | int = "monday",
    month_anchor: int = 1,
    mode: str = "hard",
    enforcement: str | None = None,
    thresholds: Any = (0.5, 0.8, 1.0),
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    max_wait: float = 0.0,
    downgrade: Mapping[str, str] | None = None,
    unpriced: str = "refuse",
    fallback_price: Any = None,
    **scope: Any,
) -> Limit:
    """Create (or replace) a spend limit and return it.

    `set_limit(usd=50, per="month", tenant="acme")`; `set_limit(usd=1, per="day", user="*",
    tags={"plan": "free"})` (each user on the free plan); `set_limit(tokens=200_000, per="rolling:1h",
    feature="search")`; `set_limit(usd=20, per="lifetime", tenant="t1")` (prepaid credit, see
    `top_up`); `set_limit(requests=60, per="rolling:1m", user="*", mode="throttle", max_wait=5)`
    (wait up to 5 s for room, else `RateLimited`); `set_limit(usd=200, per="month", tenant="acme",
    mode="soft", downgrade={"gpt-4o": "gpt-4o-mini"})` (cheaper model once reached). Scope keys:
    tenant, user, org, feature, agent, model, provider, tags; a value or `*`.
    `unpriced`: what a USD limit does with a model that has no known price — `"refuse"` (default),
    `"fallback"` with `fallback_price=(input, output)` USD per million tokens, or `"tokens"` (admit
    when a token limit bounds the call). The same scope, metric and window replace the earlier limit
    (its id is derived from them). Bad definitions raise `LimitDefinitionError` listing every problem.
    """
    runtime = _rt.current()
    define: Any = limit_admin.define
    target: Any = runtime.enforcer
    if runtime.remote is not None:  # the server holds the limits
        define, target = remote_admin.define, runtime
    return define(  # type: ignore[no-any-return]
        target,
        usd=usd,
        tokens=tokens,
        requests=requests,
        per=per,
        tz=tz,
        week_start=week_start,
        month_anchor=month_anchor,
        mode=mode,
        enforcement=enforcement,
        thresholds=thresholds,
        name=name,
        tags=tags,
        max_wait=max_wait,
        downgrade=downgrade,
        unpriced=unpriced,
        fallback_price=fallback_price,
        **scope,
    )


def load_limits(path: str | os.PathLike[str]) -> list[Limit]:
    """Create or replace every limit of a TOML file (`[[limits]]` tables, the keys of `set_limit`).

    ```toml
    [[limits]]
    usd = 50
    per = "month"
    tenant = "acme"

    [[limits]]
    usd = 1
    per = "day"
    user = "*"
    tags = { plan = "free" }
    ```
    All or nothing: if any entry is invalid, none is applied and `LimitDefinitionError` lists every
    problem with its entry number. Limits not in the file are left as they are.
    """
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LimitDefinitionError(f"cannot read the limits file {file}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LimitDefinitionError(f"the limits file {file} is not valid TOML: {exc}") from exc
    entries = data.get("limits")
    unknown = [k for k in data if k != "limits"]
    if not isinstance(entries, list) or unknown:
        raise LimitDefinitionError(
            f"{file}: expected only [[limits]] tables, got {sorted(data) or 'nothing'}"
        )
    problems = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            problems.append(f"entry {i}: not a table")
            continue
        problems.extend(f"entry {i}: {problem}" for problem in _entry_problems(entry))
    if problems:
        raise LimitDefinitionError(f"{file}: nothing applied; " + "; ".join(problems))
    return [set_limit(**entry) for entry in entries]


def _check(fields: Mapping[str, Any]) -> str | None:
    try:
        make_limit("", **fields)
    except (LimitDefinitionError, TypeError) as exc:
        return str(exc)
    return None


def _entry_problems(entry: Mapping[str, Any]) -> list[str]:
    """Every problem of one `[[limits]]` entry, not only the first: each field is checked on its own,
    on top of the entry's metric, window and mode when those are valid."""
    first = _check(entry)
    if first is None:
        return []
    metrics = ("usd", "tokens", "requests")
    context: dict[str, Any] = {"usd": 1}
    for key in ("per", "mode", "tz"):
        if key in entry and _check({**context, key: entry[key]}) is None:
            context[key] = entry[key]
    problems = [first]
    for key, value in entry.items():
        probe = {key: value} if key in metrics else {**context, key: value}
        found = _check(probe)
        if found is not None and found not in problems:
            problems.append(found)
    return problems


def limits() -> list[Limit]:
    """Every limit defined in the ledger."""
    runtime = _rt.current()
    if runtime.remote is not None:
        return remote_admin.limits(runtime)
    return list(runtime.enforcer.limits(fresh=True))


def delete_limit(limit_id: str) -> bool:
    """Remove a limit (and its counters, reservations, credit); False if there was none."""
    runtime = _rt.current()
    if runtime.remote is not None:
        return remote_admin.delete(runtime, limit_id)
    return limit_admin.delete(runtime.enforcer, limit_id)


def top_up(limit_id: str, amount: Any, **scope: Any) -> Decimal:
    """Add credit to a lifetime limit (for `*` scopes, name the subject: `top_up(id, 10, user="u1")`).

    Returns the total credit granted so far on top of the limit's amount.
    """
    runtime = _rt.current()
    if runtime.remote is not None:
        return remote_admin.top_up(runtime, limit_id, amount, scope)
    return limit_admin.top_up(runtime.enforcer, limit_id, amount, scope)


def _sizes(input_tokens: Any, max_output_tokens: Any) -> None:
    """check()/guard()'s token counts, validated like track()'s (InvalidUsageError naming the field)."""
    sizes = {"input_tokens": input_tokens}
    if max_output_tokens is not None:
        sizes["max_output_tokens"] = max_output_tokens
    check_tokens(sizes)


def _scope(scope: Mapping[str, Any], model: str | None, provider: str | None) -> dict[str, str | None]:
    unknown = [k for k in scope if k not in (*SCOPE_KEYS, "tags")]
    if unknown:
        raise LimitDefinitionError(f"unknown scope {unknown}; use {', '.join(SCOPE_KEYS)} or tags={{...}}")
    runtime = _rt.current()
    given = attribution_from(scope)
    who = runtime.config.defaults.merged(_current.get()).merged(given)
    return scope_of_call(who, model or scope.get("model"), provider or scope.get("provider"))


def remaining(*, model: str | None = None, provider: str | None = None, **scope: Any) -> list[LimitStatus]:
    """Every limit that applies to this scope (plus the current `attribute()` block), tightest first."""
    runtime = _rt.current()
    if runtime.remote is not None:
        return remote_admin.status(runtime, _scope(scope, model, provider))
    return limit_admin.status(runtime.enforcer, _scope(scope, model, provider))


def check(
    *,
    model: str,
    provider: str = "openai",
    input_tokens: int = 0,
    max_output_tokens: int | None = None,
    **scope: Any,
) -> list[LimitStatus]:
    """Would a call fit? Raises `LimitExceeded` (saying which limit and when it resets) if a hard limit
    would refuse its worst case; otherwise returns `remaining()` for the scope. Reserves nothing."""
    _sizes(input_tokens, max_output_tokens)
    values = _scope(scope, model, provider)
    runtime = _rt.current()
    if runtime.remote is not None:
        return remote_admin.check(
            runtime,
            values,
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
        )
    return limit_admin.check(
        runtime.enforcer,
        values,
        provider=provider,
        model=model,
        input_tokens=input_tokens,
        max_output_tokens=max_output_tokens,
    )


@contextmanager
def guard(
    *,
    model: str,
    provider: str = "openai",
    input_tokens: int = 0,
    max_output_tokens: int | None = None,
    **scope: Any,
) -> Iterator[str | None]:
    """Enforce limits around a call you make yourself: reserve its worst case or raise `LimitExceeded`.

    ```python
    with llmledger.guard(model="gpt-4o-mini", max_output_tokens=500, tenant="acme"):
        reply = my_client.complete(...)
        llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=..., output_tokens=...)
    ```
    The `track()` inside settles the reservation; without one, it is released when the block ends.
    Yields the reservation id (None when no limit applies).
    """
    _sizes(input_tokens, max_output_tokens)
    values = _scope(scope, model, provider)
    runtime = _rt.current()
    # Journaled under its id before it exists: a process that dies at any instant of the block
    # (the reservation's commit included) has it released on replay.
    rid: str | None = uuid7()
    held = spool.hold(runtime, rid)
    try:
        rid = runtime.enforcer.admit(
            values,
            provider=provider,
            model=model,
            feature=values.get("feature"),
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
            reservation_id=rid,
        )[0]
    except BaseException:
        if held is not None:
            held.done()
        raise
    used: list[Any] = [rid, False]
    token = _guarding.set(used)
    try:
        yield rid
    finally:
        _guarding.reset(token)
        if rid is not None and not used[1]:
            runtime.enforcer.release(rid)
        if held is not None:
            held.done()


def settles() -> str | None:
    """The reservation the next `track()` settles (inside `guard()`), marking it used."""
    used = _guarding.get()
    if used is None or used[0] is None or used[1]:
        return None
    used[1] = True
    return str(used[0])


def reconcile() -> list[dict[str, Any]]:
    """Compare every limit's counters with the ledger's events; an empty list proves they agree."""
    runtime = _rt.current()
    runtime.writer.flush()
    return runtime.ledger.limits.reconcile()
