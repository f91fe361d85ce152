"""Validating a limit definition (`set_limit`, `load_limits`, the CLI): every problem at once.

`make_limit` checks each field on its own and raises one `LimitDefinitionError` that lists every
problem found (so a limits file can be fixed in one pass), never a raw exception, whatever the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, TypeVar

from llmledger.errors import LimitDefinitionError
from llmledger.limit.model import SCOPE_KEYS, Limit, Window, parse_window

__all__ = ["MAX_AMOUNT", "make_limit"]

T = TypeVar("T")
MAX_AMOUNT = Decimal(10) ** 15
"""The largest amount of any metric a limit may hold (well within the stores' int64 and decimals)."""
_NAMES = frozenset(
    (
        "usd",
        "tokens",
        "requests",
        "per",
        "tz",
        "week_start",
        "month_anchor",
        "mode",
        "enforcement",
        "thresholds",
        "name",
        "tags",
        "max_wait",
        "downgrade",
        "unpriced",
        "fallback_price",
    )
)


def _amount(name: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise LimitDefinitionError(f"{name} must be a number, got {value!r:.80}")
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise LimitDefinitionError(f"{name} must be a number, got {value!r:.80}") from exc
    if not dec.is_finite() or dec < 0 or dec > MAX_AMOUNT:
        raise LimitDefinitionError(
            f"{name} must be a finite amount >= 0 and at most 10**15, got {value!r:.80}"
        )
    if name in ("tokens", "requests") and dec != dec.to_integral_value():
        raise LimitDefinitionError(f"{name} must be a whole number, got {value!r:.80}")
    return dec


def _label(what: str, value: Any) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > 256
        or "\x00" in value
        or not value.isprintable()
        or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    ):
        raise LimitDefinitionError(
            f"{what} must be a non-empty printable string of at most 256 characters (or '*' for each value), "
            f"got {value!r:.80}"
        )
    return value


def _pair(what: str, first: Any, what_second: str, second: Any) -> tuple[str, str]:
    return _label(what, first), _label(what_second, second)


def _levels(thresholds: Any) -> tuple[Decimal, ...]:
    bad = LimitDefinitionError(
        f"thresholds must be fractions such as (0.5, 0.8, 1.0), got {thresholds!r:.80}"
    )
    if isinstance(thresholds, (str, bytes, Mapping)) or not hasattr(thresholds, "__iter__"):
        raise bad
    levels = set()
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, float, str, Decimal)):
            raise bad
        try:
            level = Decimal(str(t))
        except (InvalidOperation, ValueError) as exc:
            raise bad from exc
        if not level.is_finite() or not 0 < level <= 10:
            raise LimitDefinitionError(f"thresholds must be fractions above 0 and at most 10, got {t!r:.40}")
        levels.add(level)
    if len(levels) > 20:
        raise LimitDefinitionError("at most 20 thresholds")
    return tuple(sorted(levels))


def _fallback(unpriced: Any, price: Any, metric: str | None) -> tuple[Decimal, Decimal] | None:
    if unpriced not in ("refuse", "fallback", "tokens"):
        raise LimitDefinitionError(
            f"unpriced={unpriced!r:.40}: use 'refuse' (the default), 'fallback' (with fallback_price="
            "(input, output) USD per million tokens) or 'tokens' (a token limit bounds such calls)"
        )
    if unpriced != "fallback":
        if price is not None:
            raise LimitDefinitionError("fallback_price only applies with unpriced='fallback'")
        return None
    if metric not in (None, "usd"):
        raise LimitDefinitionError("unpriced='fallback' only applies to usd= limits")
    if isinstance(price, Mapping):
        price = (price.get("input"), price.get("output"))
    if not isinstance(price, (list, tuple)) or len(price) != 2:
        raise LimitDefinitionError(
            f"fallback_price must be (input, output) USD per million tokens, got {price!r:.80}"
        )
    return _amount("fallback_price", price[0]), _amount("fallback_price", price[1])


def _mapping(what: str, value: Any) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LimitDefinitionError(f"{what} must be a mapping such as {{'plan': 'free'}}, got {value!r:.80}")
    if len(value) > 64:
        raise LimitDefinitionError(f"{what}: at most 64 entries")
    return value


