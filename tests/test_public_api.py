"""The public surface: what `import llmledger` exposes, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import llmledger

PUBLIC = {
    "AuthenticationError",
    "Client",
    "Attribution",
    "ConfigError",
    "InvalidEventError",
    "InvalidQueryError",
    "InvalidUsageError",
    "LedgerError",
    "LimitDefinitionError",
    "LimitExceeded",
    "LimitExceededException",
    "LimitStatus",
    "LlmLedgerError",
    "PriceOverrideError",
    "RateLimitError",
    "RateLimited",
    "ServerError",
    "ServerUnavailable",
    "Stats",
    "UsageEvent",
    "UsageTracker",
    "ValidationError",
    "__version__",
    "alias_models",
    "attribute",
    "check",
    "current_attribution",
    "delete_limit",
    "events",
    "flush",
    "guard",
    "init",
    "limits",
    "load_limits",
    "model_identity",
    "reconcile",
    "remaining",
    "reset_attribution",
    "set_attribution",
    "set_limit",
    "shutdown",
    "spend",
    "stats",
    "top_up",
    "track",
    "track_usage",
    "uninstrument",
    "usage",
}


def test_exported_members_do_not_drift() -> None:
    assert set(llmledger.__all__) == PUBLIC
    for name in PUBLIC:
        member = getattr(llmledger, name)
        if callable(member) and name != "__version__":
            assert member.__doc__, f"{name} has no docstring"


def test_import_is_light() -> None:
    heavy = [
        "sqlalchemy",
        "alembic",
        "genai_prices",
        "openai",
        "anthropic",
        "google.genai",
        "fastapi",
        "typer",
        "rich",
        "httpx",
        "httpx2",
        "pydantic",
    ]
    code = f"import sys, llmledger; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
