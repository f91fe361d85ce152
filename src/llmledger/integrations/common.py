"""What the middleware share: turning a request into an attribution, and scoping it to the request."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from llmledger._internal import internal_error
from llmledger.attribution.context import EMPTY, Attribution, _current, make_attribution
from llmledger.errors import ConfigError, InvalidUsageError

__all__ = ["AttributionFault", "Attributor", "Refusal", "from_headers", "scoped"]

log = logging.getLogger("llmledger")

AttributionFault = Literal["open", "closed"]
"""What a middleware does when a request's attribution cannot be made (a bad header value such as a
300-character or control-character tenant, or a fault in the attribution function):
`"open"` (the default) logs and counts it and runs the request UNATTRIBUTED, so its calls are
outside every per-tenant (`tenant="*"`) limit; `"closed"` refuses the request (400 for a bad value,
500 for a fault in the function) without running it."""

Attributor = Callable[[Any], Mapping[str, Any] | None]
"""request -> `{"tenant": ..., "user": ..., "org": ..., "feature": ..., "agent": ..., "session": ...,
"tags": {...}}` (None or missing keys: not attributed)."""

_KEYS = ("tenant", "user", "org", "feature", "agent", "session")


@dataclass(frozen=True)
class Refusal:
    """A request refused by `on_attribution_fault="closed"`: the HTTP status and a plain-text body."""

    status: int
    message: str

    @property
    def body(self) -> bytes:
        return self.message.encode("utf-8")


def fault_mode(value: object) -> AttributionFault:
    """`value` checked as an `on_attribution_fault` setting."""
    if value not in ("open", "closed"):
        raise ConfigError(f"on_attribution_fault must be 'open' or 'closed', got {value!r:.80}")
    return value


def resolve(
    attribution: Attributor, request: Any, on_fault: AttributionFault = "open"
) -> Attribution | Refusal:
    """The request's attribution. A bad value or a fault is logged and counted, then the request is
    unattributed (`on_fault="open"`) or refused (`"closed"`: a `Refusal`)."""
    try:
        fields = attribution(request) or {}
        unknown = [k for k in fields if k not in (*_KEYS, "tags")]
        if unknown:
            raise ValueError(f"unknown attribution keys {unknown}; use {', '.join(_KEYS)} or tags")
        labels = {k: fields.get(k) or None for k in _KEYS}
        for key, value in labels.items():  # the rule limits apply: no control characters
            if isinstance(value, str) and not value.isprintable():
                raise InvalidUsageError(f"{key} must be printable text (no control characters)")
        return make_attribution(**labels, tags=fields.get("tags") or None)
    except InvalidUsageError as exc:  # a bad value (e.g. a header): not llmledger's fault
        if on_fault == "closed":
            log.warning("llmledger refused a web request: its attribution is not valid: %s", exc)
            return Refusal(400, f"llmledger: the request's attribution is not valid: {exc}\n")
        internal_error(exc, "attributing a web request")
        return EMPTY
    except Exception as exc:
        if on_fault == "closed":
            log.error("llmledger refused a web request: its attribution failed", exc_info=exc)
            return Refusal(500, "llmledger: the request's attribution failed\n")
        internal_error(exc, "attributing a web request")
        return EMPTY


@contextmanager
def scoped(attribution: Attribution) -> Iterator[None]:
    """Replace the context's attribution for the block, and restore the previous one after it."""
    token = _current.set(attribution)
    try:
        yield
    finally:
        _current.reset(token)


def _header(request: Any, name: str) -> str | None:
    if isinstance(request, Mapping) and "headers" in request and "type" in request:  # ASGI scope
        wanted = name.lower().encode("latin-1")
        for key, value in request["headers"]:
            if key.lower() == wanted:
                return bytes(value).decode("latin-1")
        return None
    if isinstance(request, Mapping):  # WSGI environ
        value = request.get("HTTP_" + name.upper().replace("-", "_"))
        return value if isinstance(value, str) else None
    headers = getattr(request, "headers", None)  # Django HttpRequest, Starlette/Flask Request
    value = headers.get(name) if headers is not None else None
    return value if isinstance(value, str) else None


def from_headers(**headers: str) -> Attributor:
    """An attribution function reading request headers: `from_headers(tenant="x-tenant-id",
    user="x-user-id")`; a `tag_<name>="x-plan"` keyword reads a tag. Works with every middleware here.

    Only trust headers your own gateway sets: a client could otherwise bill another tenant.
    """
    for key in headers:
        if key not in _KEYS and not key.startswith("tag_"):
            raise ValueError(f"from_headers: unknown key {key!r}; use {', '.join(_KEYS)} or tag_<name>")

    def attribution(request: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        tags: dict[str, str] = {}
        for key, header in headers.items():
            value = _header(request, header)
            if not value:
                continue
            if key.startswith("tag_"):
                tags[key[4:]] = value
            else:
                fields[key] = value
        if tags:
            fields["tags"] = tags
        return fields

    return attribution
