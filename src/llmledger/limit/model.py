"""What a spend limit is: a scope, an amount of a metric, a window, a mode. Pure and validated."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmledger.errors import LimitDefinitionError
from llmledger.identity import admission_identity, known_model, model_identity

__all__ = [
    "METRICS",
    "SCOPE_KEYS",
    "Alert",
    "Limit",
    "Window",
    "parse_window",
    "scope_of_call",
]

METRICS = ("usd", "tokens", "requests")
SCOPE_KEYS = ("tenant", "user", "org", "feature", "agent", "model", "provider")
"""Scope dimensions; tags are `tag:<name>` (or `tags={...}` in `set_limit`)."""
_KINDS = ("day", "week", "month", "rolling", "lifetime")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class Window:
    """When a limit's counter starts again: a calendar day/week/month in `tz`, a rolling span, or never."""

    kind: str
    seconds: int = 0
    """The span of a rolling window."""
    tz: str = "UTC"
    week_start: int = 0
    """0 = Monday ... 6 = Sunday."""
    month_anchor: int = 1
    """The day of the month a monthly window starts on (1-28)."""

    def describe(self) -> str:
        if self.kind == "rolling":
            return f"rolling {self.seconds}s"
        return self.kind if self.tz == "UTC" else f"{self.kind} ({self.tz})"


