"""What the middleware share: turning a request into an attribution, and scoping it to the request."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from llmledger._internal import internal_error
from llmledger.attribution.context import EMPTY, Attribution, _current, make_attribution

__all__ = ["Attributor", "from_headers", "scoped"]

Attributor = Callable[[Any], Mapping[str, Any] | None]
"""request -> `{"tenant": ..., "user": ..., "org": ..., "feature": ..., "agent": ..., "session": ...,
"tags": {...}}` (None or missing keys: not attributed)."""

_KEYS = ("tenant", "user", "org", "feature", "agent", "session")


def resolve(attribution: Attributor, request: Any) -> Attribution:
    """The request's attribution; a fault is logged and counted, and the request is unattributed."""
    try:
        fields = attribution(request) or {}
        unknown = [k for k in fields if k not in (*_KEYS, "tags")]
        if unknown:
            raise ValueError(f"unknown attribution keys {unknown}; use {', '.join(_KEYS)} or tags")
        labels = {k: fields.get(k) or None for k in _KEYS}
        return make_attribution(**labels, tags=fields.get("tags") or None)
    except Exception as exc:
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
