"""Who a gateway request is for: the `X-Ledger-*` headers, the short names hosted gateways' clients
send, and the request body's own user fields — validated like every other attribution.

| header | attribution |
|---|---|
| `X-Ledger-Tenant`, `-User`, `-Org`, `-Feature`, `-Agent`, `-Session` | that field |
| `X-Ledger-Tag-<name>` | tag `<name>` (lower-case: HTTP header names are case-insensitive) |
| `user`, `org`, `feature` (short names) | that field (over an `X-Ledger-` header: see below) |
| `plan`, `project` (short names) | tags `plan`, `project` |
| body `user` (OpenAI), `metadata.user_id` (Anthropic) | user, when no header names one |

A short name wins over the `X-Ledger-` header of the same field: clients set their defaults as
`X-Ledger-` headers and a call's own labels as short names (`extra_headers={"user": ...}`).
Values are UTF-8, 1–256 characters, without control characters. A tenant-bound key forces its
tenant: a request naming another tenant is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmledger.attribution.context import EMPTY, Attribution
from llmledger.errors import AttributionRefused, InvalidUsageError
from llmledger.events.checks import check_attribution

__all__ = ["SHORT_NAMES", "attribution_of"]

_FIELDS = {
    b"x-ledger-tenant": "tenant",
    b"x-ledger-user": "user",
    b"x-ledger-org": "org",
    b"x-ledger-feature": "feature",
    b"x-ledger-agent": "agent",
    b"x-ledger-session": "session",
}
SHORT_NAMES: Mapping[str, str] = {
    "user": "user",
    "org": "org",
    "feature": "feature",
    "plan": "tag:plan",
    "project": "tag:project",
}
"""The short header names hosted gateways' clients send -> an attribution field or `tag:<name>`."""
_SHORT = {k.encode(): v for k, v in SHORT_NAMES.items()}
_TAG = b"x-ledger-tag-"


def _text(name: bytes, raw: bytes) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise AttributionRefused(f"header {name.decode('latin-1')}: the value is not UTF-8") from None


_SEEN: dict[tuple[Any, ...], Attribution] = {}
"""Attributions already validated, by the headers and body user they came from (clients repeat them)."""


def attribution_of(
    headers: list[tuple[bytes, bytes]], body: Mapping[str, Any] | None, bound_tenant: str | None
) -> Attribution:
    """The attribution of one request from its raw ASGI headers (lower-case names) and JSON body.

    Raises `AttributionRefused` naming the header at fault and what to send instead."""
    found = [
        (name, raw)
        for name, raw in headers
        if name in _FIELDS or name in _SHORT or name[:13] == _TAG  # never the key or the upstream
    ]
    user = None
    if body is not None:
        user = body.get("user")
        if user is None:
            metadata = body.get("metadata")
            user = metadata.get("user_id") if isinstance(metadata, Mapping) else None
        if not isinstance(user, str) or not user:
            user = None
    key = (bound_tenant, user, *found)
    who = _SEEN.get(key)
    if who is None:
        who = _attribution(found, user, bound_tenant)
        if sum(len(raw) for _, raw in found) + len(user or "") <= 2048:  # bounded memory
            if len(_SEEN) >= 4096:
                _SEEN.clear()
            _SEEN[key] = who
    return who


def _attribution(
    headers: list[tuple[bytes, bytes]], user: str | None, bound_tenant: str | None
) -> Attribution:
    labels: dict[str, str] = {}
    short: dict[str, str] = {}
    tags: dict[str, str] = {}
    for name, raw in headers:
        field = _FIELDS.get(name)
        if field is not None:
            labels[field] = _text(name, raw)
        elif name.startswith(_TAG):
            tag = name[len(_TAG) :].decode("latin-1")
            if not tag:
                raise AttributionRefused("header X-Ledger-Tag-: name the tag, as in X-Ledger-Tag-plan: pro")
            tags[tag] = _text(name, raw)
        elif name in _SHORT:
            target = _SHORT[name]
            short[target] = _text(name, raw)
    for field, value in short.items():
        if field.startswith("tag:"):
            tags[field[4:]] = value
        else:
            labels[field] = value
    if "user" not in labels and user is not None:
        labels["user"] = user
    if bound_tenant is not None:
        named = labels.get("tenant")
        if named is not None and named != bound_tenant:
            raise AttributionRefused(
                f"X-Ledger-Tenant: this key is bound to tenant {bound_tenant!r} and may not act for "
                "another; omit the header or use a key of that tenant",
                forbidden=True,
            )
        labels["tenant"] = bound_tenant
    if not labels and not tags:
        return EMPTY
    try:
        check_attribution(labels, tags)
    except InvalidUsageError as exc:
        raise AttributionRefused(f"attribution headers: {exc}") from None
    return Attribution(
        tenant=labels.get("tenant"),
        user=labels.get("user"),
        org=labels.get("org"),
        feature=labels.get("feature"),
        agent=labels.get("agent"),
        session=labels.get("session"),
        tags=tags,
    )
