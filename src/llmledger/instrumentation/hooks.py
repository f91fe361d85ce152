"""The one wrapper mechanism every provider shares.

A hooked request method asks its provider's `begin` whether the request is billable (and how to
rewrite it), runs the original, then hands the result to `finish` — which reads the usage, or wraps
the stream so that it is metered as the caller reads it. A provider error is recorded and the
ORIGINAL exception propagates unchanged. A fault in `begin` or `finish` is an internal error: the
call proceeds unmetered (or returns its result unchanged) and the host app never sees it.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from llmledger._internal import internal_error
from llmledger.attribution.context import Attribution, make_attribution
from llmledger.attribution.labels import LABELS_HEADER
from llmledger.errors import InvalidUsageError, LimitExceeded, LimitUndecided, LlmLedgerError
from llmledger.instrumentation.call import Call

__all__ = [
    "ATTRIBUTION_HEADER",
    "LEDGER_KWARGS",
    "BadAttributionHeader",
    "Begin",
    "Finish",
    "Scrub",
    "decode_attribution",
    "kwargs_hook",
    "request_hook",
]

ATTRIBUTION_HEADER = LABELS_HEADER
"""Carries per-call `ledger_*` attribution from the SDK method to the request hook; always removed
before the request is built, so it never reaches the provider."""

LEDGER_KWARGS: dict[str, str] = {
    "ledger_tenant": "tenant",
    "ledger_user": "user",
    "ledger_org": "org",
    "ledger_feature": "feature",
    "ledger_agent": "agent",
    "ledger_session": "session",
    "ledger_tags": "tags",
}
_LEDGER_KEYS = frozenset(LEDGER_KWARGS)

Begin = Callable[[tuple[Any, ...], dict[str, Any]], "tuple[Call, tuple[Any, ...], dict[str, Any]] | None"]
Finish = Callable[[Call, Any], Any]
Scrub = Callable[[tuple[Any, ...], dict[str, Any]], "tuple[tuple[Any, ...], dict[str, Any]]"]
"""(args, kwargs) of a request -> the same without llmledger's attribution header."""


def request_hook(
    original: Callable[..., Any], begin: Begin, finish: Finish, scrub: Scrub
) -> Callable[..., Any]:
    """Wrap an SDK request method (sync or async) with `begin` / original / `finish`.

    Whatever happens in `begin` (a fault, a non-billable request), the request that goes out has
    been through `begin`'s rewrite or through `scrub`: llmledger's header never reaches the provider.
    """
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def async_hooked(*args: Any, **kwargs: Any) -> Any:
            plan = _begin(begin, args, kwargs)
            if plan is None:
                args, kwargs = _scrub(scrub, args, kwargs)
                return await original(*args, **kwargs)
            call, args, kwargs = plan
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            return _finish(finish, call, result)

        return async_hooked

    @functools.wraps(original)
    def hooked(*args: Any, **kwargs: Any) -> Any:
        plan = _begin(begin, args, kwargs)
        if plan is None:
            args, kwargs = _scrub(scrub, args, kwargs)
            return original(*args, **kwargs)
        call, args, kwargs = plan
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            call.failed(exc)
            raise
        return _finish(finish, call, result)

    return hooked


