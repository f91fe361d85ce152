"""A revoked `LLMLEDGER_ADMIN_KEY` stays revoked across restarts (newcomer report item 30: the next
start silently re-enabled it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmledger.errors import ConfigError
from llmledger.server import ServerSettings, create_app

ADMIN = "llk_0123456789abcdef_revoked-admin-key-secret-01"
OTHER = "llk_fedcba9876543210_the-second-admin-key-secret-1"


def test_a_revoked_seeded_admin_key_is_refused_at_the_next_start(tmp_path: Path) -> None:
    path = str(tmp_path / "k.db")
    first = create_app(ServerSettings.load({"ledger": path, "admin_key": ADMIN}))
    with TestClient(first, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        made = c.post("/api/v1/keys", json={"scope": "admin", "name": "second"}).json()
        assert c.get("/api/v1/spend").status_code == 200
        mine = next(k for k in c.get("/api/v1/keys").json() if k["name"] == "LLMLEDGER_ADMIN_KEY")
        second = {"Authorization": f"Bearer {made['key']}"}
        assert c.delete(f"/api/v1/keys/{mine['key_id']}", headers=second).status_code == 204
        assert c.get("/api/v1/spend").status_code == 401
    with pytest.raises(ConfigError, match="revoked"):
        create_app(ServerSettings.load({"ledger": path, "admin_key": ADMIN}))
    again = create_app(ServerSettings.load({"ledger": path}))  # without it, the server starts
    with TestClient(again) as c:
        assert c.get("/api/v1/spend", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 401
        assert c.get("/api/v1/spend", headers=second).status_code == 200


def test_serve_with_a_revoked_admin_key_exits_with_an_error(tmp_path: Path) -> None:
    path = str(tmp_path / "k.db")
    app = create_app(ServerSettings.load({"ledger": path, "admin_key": OTHER}))
    with TestClient(app, headers={"Authorization": f"Bearer {OTHER}"}) as c:
        made = c.post("/api/v1/keys", json={"scope": "admin"}).json()
        listed = c.get("/api/v1/keys").json()
        seeded = next(k for k in listed if k["name"] == "LLMLEDGER_ADMIN_KEY")
        assert (
            c.delete(
                f"/api/v1/keys/{seeded['key_id']}", headers={"Authorization": f"Bearer {made['key']}"}
            ).status_code
            == 204
        )
    for command in ("serve", "proxy"):
        done = subprocess.run(
            [sys.executable, "-m", "llmledger.cli", command, "--ledger", path, "--port", "0"],
            env={
                "LLMLEDGER_ADMIN_KEY": OTHER,
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert "revoked" in done.stderr and OTHER not in done.stderr, done.stderr
