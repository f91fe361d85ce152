"""JSON nested deeper than any parser's stack is a 422 naming the body, never a 500 (newcomer
report item 8), on every route that reads a JSON body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmledger.events.ids import uuid7
from llmledger.server import ServerSettings, create_app

ADMIN = "llk_0123456789abcdef_deep-json-admin-key-0000001"
BODIES = [
    '{"events":[' + "[" * 50_000 + "]" * 50_000 + "]}",
    '{"events":[' + '{"a":' * 3_000 + "1" + "}" * 3_000 + "]}",
    "[" * 100_000,
    '{"events":[{"x":' + "[" * 900 + "]" * 900 + "}]}",  # within orjson's depth: read, item refused
]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(ServerSettings.load({"ledger": str(tmp_path / "d.db"), "admin_key": ADMIN}))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("body", BODIES, ids=["arrays", "objects", "unclosed", "deep-item"])
@pytest.mark.parametrize(
    "path",
    ["/api/v1/events", "/api/v1/reservations", "/api/v1/limits", "/api/v1/keys", "/v1/chat/completions"],
)
def test_deep_json_is_a_client_error(api: TestClient, path: str, body: str) -> None:
    answer = api.post(path, content=body, headers={"content-type": "application/json"})
    if path == "/api/v1/events" and answer.status_code == 200:  # read: the item refused by itself
        assert answer.json()["accepted"] == 0 and answer.json()["rejected"][0]["index"] == 0
    else:
        assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])


def test_a_valid_batch_still_goes_in(api: TestClient) -> None:
    item = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 10,
        "output_tokens": 2,
        "timestamp": "2026-12-01T12:00:00+00:00",
        "event_id": str(uuid7()),
    }
    answer = api.post("/api/v1/events", json={"events": [item]})
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
