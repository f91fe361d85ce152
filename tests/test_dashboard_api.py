"""The dashboard's API and sessions over real HTTP (Starlette's TestClient on a real SQLite ledger)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmledger.errors import InvalidQueryError
from llmledger.events import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.server import ServerSettings, create_app
from llmledger.server.session import COOKIE
from llmledger.storage import Ledger
from llmledger.storage.keys import KeyStore

ADMIN = "llk_0123456789abcdef_dashboard-api-admin-key-0001"
NOW = datetime.now(timezone.utc)


def _events() -> list[UsageEvent]:
    out = []
    for i in range(120):
        out.append(
            UsageEvent(
                event_id=uuid7(),
                timestamp=NOW - timedelta(hours=i * 3, minutes=7),
                provider="openai",
                model="gpt-4o-mini" if i % 3 else "gpt-4o",
                input_tokens=100 + i,
                output_tokens=10,
                cost_usd=None if i % 10 == 0 else Decimal("0.0125") * (i % 4 + 1),
                status="error" if i % 17 == 0 else "ok",
                estimated=i % 11 == 0,
                tenant="acme" if i % 2 else "globex",
                user=f"u{i % 5}",
                feature="chat" if i % 4 else "search",
            )
        )
    return out


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    path = str(tmp_path / "l.db")
    ledger = Ledger(path)
    ledger.write(_events())
    keys = KeyStore(ledger.engine)
    secrets = {"read": keys.create("read").secret, "acme": keys.create("read", tenant="acme").secret}
    ledger.close()
    app = create_app(ServerSettings.load({"ledger": path, "admin_key": ADMIN}))
    with TestClient(app, base_url="https://testserver") as c:
        secrets["token"] = app.state.sessions.login_token()
        yield c, secrets


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_overview_figures_are_the_usage_api_figures(client: tuple[TestClient, dict[str, str]]) -> None:
    c, keys = client
    h = _bearer(keys["read"])
    over = c.get("/api/v1/dashboard/overview", params={"since": "30d", "stack": "tenant"}, headers=h).json()
    usage = c.get("/api/v1/usage", params={"group_by": "tenant", "since": "30d"}, headers=h).json()["rows"]
    assert Decimal(over["totals"]["cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in usage)
    assert over["totals"]["requests"] == sum(r["requests"] for r in usage) == 120
    assert over["totals"]["unpriced"] == 12 and over["totals"]["estimated"] == 11
    assert {r["tenant"] for r in over["top"]["tenant"]} == {"acme", "globex"}
    series_total = sum(Decimal(v) for s in over["series"]["stacks"] for v in s["cost_usd"])
    assert series_total == Decimal(over["totals"]["cost_usd"])
    assert over["series"]["bucket"] == "day" and sum(over["series"]["requests"]) == 120
    bad = c.get("/api/v1/dashboard/overview", params={"stack": "session"}, headers=h)
    assert bad.status_code == 422 and "stack" in bad.json()["error"]


def test_a_tenant_bound_key_is_held_to_its_tenant(client: tuple[TestClient, dict[str, str]]) -> None:
    c, keys = client
    h = _bearer(keys["acme"])
    over = c.get("/api/v1/dashboard/overview", headers=h).json()
    assert [r["tenant"] for r in over["top"]["tenant"]] == ["acme"]
    assert c.get("/api/v1/dashboard/overview", params={"tenant": "globex"}, headers=h).status_code == 403
    events = c.get("/api/v1/dashboard/events", params={"limit": 1000}, headers=h).json()["events"]
    assert {e["tenant"] for e in events} == {"acme"}
    other = c.get("/api/v1/dashboard/events", params={"limit": 1, "tenant": "globex"}, headers=_bearer(ADMIN))
    event_id = other.json()["events"][0]["event_id"]
    assert c.get(f"/api/v1/dashboard/events/{event_id}", headers=h).status_code == 404
    assert c.get(f"/api/v1/dashboard/events/{event_id}", headers=_bearer(ADMIN)).status_code == 200


def test_event_flags_paging_and_csv(client: tuple[TestClient, dict[str, str]]) -> None:
    c, keys = client
    h = _bearer(keys["read"])
    unpriced = c.get("/api/v1/dashboard/events", params={"unpriced": "true", "limit": 1000}, headers=h).json()
    assert len(unpriced["events"]) == 12 and all(e["cost_usd"] is None for e in unpriced["events"])
    estimated = c.get("/api/v1/dashboard/events", params={"estimated": "true", "limit": 1000}, headers=h)
    assert len(estimated.json()["events"]) == 11
    assert c.get("/api/v1/dashboard/events", params={"unpriced": "maybe"}, headers=h).status_code == 422
    # Regression (newcomer report, 2026-12-02, item 8): the CSV twin checked its filters while
    # streaming: a 200, then a cut download and a traceback in the server's log.
    for bad in ({"unpriced": "maybe"}, {"estimated": "2"}, {"status": "fine"}):
        answer = c.get("/api/v1/dashboard/events.csv", params=bad, headers=h)
        assert answer.status_code == 422 and "error" in answer.json(), (bad, answer.text[:200])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7, "tenant": "acme"}
        if cursor:
            params["cursor"] = cursor
        page = c.get("/api/v1/dashboard/events", params=params, headers=h).json()
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 60
    body = c.get("/api/v1/dashboard/events.csv", params={"tenant": "acme"}, headers=h).text
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["event_id"] for r in rows] == seen


def test_the_login_link_works_once_and_changes_need_the_csrf_token(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    c, keys = client
    answer = c.get(f"/login?token={keys['token']}", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    session = c.get("/api/v1/dashboard/session").json()
    assert session["scope"] == "admin" and session["csrf"]
    again = c.get(f"/login?token={keys['token']}", follow_redirects=False)
    assert again.headers["location"].startswith("/login?expired")
    # a change with the cookie but without the token is refused before anything happens
    refused = c.post("/api/v1/keys", json={"scope": "read"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    made = c.post("/api/v1/keys", json={"scope": "read"}, headers={"X-CSRF-Token": session["csrf"]})
    assert made.status_code in (200, 201), made.text
    c.cookies.clear()
    assert c.get("/api/v1/dashboard/session").status_code == 401


def test_a_key_login_acts_with_the_keys_scope(client: tuple[TestClient, dict[str, str]]) -> None:
    c, keys = client
    assert c.post("/login", data={"key": "llk_nope"}, follow_redirects=False).headers["location"] == (
        "/login?failed=1"
    )
    answer = c.post("/login", data={"key": keys["read"]}, follow_redirects=False)
    assert answer.status_code == 303 and COOKIE in answer.headers["set-cookie"]
    session = c.get("/api/v1/dashboard/session").json()
    assert session["scope"] == "read"
    denied = c.post("/api/v1/keys", json={"scope": "read"}, headers={"X-CSRF-Token": session["csrf"]})
    assert denied.status_code == 403
    prices = c.get("/api/v1/dashboard/prices", params={"model": "gpt-4o-mini"}).json()
    assert prices["price"]["source"] == "catalog"
    unpriced = [(m["model"], m["events"]) for m in prices["unpriced_models"]]
    assert unpriced == [("gpt-4o-mini", 8), ("gpt-4o", 4)]
    assert c.get("/api/v1/dashboard/live").json()["events"] == []  # nothing in the last 5 minutes
    live = c.get("/api/v1/dashboard/live", params={"after": (NOW - timedelta(hours=7)).isoformat()}).json()
    assert len(live["events"]) == 3 and live["cursor"]


def test_the_link_serve_prints_logs_into_its_app_with_the_gateway_beside_it(tmp_path: Path) -> None:
    from llmledger.cli.proxy_cmd import with_gateway
    from llmledger.cli.server_cmd import dashboard_link

    application = with_gateway(ServerSettings.load({"ledger": str(tmp_path / "l.db")}), None, None)
    link = dashboard_link(application, "http://testserver")
    with TestClient(application) as c:
        answer = c.get(link.removeprefix("http://testserver"), follow_redirects=False)
        assert answer.status_code == 303 and COOKIE in answer.headers["set-cookie"]
        assert c.get("/api/v1/dashboard/session").json()["scope"] == "admin"


def test_the_api_and_the_command_line_parse_filters_with_one_parser() -> None:
    from llmledger.cli.reports import filters
    from llmledger.storage.queries import text_filters

    api = text_filters({"tenant": ["acme"], "model": ["a", "b"], "user": []}, ["plan:free", " team :x:y"])
    assert api == {"tenant": "acme", "model": ["a", "b"], "tags": {"plan": "free", "team": "x:y"}}
    assert filters(["plan=free", " team =x:y"], tenant="acme", user=None) == {
        "tenant": "acme",
        "tags": {"plan": "free", "team": "x:y"},
    }
    with pytest.raises(InvalidQueryError, match="'plan' must be name:value"):
        text_filters({}, ["plan"])
    with pytest.raises(InvalidQueryError, match="unknown filter 'colour'"):
        text_filters({"colour": "red"}, None)
