"""Limits over HTTP (`/api/v1/limits`): CRUD, top-up, status per subject, scopes and tenant-bound
keys — in-process through the ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.test_server_reservations import ADMIN, event, reservation

from llmledger.engine import Engine
from llmledger.server import ServerSettings, create_app


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(f"sqlite:///{tmp_path / 'limits.db'}")
    yield eng
    eng.close()


@pytest.fixture
def api(engine: Engine) -> Iterator[TestClient]:
    app = create_app(ServerSettings(ledger="sqlite://", admin_key=ADMIN), engine=engine)  # type: ignore[arg-type]
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as test_client:
        yield test_client


def key(api: TestClient, scope: str, tenant: str | None = None) -> dict[str, str]:
    made = api.post("/api/v1/keys", json={"scope": scope, "tenant": tenant})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def test_crud(api: TestClient, engine: Engine) -> None:
    made = api.post("/api/v1/limits", json={"usd": "50", "per": "month", "scope": {"tenant": "acme"}})
    assert made.status_code == 201, made.text
    limit = made.json()
    assert (limit["amount"], limit["metric"], limit["scope"], limit["window"]["kind"]) == (
        "50",
        "usd",
        {"tenant": "acme"},
        "month",
    )
    assert [lim.id for lim in engine.limits()] == [limit["id"]]  # the same limit the engine enforces
    again = api.post("/api/v1/limits", json={"usd": "60", "per": "month", "scope": {"tenant": "acme"}})
    assert again.json()["id"] == limit["id"] and again.json()["amount"] == "60"  # replaced
    assert api.get("/api/v1/limits").json() == {"limits": [again.json()]}
    assert api.get(f"/api/v1/limits/{limit['id']}").json() == again.json()
    assert api.delete(f"/api/v1/limits/{limit['id']}").status_code == 204
    assert api.delete(f"/api/v1/limits/{limit['id']}").status_code == 404
    assert api.get(f"/api/v1/limits/{limit['id']}").status_code == 404
    assert api.get("/api/v1/limits").json() == {"limits": []}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"usd": "-1", "per": "day"}, "usd"),
        ({"usd": "1", "tokens": 5}, "one"),
        ({"usd": "1", "per": "fortnight"}, "per"),
        ({"usd": "1", "mode": "angry"}, "mode"),
        ({"usd": "1", "scope": {"planet": "mars"}}, "planet"),
        ({"usd": "1", "colour": "red"}, "colour"),
        # JSON booleans are not numbers (pydantic coerced `true` to 1: schemathesis found it)
        ({"tokens": True}, "tokens"),
        ({"usd": True}, "usd"),
        ({"usd": "1", "month_anchor": True}, "month_anchor"),
        ({"usd": "1", "max_wait": False}, "max_wait"),
        ({"usd": "1", "thresholds": [True]}, "thresholds"),
        ({"usd": "1", "fallback_price": [True, 1]}, "fallback_price"),
    ],
)
def test_bad_definitions_are_422(api: TestClient, body: dict[str, Any], needle: str) -> None:
    answer = api.post("/api/v1/limits", json=body)
    assert answer.status_code == 422, answer.text
    assert needle in answer.text.lower()


def test_top_up_and_status_of_each_user(api: TestClient, engine: Engine) -> None:
    credit = api.post("/api/v1/limits", json={"usd": "1", "per": "lifetime", "scope": {"user": "*"}}).json()
    topped = api.post(
        f"/api/v1/limits/{credit['id']}/top-up", json={"amount": "2.5", "scope": {"user": "u1"}}
    )
    assert topped.status_code == 200 and topped.json() == {"limit_id": credit["id"], "granted": "2.5"}
    needs_subject = api.post(f"/api/v1/limits/{credit['id']}/top-up", json={"amount": "1"})
    assert needs_subject.status_code == 422 and "user" in needs_subject.text
    assert api.post("/api/v1/limits/lim_00000000/top-up", json={"amount": "1"}).status_code == 404
    api.post("/api/v1/events", json={"events": [event(user="u1"), event(user="u2"), event(user="u3")]})
    rid = api.post("/api/v1/reservations", json=reservation(attribution={"user": "u4"})).json()[
        "reservation_id"
    ]
    assert rid is not None
    every = api.get("/api/v1/limits/status").json()["statuses"]
    by_subject = {s["subject"]: s for s in every}
    assert sorted(by_subject) == ["user=u1", "user=u2", "user=u3", "user=u4"]
    u1 = by_subject["user=u1"]
    assert (u1["spent"], u1["allowed"], u1["remaining"], u1["resets_at"]) == ("0.0125", "3.5", "3.4875", None)
    assert by_subject["user=u4"]["reserved"] == "0.0125" and by_subject["user=u4"]["spent"] == "0"
    one = api.get("/api/v1/limits/status", params={"user": "u2"}).json()["statuses"]
    assert [(s["subject"], s["remaining"]) for s in one] == [("user=u2", "0.9875")]
    assert api.get("/api/v1/limits/status", params={"user": "u9"}).json()["statuses"][0]["spent"] == "0"
    assert api.get("/api/v1/limits/status", params={"limit_id": "other"}).json() == {"statuses": []}
    top = api.post(f"/api/v1/limits/{credit['id']}/top-up", json={"amount": "-1", "scope": {"user": "u1"}})
    assert top.status_code == 422


def test_a_monthly_limit_tops_up_nothing(api: TestClient) -> None:
    made = api.post("/api/v1/limits", json={"usd": "1", "per": "month"}).json()
    answer = api.post(f"/api/v1/limits/{made['id']}/top-up", json={"amount": "1"})
    assert answer.status_code == 422 and "lifetime" in answer.text


def test_scopes_and_tenant_bound_keys(api: TestClient, engine: Engine) -> None:
    read, ingest = key(api, "read"), key(api, "ingest")
    definition = {"usd": "5", "per": "day", "scope": {"tenant": "acme"}}
    assert api.post("/api/v1/limits", json=definition, headers=read).status_code == 403
    assert api.post("/api/v1/limits", json=definition, headers=ingest).status_code == 403
    acme = api.post("/api/v1/limits", json=definition).json()
    beta = api.post("/api/v1/limits", json={**definition, "scope": {"tenant": "beta"}}).json()
    everyone = api.post("/api/v1/limits", json={"usd": "100", "per": "day"}).json()
    assert api.delete(f"/api/v1/limits/{acme['id']}", headers=read).status_code == 403
    assert len(api.get("/api/v1/limits", headers=read).json()["limits"]) == 3
    bound = key(api, "read", tenant="acme")
    assert [lim["id"] for lim in api.get("/api/v1/limits", headers=bound).json()["limits"]] == [acme["id"]]
    assert api.get(f"/api/v1/limits/{beta['id']}", headers=bound).status_code == 404
    assert api.get(f"/api/v1/limits/{everyone['id']}", headers=bound).status_code == 404
    assert api.get("/api/v1/limits/status", params={"tenant": "beta"}, headers=bound).status_code == 403
    seen = api.get("/api/v1/limits/status", headers=bound).json()["statuses"]
    assert [s["limit_id"] for s in seen] == [acme["id"]]
    bound_admin = key(api, "admin", tenant="acme")
    other = api.post("/api/v1/limits", json={**definition, "scope": {"tenant": "beta"}}, headers=bound_admin)
    assert other.status_code == 403
    filled = api.post("/api/v1/limits", json={"usd": "7", "per": "week"}, headers=bound_admin)
    assert filled.status_code == 201 and filled.json()["scope"] == {"tenant": "acme"}
    assert api.delete(f"/api/v1/limits/{beta['id']}", headers=bound_admin).status_code == 404
    assert Decimal(acme["amount"]) == 5