def _begin(begin: Begin, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        plan = begin(args, kwargs)
        if plan is not None:
            plan[0].sent()  # journaled before the request goes out (survives a kill mid-call)
        return plan
    except (LimitExceeded, LimitUndecided, BadAttributionHeader):  # raised on purpose, nothing sent
        raise
    except Exception as exc:
        internal_error(exc, "starting a metered call")
        return None


def _scrub(
    scrub: Scrub, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    try:
        return scrub(args, kwargs)
    except Exception as exc:
        # The header could not be taken off: refuse rather than send llmledger's labels out.
        raise LlmLedgerError(
            f"llmledger could not remove its attribution header from the request ({exc!r}); "
            "nothing was sent. Please report this."
        ) from exc


def _finish(finish: Finish, call: Call, result: Any) -> Any:
    try:
        return finish(call, result)
    except Exception as exc:
        internal_error(exc, "reading a response")
        return result


def kwargs_hook(
    attach: Callable[[dict[str, Any], str], None],
    strip: Callable[[dict[str, Any]], None],
    active: Callable[[], bool],
) -> Callable[[Callable[..., Any]], Any]:
    """Make a wrapper for an SDK method that takes `ledger_tenant=`... off its keyword arguments.

    While `active()` (the provider is metered), the values are validated (a bad one raises
    `InvalidUsageError` naming the keyword, before anything is sent) and handed on with the request
    by `attach(kwargs, header_value)`, to be read back by the request hook. Otherwise (llmledger
    switched off or uninstrumented) they are dropped, and `strip(kwargs)` removes a `labels()`
    header: the call runs exactly like the bare SDK call.
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def method(*args: Any, **kwargs: Any) -> Any:
            if not kwargs:
                return original(*args, **kwargs)
            if active():
                if not _LEDGER_KEYS.isdisjoint(kwargs):
                    attach(kwargs, _take(kwargs))
            else:
                for key in _LEDGER_KEYS.intersection(kwargs):
                    del kwargs[key]
                strip(kwargs)
            try:
                return original(*args, **kwargs)
            except TypeError as exc:  # free until raised: the SDK refused an unknown keyword?
                _check_names(kwargs, exc)
                raise

        return method

    return make


def _check_names(kwargs: dict[str, Any], exc: TypeError) -> None:
    """A misspelt `ledger_*` keyword (`ledger_teant=`), which the SDK refused with a TypeError before
    sending anything, is an `InvalidUsageError` naming the valid ones."""
    for key in kwargs:
        if key.startswith("ledger_") and key not in _LEDGER_KEYS:
            valid = ", ".join(LEDGER_KWARGS)
            raise InvalidUsageError(
                f"unknown keyword {key}= (llmledger's are {valid}); the call was not sent"
            ) from exc


def _take(kwargs: dict[str, Any]) -> str:
    picked = {k: kwargs.pop(k) for k in list(kwargs) if k in _LEDGER_KEYS}
    fields = {LEDGER_KWARGS[k]: v for k, v in picked.items() if v is not None}
    try:
        make_attribution(**fields)  # validate now, before anything is sent
    except InvalidUsageError as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in picked.items() if v is not None)
        raise InvalidUsageError(f"{given}: {exc} (the call was not sent)") from exc
    except TypeError as exc:  # not a mapping of tags, ...
        raise InvalidUsageError(f"bad ledger_* keyword: {exc} (the call was not sent)") from exc
    return json.dumps(fields, separators=(",", ":"))


class BadAttributionHeader(InvalidUsageError):
    """The `x-llmledger-attribution` header of a call is not what `labels()` makes: the call is
    refused before it is sent (never sent unmetered, outside its tenant's limits)."""


_MAX_HEADER = 1 << 20
"""Far above the longest header `labels()` can make (7 labels and 64 tags, all escaped)."""
_FIELDS = frozenset(("tenant", "user", "org", "feature", "agent", "session", "tags"))


def decode_attribution(value: Any) -> Attribution:
    """The attribution a `ledger_*` header carries (raises `BadAttributionHeader`)."""

    def bad(why: str) -> BadAttributionHeader:
        return BadAttributionHeader(
            f"bad {ATTRIBUTION_HEADER} header ({why}): {value!r:.120}; make it with "
            "llmledger.labels(...). The call was not sent"
        )

    if not isinstance(value, str):
        raise bad("not a string")
    if len(value) > _MAX_HEADER:
        raise bad(f"longer than {_MAX_HEADER} characters")
    try:
        fields = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise bad(f"not JSON: {exc}") from None
    if not isinstance(fields, Mapping):
        raise bad("not a JSON object")
    unknown = set(fields) - _FIELDS
    if unknown:
        raise bad(f"unknown field {sorted(unknown)[0]!r:.80}")
    try:
        return make_attribution(**fields)
    except (InvalidUsageError, TypeError) as exc:
        raise bad(str(exc)) from None
