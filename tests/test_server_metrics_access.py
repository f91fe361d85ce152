"""`GET /metrics` names every tenant and its spend: keyed like the API unless `metrics_public`
(newcomer report, item 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmledger.server import ServerSettings, create_app
from llmledger.storage import Ledger
from llmledger.storage.keys import KeyStore

ADMIN = "llk_0123456789abcdef_metrics-access-admin-key-001"


def _app(tmp_path: Path, **settings: object) -> tuple[TestClient, dict[str, str]]:
    path = str(tmp_path / "m.db")
    ledger = Ledger(path)
    keys = KeyStore(ledger.engine)
    made = {
        "read": keys.create("read").secret,
        "ingest": keys.create("ingest").secret,
        "acme": keys.create("read", tenant="acme").secret,
    }
    ledger.close()
    app = create_app(ServerSettings.load({"ledger": path, "admin_key": ADMIN, **settings}))
    return TestClient(app), made


def test_metrics_need_a_read_key_bound_to_no_tenant(tmp_path: Path) -> None:
    client, made = _app(tmp_path)
    with client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        for key, status in ((made["ingest"], 403), (made["acme"], 403), (made["read"], 200), (ADMIN, 200)):
            answer = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == status, (key, answer.text)
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {made['read']}"})
        assert ok.headers["content-type"].startswith("text/plain") and "llmledger_" in ok.text


@pytest.mark.parametrize("how", ["setting", "env"])
def test_metrics_public_opens_them(tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "env":
        monkeypatch.setenv("LLMLEDGER_METRICS_PUBLIC", "1")
        client, _ = _app(tmp_path)
    else:
        client, _ = _app(tmp_path, metrics_public=True)
    with client:
        assert client.get("/metrics").status_code == 200
