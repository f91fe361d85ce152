"""Regressions from the newcomer15 session (the CLI, keys and limits paper cuts), as a user runs them:
the real CLI (typer's runner) and the server's ASGI app on real SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

import llmledger
from llmledger.cli import app
from llmledger.engine import Engine
from llmledger.server import ServerSettings, create_app

runner = CliRunner()
ADMIN = "llk_00000000000000ad_" + "a" * 32


@pytest.mark.parametrize("tenant", ["x\x01", "a\tb", "a\nb", "x\x7f"])
def test_keys_refuse_a_control_character_tenant_like_limits(tmp_path: Path, tenant: str) -> None:
    """#15: the same tenant rule as limits (printable text), in the CLI and over HTTP."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    made = runner.invoke(app, ["keys", "create", "--scope", "read", "--tenant", tenant, "--ledger", url])
    assert made.exit_code != 0 and "tenant must be printable" in made.output
    limit = runner.invoke(app, ["limits", "set", "--usd", "1", "--tenant", tenant, "--ledger", url])
    assert limit.exit_code != 0 and "printable" in limit.output
    engine = Engine(url)
    try:
        server = create_app(ServerSettings(ledger=url, admin_key=ADMIN), engine=engine)
        with TestClient(server, headers={"Authorization": f"Bearer {ADMIN}"}) as api:
            answer = api.post("/api/v1/keys", json={"scope": "read", "tenant": tenant})
            assert answer.status_code == 422 and "printable" in answer.text
            assert api.post("/api/v1/keys", json={"scope": "read", "tenant": "acme"}).status_code == 201
        assert [k.tenant for k in engine.keys.list() if k.scope == "read"] == ["acme"]
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("input_tokens", -5, "input_tokens must be >= 0"),
        ("input_tokens", float("nan"), "input_tokens must be an int"),
        ("input_tokens", 1.5, "input_tokens must be an int"),
        ("input_tokens", True, "input_tokens must be an int"),
        ("input_tokens", 10**20, "input_tokens must be at most"),
        ("max_output_tokens", -1, "max_output_tokens must be >= 0"),
        ("max_output_tokens", float("nan"), "max_output_tokens must be an int"),
    ],
)
def test_check_and_guard_validate_token_counts_like_track(
    tmp_path: Path, field: str, value: object, says: str
) -> None:
    """#2: a typed InvalidUsageError naming the field, not a silent accept or a raw TypeError."""
    llmledger.init(ledger=str(tmp_path / "c.db"))
    llmledger.set_limit(usd=1, per="month", tenant="a")
    with pytest.raises(llmledger.InvalidUsageError, match=says):
        llmledger.check(model="gpt-4o-mini", tenant="a", **{field: value})  # type: ignore[arg-type]
    guard = llmledger.guard(model="gpt-4o-mini", tenant="a", **{field: value})  # type: ignore[arg-type]
    with pytest.raises(llmledger.InvalidUsageError, match=says), guard:
        pass
    assert llmledger.check(model="gpt-4o-mini", tenant="a", input_tokens=5, max_output_tokens=10)
