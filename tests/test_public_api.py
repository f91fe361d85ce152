"""The public surface: what `import llmledger` exposes, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import llmledger

PUBLIC = {
    "AuthenticationError",
    "Client",
    "Attribution",
    "ConfigError",
    "InvalidEventError",
    "InvalidQueryError",
    "InvalidUsageError",
    "LedgerBusy",
    "LedgerError",
    "LimitUndecided",
    "StaleReadError",
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
    "delete_events",
    "delete_limit",
    "events",
    "flush",
    "guard",
    "init",
    "labels",
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


def test_lazy_api_is_listed_and_typed(tmp_path: Path) -> None:
    names = dir(llmledger)
    for name in ("set_limit", "guard", "remaining", "check", "delete_events", "LimitStatus", "labels"):
        assert name in names
    # typed for mypy: reveal_type on the lazy members gives their real signatures, not `object`
    code = "import llmledger\nreveal_type(llmledger.set_limit)\nreveal_type(llmledger.guard)\n"
    out = mypy_strict(tmp_path, code)
    assert "def (*, usd:" in out and "def (*, model: str" in out and '"object"' not in out, out


def mypy_strict(tmp_path: Path, code: str) -> str:
    """mypy --strict's report on `code` (cached per interpreter under .mypy_cache/)."""
    (tmp_path / "snippet.py").write_text(code)
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    cache = f".mypy_cache/tests-py{sys.version_info[0]}.{sys.version_info[1]}"
    command = [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini")]
    command += ["--cache-dir", cache, str(tmp_path / "snippet.py")]
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


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