@dataclass(frozen=True, slots=True)
class Limit:
    """A spend limit. `scope` maps dimensions to a value, or `*` for "each distinct value"."""

    id: str
    scope: tuple[tuple[str, str], ...]
    metric: str
    amount: Decimal
    window: Window
    mode: str = "hard"
    enforcement: str = "strict"
    thresholds: tuple[Decimal, ...] = (Decimal("0.5"), Decimal("0.8"), Decimal("1"))
    name: str | None = None
    max_wait: float = 0.0
    """`throttle` mode: how long a call may wait for room before `RateLimited` is raised."""
    downgrade: tuple[tuple[str, str], ...] = ()
    """`soft` mode: requested model -> cheaper model, applied to calls once the limit is reached."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    unpriced: str = "refuse"
    """A USD limit's policy for a model with no known price: `refuse` (the default: a blocking limit
    refuses the call), `fallback` (reserve and count it at `fallback_price`), or `tokens` (admit it
    when a token limit on the call bounds it; it counts $0 here)."""
    fallback_price: tuple[Decimal, Decimal] | None = None
    """(input, output) USD per million tokens, for `unpriced="fallback"`."""

    @property
    def blocks(self) -> bool:
        """Whether a call that does not fit is refused (hard) or held back (throttle)."""
        return self.mode != "soft"

    def subject(self, call: Mapping[str, str | None]) -> str | None:
        """The counter this call counts against (`user=u1` for `user="*"`), or None if out of scope."""
        parts = []
        for key, want in self.scope:
            have = call.get(key)
            if have is None:
                return None
            if want == "*":
                parts.append(f"{key}={have}")
            elif have != want and (key != "model" or not _same_model(call, have, want)):
                return None
        return "&".join(parts)

    def describe_scope(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.scope) or "everything"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": dict(self.scope),
            "metric": self.metric,
            "amount": str(self.amount),
            "window": {
                "kind": self.window.kind,
                "seconds": self.window.seconds,
                "tz": self.window.tz,
                "week_start": self.window.week_start,
                "month_anchor": self.window.month_anchor,
            },
            "mode": self.mode,
            "enforcement": self.enforcement,
            "thresholds": [str(t) for t in self.thresholds],
            "name": self.name,
            "max_wait": self.max_wait,
            "downgrade": dict(self.downgrade),
            "unpriced": self.unpriced,
            "fallback_price": None if self.fallback_price is None else [str(p) for p in self.fallback_price],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limit:
        w = data["window"]
        return cls(
            id=data["id"],
            scope=tuple(sorted(data["scope"].items())),
            metric=data["metric"],
            amount=Decimal(data["amount"]),
            window=Window(w["kind"], w["seconds"], w["tz"], w["week_start"], w["month_anchor"]),
            mode=data["mode"],
            enforcement=data["enforcement"],
            thresholds=tuple(Decimal(t) for t in data["thresholds"]),
            name=data.get("name"),
            max_wait=float(data.get("max_wait", 0.0)),
            downgrade=tuple(sorted((data.get("downgrade") or {}).items())),
            unpriced=data.get("unpriced") or "refuse",
            fallback_price=_pair(data.get("fallback_price")),
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """A limit's threshold crossed by COMMITTED spend, or a blocking limit's refusal (`on_threshold`
    receives each once per limit, subject and window, across processes).

    `kind`: `threshold` (committed spend reached `threshold` x `allowed`: `spent` is the committed
    spend after the commit that crossed it) or `refused` (a call was refused; `threshold` is 1 and
    `spent` the committed spend then). `allowed` is the limit's amount plus any credit.
    """

    limit: Limit
    subject: str
    threshold: Decimal
    spent: Decimal
    allowed: Decimal
    kind: str = "threshold"


def _pair(value: Any) -> tuple[Decimal, Decimal] | None:
    if value is None:
        return None
    first, second = value
    return Decimal(first), Decimal(second)


_REQUESTED = "model:requested"
"""Scope key of the requested model name when no alias or catalogue entry knows it (a deployment)."""


def _same_model(call: Mapping[str, str | None], have: str | None, want: str) -> bool:
    """A limit's model `want` matches a call whose model identity is `have` when the identities
    agree, or when the call asked for `want` by a name only the requester knows (a deployment)."""
    return have == model_identity(want, call.get("provider")) or call.get(_REQUESTED) == want


def scope_of_call(
    attribution: Any,
    model: str | None,
    provider: str | None,
    tags: Mapping[str, str] | None = None,
    *,
    requested: str | None = None,
    admitting: bool = False,
) -> dict[str, str | None]:
    """The dimensions a call is limited by.

    `attribution` is an `Attribution` or a `UsageEvent` (anything with tenant/user/org/feature/agent
    attributes), or a mapping of those labels; `tags` default to its own. `model` may be the
    requested name or the answered snapshot: the scope holds its identity (`llmledger.identity`), so
    `gpt-4o-mini` and `gpt-4o-mini-2024-07-18` count against the same limits. `requested` (default:
    an event's `requested_model`) is the name the caller asked for: when no alias or catalogue entry
    knows it (an Azure deployment), a limit named by it matches too. `admitting=True` (the pre-call
    check) also uses what this process learned about such names, which only adds limits to check.
    """
    if requested is None and not isinstance(attribution, Mapping):
        requested = getattr(attribution, "requested_model", None)
    if not isinstance(attribution, Mapping):
        tags = attribution.tags if tags is None else tags
        attribution = {k: getattr(attribution, k) for k in ("tenant", "user", "org", "feature", "agent")}
    tags = tags or {}
    scope: dict[str, str | None] = {
        k: attribution.get(k) for k in ("tenant", "user", "org", "feature", "agent")
    }
    identity = admission_identity if admitting else model_identity
    scope["model"], scope["provider"] = identity(model, provider), provider
    if requested is not None and not known_model(requested, provider):
        scope[_REQUESTED] = requested
    for name, value in tags.items():
        scope[f"tag:{name}"] = value
    return scope


def parse_window(
    per: str, tz: str = "UTC", week_start: str | int = "monday", month_anchor: int = 1
) -> Window:
    """`day`, `week`, `month`, `lifetime`, or `rolling:<n><s|m|h|d|w>` (e.g. `rolling:24h`)."""
    if not isinstance(per, str):
        raise LimitDefinitionError(f"per must be a string such as 'month' or 'rolling:24h', got {per!r}")
    kind, _, span = per.strip().lower().partition(":")
    if kind not in _KINDS:
        raise LimitDefinitionError(
            f"per={per!r}: use one of day, week, month, lifetime, rolling:<1h|24h|30d>"
        )
    seconds = 0
    if kind == "rolling":
        match = _DURATION.match(span)
        if not match or int(match.group(1)) <= 0:
            raise LimitDefinitionError(
                f"per={per!r}: a rolling window needs a span, e.g. 'rolling:1h' or 'rolling:30d'"
            )
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds < 60:
            raise LimitDefinitionError(f"per={per!r}: a rolling window must span at least a minute")
        if seconds > 366 * 86_400:
            raise LimitDefinitionError(
                f"per={per!r}: a rolling window spans at most 366 days (rolling:366d); "
                "use per='lifetime' for a limit that never resets"
            )
    elif span:
        raise LimitDefinitionError(f"per={per!r}: only rolling windows take a span")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception as exc:
        raise LimitDefinitionError(
            f"tz={tz!r} is not a known time zone (e.g. 'UTC', 'Europe/Paris')"
        ) from exc
    if isinstance(week_start, str):
        if week_start.lower() not in _DAYS:
            raise LimitDefinitionError(
                f"week_start={week_start!r}: use a day name such as 'monday' or 'sunday'"
            )
        start = _DAYS.index(week_start.lower())
    elif isinstance(week_start, int) and not isinstance(week_start, bool) and 0 <= week_start <= 6:
        start = week_start
    else:
        raise LimitDefinitionError(f"week_start={week_start!r}: use a day name or 0 (Monday) to 6 (Sunday)")
    if isinstance(month_anchor, bool) or not isinstance(month_anchor, int) or not 1 <= month_anchor <= 28:
        raise LimitDefinitionError(f"month_anchor={month_anchor!r}: use a day of the month from 1 to 28")
    return Window(kind, seconds, tz, start, month_anchor)