def make_limit(limit_id: str, **fields: Any) -> Limit:
    """Build a validated `Limit` from `set_limit`'s keywords; raises `LimitDefinitionError` listing
    every problem (each naming its field and what to fix)."""
    problems: list[str] = []

    def check(fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except LimitDefinitionError as exc:
            problems.append(str(exc))
        except Exception as exc:  # whatever the input: a typed error, never a raw one
            problems.append(f"invalid value ({type(exc).__name__}: {exc})"[:200])
        return None

    given = [(m, fields.get(m)) for m in ("usd", "tokens", "requests") if fields.get(m) is not None]
    metric: str | None = None
    amount: Decimal | None = None
    if len(given) != 1:
        problems.append("give exactly one of usd=, tokens= or requests=")
    else:
        metric = given[0][0]
        amount = check(lambda: _amount(given[0][0], given[0][1]))
    window: Window | None = check(
        lambda: parse_window(
            fields.get("per", "month"),
            fields.get("tz", "UTC"),
            fields.get("week_start", "monday"),
            fields.get("month_anchor", 1),
        )
    )
    mode = fields.get("mode", "hard")
    if mode not in ("hard", "soft", "throttle"):
        problems.append(
            f"mode={mode!r:.40}: use 'hard' (block), 'soft' (allow and alert) or 'throttle' "
            "(wait or RateLimited)"
        )
    max_wait = fields.get("max_wait", 0.0)
    if (
        isinstance(max_wait, bool)
        or not isinstance(max_wait, (int, float))
        or not math.isfinite(max_wait)
        or not 0 <= max_wait <= 3600
    ):
        problems.append(f"max_wait must be seconds between 0 and 3600, got {max_wait!r:.40}")
        max_wait = 0.0
    elif max_wait and mode != "throttle":
        problems.append("max_wait only applies to mode='throttle'")
    models: dict[str, str] = {}
    downgrade = check(lambda: _mapping("downgrade", fields.get("downgrade")))
    for old, new in (downgrade or {}).items():
        pair = check(partial(_pair, "downgrade model", old, "downgrade model", new))
        if pair is not None:
            models[pair[0]] = pair[1]
    if models and mode != "soft":
        problems.append("downgrade only applies to mode='soft' (a hard limit blocks instead)")
    enforcement = fields.get("enforcement") or "strict"
    if enforcement not in ("strict", "estimate"):
        problems.append(f"enforcement={enforcement!r:.40}: use 'strict' or 'estimate'")
    items: dict[str, str] = {}
    for key, value in fields.items():
        if key in _NAMES:
            continue
        if key not in SCOPE_KEYS and not (isinstance(key, str) and key.startswith("tag:")):
            problems.append(f"unknown scope {key!r:.40}; use {', '.join(SCOPE_KEYS)} or tags={{...}}")
        elif value is not None:
            label = check(partial(_label, str(key), value))
            if label is not None:
                items[key] = label
    tags = check(lambda: _mapping("tags", fields.get("tags")))
    for tag, value in (tags or {}).items():
        pair = check(partial(_pair, "tag name", tag, f"tag {tag!r:.40}", value))
        if pair is not None:
            items[f"tag:{pair[0]}"] = pair[1]
    levels = check(lambda: _levels(fields.get("thresholds", (0.5, 0.8, 1.0))))
    unpriced = fields.get("unpriced", "refuse")
    fallback = check(lambda: _fallback(unpriced, fields.get("fallback_price"), metric))
    name = fields.get("name")
    if name is not None:
        check(lambda: _label("name", name))
    if problems:
        raise LimitDefinitionError("; ".join(problems))
    assert metric is not None and amount is not None and window is not None and levels is not None
    return Limit(
        limit_id,
        tuple(sorted(items.items())),
        metric,
        amount,
        window,
        mode,
        enforcement,
        levels,
        name,
        float(max_wait),
        tuple(sorted(models.items())),
        unpriced=unpriced,
        fallback_price=fallback,
    )
