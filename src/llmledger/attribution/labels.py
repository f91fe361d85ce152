"""Typed per-call labels: `labels(...)` gives headers for the SDKs' own `extra_headers=` argument.

`client.chat.completions.create(..., extra_headers=llmledger.labels(feature="chat"))` type-checks
under `mypy --strict` and the SDKs' own stubs, where the `ledger_feature=` keyword does not. The
header is read and removed by llmledger's request hook, so it never reaches the provider; when
llmledger is switched off (`enabled=False`, `uninstrument()`, `shutdown()`) it is removed as well.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from llmledger.attribution.context import make_attribution

__all__ = ["LABELS_HEADER", "labels", "on_first_use"]

LABELS_HEADER = "x-llmledger-attribution"
"""The one header that carries per-call labels (JSON) from the SDK method to llmledger's hook."""

_first_use: Callable[[], None] | None = None


def on_first_use(prepare: Callable[[], None]) -> None:
    """Run `prepare()` at the first `labels()` call (the `llmledger` package makes it install the
    SDK patches that take the header off, so it never reaches a provider even when `init()` was
    never called)."""
    global _first_use
    _first_use = prepare


def labels(
    *,
    tenant: str | None = None,
    user: str | None = None,
    org: str | None = None,
    feature: str | None = None,
    agent: str | None = None,
    session: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Headers labelling ONE call, for the SDK's `extra_headers=` (openai, anthropic) or
    `config={"http_options": {"headers": ...}}` (google-genai): `{LABELS_HEADER: '{"tenant":...}'}`.

    The values merge over the `attribute()` block in force, like `ledger_*` keywords. Raises
    `InvalidUsageError` naming the bad value (before anything is sent).
    """
    global _first_use
    prepare, _first_use = _first_use, None
    if prepare is not None:
        prepare()
    # validate first: raises InvalidUsageError naming the bad value
    make_attribution(
        tenant=tenant, user=user, org=org, feature=feature, agent=agent, session=session, tags=tags
    )
    picked = {"tenant": tenant, "user": user, "org": org, "feature": feature, "agent": agent}
    picked["session"] = session
    fields: dict[str, object] = {k: v for k, v in picked.items() if v is not None}
    if tags is not None:
        fields["tags"] = dict(tags)
    return {LABELS_HEADER: json.dumps(fields, separators=(",", ":"))}
