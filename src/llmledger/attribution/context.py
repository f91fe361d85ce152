"""Who a call is for: attribution carried in a `ContextVar`, isolated per thread and asyncio task.

`attribute(...)` nests (inner values win, tags merge), works as a context manager and as a decorator
of sync and async functions; `set_attribution(...)` sets it for the rest of the current context
(middleware). Defaults given to `init()` sit beneath everything.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar, cast

from llmledger.events.checks import check_attribution

__all__ = ["Attribution", "attribute", "current_attribution", "set_attribution"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Attribution:
    """The attribution in force: tenant, user, org, feature, agent, session and free tags."""

    tenant: str | None = None
    user: str | None = None
    org: str | None = None
    feature: str | None = None
    agent: str | None = None
    session: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def merged(self, inner: Attribution) -> Attribution:
        """`inner` on top of `self`: inner's set values win, tags merge (inner wins per key)."""
        if inner is EMPTY:
            return self
        if self is EMPTY:
            return inner
        return Attribution(
            tenant=inner.tenant if inner.tenant is not None else self.tenant,
            user=inner.user if inner.user is not None else self.user,
            org=inner.org if inner.org is not None else self.org,
            feature=inner.feature if inner.feature is not None else self.feature,
            agent=inner.agent if inner.agent is not None else self.agent,
            session=inner.session if inner.session is not None else self.session,
            tags={**self.tags, **inner.tags} if inner.tags else self.tags,
        )


EMPTY = Attribution()
_current: ContextVar[Attribution] = ContextVar("llmledger_attribution", default=EMPTY)


def make_attribution(
    *,
    tenant: str | None = None,
    user: str | None = None,
    org: str | None = None,
    feature: str | None = None,
    agent: str | None = None,
    session: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Attribution:
    """Build a validated `Attribution` (raises `InvalidUsageError` on bad values)."""
    labels = {"tenant": tenant, "user": user, "org": org, "feature": feature, "agent": agent}
    labels["session"] = session
    check_attribution(labels, tags or {})
    return Attribution(tenant, user, org, feature, agent, session, dict(tags or {}))


def attribution_from(values: Mapping[str, Any]) -> Attribution:
    """`make_attribution` from a mapping of its keyword names (`tenant`... `tags`; others ignored)."""
    return make_attribution(
        **{k: values.get(k) for k in ("tenant", "user", "org", "feature", "agent", "session", "tags")}
    )


def current_attribution() -> Attribution:
    """The attribution in force in this thread / task (not including `init()` defaults)."""
    return _current.get()


def set_attribution(
    *,
    tenant: str | None = None,
    user: str | None = None,
    org: str | None = None,
    feature: str | None = None,
    agent: str | None = None,
    session: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Token[Attribution]:
    """Merge these values into the current context's attribution until the context ends.

    Meant for middleware: call it at the start of a request handler. Returns a token that
    `reset_attribution(token)` accepts to undo it.
    """
    new = make_attribution(
        tenant=tenant, user=user, org=org, feature=feature, agent=agent, session=session, tags=tags
    )
    return _current.set(_current.get().merged(new))


def reset_attribution(token: Token[Attribution]) -> None:
    """Undo a `set_attribution()` call."""
    _current.reset(token)


class attribute:
    """Attribute every call inside the block (or decorated function) to these values.

    Nestable: inner values win and tags merge. Isolated per thread and per asyncio task. As a
    decorator it works on plain and `async def` functions alike. Create one per `with` block:
    an instance entered from several threads at once would share its undo stack.
    """

    __slots__ = ("_attribution", "_tokens")

    def __init__(
        self,
        *,
        tenant: str | None = None,
        user: str | None = None,
        org: str | None = None,
        feature: str | None = None,
        agent: str | None = None,
        session: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self._attribution = make_attribution(
            tenant=tenant, user=user, org=org, feature=feature, agent=agent, session=session, tags=tags
        )
        self._tokens: list[Token[Attribution]] = []

    def __enter__(self) -> Attribution:
        merged = _current.get().merged(self._attribution)
        self._tokens.append(_current.set(merged))
        return merged

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())

    def __call__(self, func: F) -> F:
        own = self._attribution
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                token = _current.set(_current.get().merged(own))
                try:
                    return await func(*args, **kwargs)
                finally:
                    _current.reset(token)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _current.set(_current.get().merged(own))
            try:
                return func(*args, **kwargs)
            finally:
                _current.reset(token)

        return cast(F, wrapper)
