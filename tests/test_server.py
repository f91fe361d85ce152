"""The HTTP server over real HTTP (uvicorn on loopback) and as a real `llmledger serve` process:
auth and scopes, ingest (per-item validation, idempotency, gzip, limits), reports (JSON, CSV,
keyset paging), tenant-bound keys, keys, health, metrics, rate limits, the OpenAPI document."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.serving import serve_process, serve_thread

from llmledger.engine import Engine
from llmledger.events.ids import uuid7
from llmledger.server import ServerSettings, create_app

ADMIN = "llk_00112233445566aa_admin-secret-for-the-tests-0123"
OPENAPI = Path(__file__).parent.parent / "docs" / "openapi.json"


def event(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": uuid7(),
        "timestamp": "2026-11-30T12:00:00.000000Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000,
        "output_tokens": 100,
        "tenant": "acme",
    }
    base.update(over)
    return base


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'server.db'}"


@pytest.fixture
def server(ledger_url: str) -> Iterator[str]:
    app = create_app(ServerSettings(ledger=ledger_url, admin_key=ADMIN))  # type: ignore[arg-type]
    with serve_thread(app) as url:
        yield url


def client(url: str, key: str | None = ADMIN) -> httpx2.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.Client(base_url=url, headers=headers, timeout=30)


def new_key(url: str, scope: str, tenant: str | None = None) -> str:
    answer = client(url).post("/api/v1/keys", json={"scope": scope, "tenant": tenant})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def test_missing_or_wrong_keys_get_the_same_401(server: str) -> None:
    answers = [
        client(server, None).get("/api/v1/spend"),
        client(server, "nonsense").get("/api/v1/spend"),
        client(server, "llk_00112233445566aa_wrong-secret-for-the-tests-012").get("/api/v1/spend"),
        client(server, "llk_ffffffffffffffff_admin-secret-for-the-tests-0123").get("/api/v1/spend"),
    ]
    assert {a.status_code for a in answers} == {401}
    assert {a.text for a in answers} == {'{"error":"missing or invalid API key"}'}
    assert all(a.headers["www-authenticate"].startswith("Bearer") for a in answers)


def test_scopes(server: str) -> None:
    read, ingest = new_key(server, "read"), new_key(server, "ingest")
    assert client(server, read).post("/api/v1/events", json={"events": []}).status_code == 403
    assert client(server, ingest).get("/api/v1/spend").status_code == 403
    assert client(server, ingest).get("/api/v1/keys").status_code == 403
    assert client(server, read).get("/api/v1/keys").status_code == 403
    assert client(server, ingest).post("/api/v1/events", json={"events": []}).json()["accepted"] == 0
    assert client(server, read).get("/api/v1/spend").json() == {"cost_usd": "0", "currency": "USD"}


def test_ingest_stores_valid_items_refuses_bad_ones_and_is_idempotent(server: str) -> None:
    good = [event(), event(model="gpt-4o"), event(cost_usd="0.5", cost_source="manual")]
    batch = [good[0], {"event_id": "x"}, good[1], "not an object", good[2], event(input_tokens=-1)]
    c = client(server)
    first = c.post("/api/v1/events", json={"events": batch}).json()
    assert first["accepted"] == 3 and first["duplicates"] == 0
    assert [r["index"] for r in first["rejected"]] == [1, 3, 5]
    assert "timestamp" in first["rejected"][0]["error"] or "field" in first["rejected"][0]["error"]
    again = c.post("/api/v1/events", json={"events": good}).json()
    assert again == {"accepted": 3, "duplicates": 3, "rejected": []}
    rows = c.get("/api/v1/events", params={"limit": 100}).json()["events"]
    assert len(rows) == 3
    # Events without a cost are priced by the server: gpt-4o-mini $0.15 / $0.60 per 1M tokens.
    by_model = {r["model"]: r for r in rows if r["cost_source"] == "catalog"}
    assert Decimal(by_model["gpt-4o-mini"]["cost_usd"]) == Decimal("0.00021")
    assert Decimal(by_model["gpt-4o"]["cost_usd"]) == Decimal("0.0035")  # $2.50 / $10
    assert c.get("/api/v1/spend").json()["cost_usd"] == str(
        Decimal("0.00021") + Decimal("0.0035") + Decimal("0.5")
    )


def test_unknown_models_are_flagged_not_zero(server: str) -> None:
    c = client(server)
    c.post("/api/v1/events", json={"events": [event(provider="acme", model="made-up-1")]})
    (row,) = c.get("/api/v1/events").json()["events"]
    assert row["cost_usd"] is None and row["unpriced_reason"]
    (usage,) = c.get("/api/v1/usage", params={"group_by": "model"}).json()["rows"]
    assert usage["unpriced_requests"] == 1


def test_body_limits_gzip_and_bombs(ledger_url: str) -> None:
    settings = ServerSettings(ledger=ledger_url, admin_key=ADMIN, max_body_bytes=64 * 1024, max_batch=50)  # type: ignore[arg-type]
    with serve_thread(create_app(settings)) as url:
        c = client(url)
        body = json.dumps({"events": [event() for _ in range(20)]}).encode()
        zipped = c.post(
            "/api/v1/events", content=gzip.compress(body), headers={"Content-Encoding": "gzip"}
        ).json()
        assert zipped["accepted"] == 20
        bomb = gzip.compress(b'{"events": [' + b" " * (50 * 1024 * 1024) + b"]}")
        assert len(bomb) < 64 * 1024
        answer = c.post("/api/v1/events", content=bomb, headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 413
        big = json.dumps({"events": [event(tags={"k": "x" * 200}) for _ in range(400)]}).encode()
        assert c.post("/api/v1/events", content=big).status_code == 413
        many = {"events": [event() for _ in range(51)]}
        too_many = c.post("/api/v1/events", json=many)
        assert too_many.status_code == 413 and "at most 50" in too_many.json()["error"]
        assert c.post("/api/v1/events", content=b"{nope").status_code == 422
        assert c.post("/api/v1/events", json=[event()]).status_code == 422
        assert c.post("/api/v1/events", json={"events": {"a": 1}}).status_code == 422
        assert (
            c.post("/api/v1/events", content=b"abc", headers={"Content-Encoding": "gzip"}).status_code == 400
        )
        assert c.post("/api/v1/events", content=body, headers={"Content-Encoding": "br"}).status_code == 415


def test_bodies_orjson_cannot_read_exactly_are_read_item_by_item_as_before(server: str) -> None:
    # orjson reads the common body; `NaN`, a lone surrogate escape and integers past 64 bits (which
    # it reads as floats) go through the standard library: each item accepted or refused alone
    c = client(server)
    ok, huge = event(), event(computed_cost_usd=12345678901234567890123, cost_usd="1", cost_source="provider")
    items = [json.dumps(ok), '{"duration_ms": NaN}', '{"tenant": "\\ud800"}', json.dumps(huge)]
    answer = c.post("/api/v1/events", content=f'{{"events": [{", ".join(items)}]}}'.encode())
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2 and [r["index"] for r in answer.json()["rejected"]] == [1, 2]
    stored = {e["event_id"]: e for e in c.get("/api/v1/events").json()["events"]}
    assert stored[huge["event_id"]]["computed_cost_usd"] == "12345678901234567890123"
    digits = c.post("/api/v1/events", content=b'{"events": [' + b"1" * 5000 + b"]}")
    assert digits.status_code == 422  # was a 500: the standard library's int limit is a ValueError


def test_a_tenant_bound_key_writes_and_reads_only_its_tenant(server: str) -> None:
    acme = new_key(server, "ingest", tenant="acme")
    reader = new_key(server, "read", tenant="acme")
    answer = client(server, acme).post(
        "/api/v1/events", json={"events": [event(tenant=None), event(tenant="acme"), event(tenant="globex")]}
    )
    assert answer.json()["accepted"] == 2
    assert (
        answer.json()["rejected"][0]["index"] == 2
        and "bound to tenant" in answer.json()["rejected"][0]["error"]
    )
    client(server).post("/api/v1/events", json={"events": [event(tenant="globex")]})
    r = client(server, reader)
    assert r.get("/api/v1/spend", params={"tenant": "globex"}).status_code == 403
    rows = r.get("/api/v1/usage", params={"group_by": "tenant"}).json()["rows"]
    assert [(row["tenant"], row["requests"]) for row in rows] == [("acme", 2)]
    assert {e["tenant"] for e in r.get("/api/v1/events").json()["events"]} == {"acme"}
    everyone = client(server).get("/api/v1/usage", params={"group_by": "tenant"}).json()["rows"]
    assert {row["tenant"] for row in everyone} == {"acme", "globex"}


def test_usage_filters_groups_and_csv(server: str) -> None:
    c = client(server)
    day = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
    items = []
    for i in range(6):
        when = (day + timedelta(days=i % 2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        items.append(
            event(
                timestamp=when,
                tenant="acme" if i < 4 else "=cmd()",
                user=f"u{i % 3}",
                tags={"plan": "pro" if i % 2 else "free"},
                cost_usd="0.1",
                cost_source="manual",
            )
        )
    assert c.post("/api/v1/events", json={"events": items}).json()["accepted"] == 6
    rows = c.get("/api/v1/usage", params={"group_by": "tenant,day", "tag": "plan:pro"}).json()["rows"]
    assert sorted((r["tenant"], r["day"], r["requests"], r["cost_usd"]) for r in rows) == [
        ("=cmd()", "2026-11-02", 1, "0.1"),
        ("acme", "2026-11-02", 2, "0.2"),
    ]
    text = c.get("/api/v1/usage", params={"group_by": "tenant"}, headers={"Accept": "text/csv"}).text
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert {(r["tenant"], r["cost_usd"]) for r in parsed} == {("acme", "0.4"), ("'=cmd()", "0.2")}
    window = {"since": "2026-11-02T00:00:00Z", "until": "2026-11-03T00:00:00Z"}
    assert c.get("/api/v1/spend", params=window).json()["cost_usd"] == "0.3"
    bad = c.get("/api/v1/spend", params={"since": "2026-11-03", "until": "2026-11-01"})
    assert bad.status_code == 422 and "earlier" in bad.json()["error"]
    assert c.get("/api/v1/usage", params={"group_by": "nope"}).status_code == 422
    assert c.get("/api/v1/spend", params={"since": "yesterday-ish"}).status_code == 422
    assert c.get("/api/v1/spend", params={"since": "", "until": ""}).json()["cost_usd"] == "0.6"
    allowed = c.request("PUT", "/api/v1/events")
    assert allowed.status_code == 405 and allowed.headers["allow"] == "GET, POST"


def test_events_pages_by_keyset_without_loss_or_repeat(server: str) -> None:
    c = client(server)
    same = "2026-11-30T12:00:00.000000Z"  # many events at one instant: the cursor must tie-break
    items = [event(timestamp=same) for _ in range(25)] + [event() for _ in range(10)]
    items += [event(timestamp=f"2026-11-29T0{i}:00:00.000000Z") for i in range(7)]
    c.post("/api/v1/events", json={"events": items})
    seen: list[str] = []
    cursor = None
    while True:
        page = c.get("/api/v1/events", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(e["event_id"] for e in items) and len(seen) == len(set(seen))
    assert c.get("/api/v1/events", params={"cursor": "%%%"}).status_code == 422


def test_keys_are_shown_once_listed_without_secret_and_revoked_at_once(server: str) -> None:
    c = client(server)
    created = c.post("/api/v1/keys", json={"scope": "read", "name": "grafana"}).json()
    secret = created["key"]
    listed = c.get("/api/v1/keys").json()
    assert secret not in json.dumps(listed)
    assert {k["name"] for k in listed} >= {"grafana", "LLMLEDGER_ADMIN_KEY"}
    assert client(server, secret).get("/api/v1/spend").status_code == 200
    assert c.delete(f"/api/v1/keys/{created['key_id']}").status_code == 204
    assert client(server, secret).get("/api/v1/spend").status_code == 401
    assert c.delete(f"/api/v1/keys/{created['key_id']}").status_code == 404
    assert c.post("/api/v1/keys", json={"scope": "root"}).status_code == 422
    assert c.post("/api/v1/keys", json={"scope": "read", "tenant": ""}).status_code == 422


def test_health_readiness_metrics_and_prices(server: str) -> None:
    assert httpx2.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx2.get(f"{server}/readyz").json() == {"status": "ready", "ledger": "sqlite"}
    c = client(server)
    c.post("/api/v1/events", json={"events": [event(), event(model="made-up")]})
    assert httpx2.get(f"{server}/metrics").status_code == 401  # it names every tenant's spend
    text = c.get("/metrics").text
    assert "llmledger_events_ingested_total 2.0" in text
    assert 'llmledger_spend_usd_total{model="gpt-4o-mini",tenant="acme"} 0.00021' in text
    assert (
        'gen_ai_client_token_usage_count{gen_ai_request_model="gpt-4o-mini",gen_ai_token_type="input"} 1.0'
        in text
    )
    assert 'llmledger_events_unpriced_total{model="made-up"} 1.0' in text
    price = c.get("/api/v1/prices/gpt-4o-mini").json()
    assert price["source"] == "catalog" and price["prices"]["input_mtok"] == "$0.15"
    assert c.get("/api/v1/prices/made-up-model-x").status_code == 404


def test_rate_limit_per_key(ledger_url: str) -> None:
    settings = ServerSettings(ledger=ledger_url, admin_key=ADMIN, rate_limit=1)  # type: ignore[arg-type]
    with serve_thread(create_app(settings)) as url:
        c = client(url)
        codes = [c.get("/api/v1/spend").status_code for _ in range(3)]
        assert codes[:2] == [200, 200] and codes[2] == 429
        assert int(c.get("/api/v1/spend").headers["retry-after"]) >= 1


def test_openapi_document_is_checked_in() -> None:
    app = create_app(ServerSettings(ledger="sqlite:///" + os.devnull + ".db"), engine=_Dummy())  # type: ignore[arg-type]
    current = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("LLMLEDGER_WRITE_OPENAPI"):
        OPENAPI.write_text(current)
    assert OPENAPI.read_text() == current, (
        "docs/openapi.json drifted: LLMLEDGER_WRITE_OPENAPI=1 pytest -k openapi"
    )


class _Dummy:
    """Enough of an engine to build the app's routes (nothing is served)."""

    dialect = "sqlite"
    keys = None

    def close(self) -> None:
        pass


def test_serve_process_killed_and_restarted_keeps_every_event_once(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'proc.db'}"
    sent: list[dict[str, Any]] = []
    with serve_process(ledger, ADMIN) as (url, proc):
        c = client(url)
        for _ in range(5):
            batch = [event() for _ in range(50)]
            assert c.post("/api/v1/events", json={"events": batch}).json()["accepted"] == 50
            sent += batch
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with serve_process(ledger, ADMIN) as (url, _):
        c = client(url)
        # An app retries its last batch after the crash: stored once.
        again = c.post("/api/v1/events", json={"events": sent[-50:]}).json()
        assert again == {"accepted": 50, "duplicates": 50, "rejected": []}
        assert c.get("/api/v1/usage", params={"group_by": "tenant"}).json()["rows"][0]["requests"] == 250
    engine = Engine(ledger)
    assert engine.ledger.count() == 250
    engine.close()


def test_serve_refuses_bad_settings(tmp_path: Path) -> None:
    import subprocess
    import sys

    main = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"
    done = subprocess.run(
        [sys.executable, "-c", main, "serve", "--ledger", str(tmp_path / "x.db"), "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "port" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "usage",
    [
        {"model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 100},
        {
            "model": "gpt-4o-audio-preview-2024-12-17",
            "input_tokens": 1125,
            "input_audio_tokens": 1032,
            "output_tokens": 2486,
            "output_audio_tokens": 1950,
        },
        {"model": "made-up-model-q", "input_tokens": 10},
        {
            "model": "gpt-4o",
            "input_tokens": 2000,
            "cache_read_tokens": 1024,
            "output_tokens": 10,
            "service_tier": "priority",
        },
    ],
)
def test_ingest_prices_by_the_same_rule_as_the_sdk(tmp_path: Path, usage: dict[str, Any]) -> None:
    import llmledger

    llmledger.init(ledger=str(tmp_path / "sdk.db"))
    tracked = llmledger.track(provider="openai", **usage)
    engine = Engine(f"sqlite:///{tmp_path / 'engine.db'}")
    result = engine.ingest([event(**usage, tenant=None)])
    assert result.accepted == 1 and result.priced == 1
    (stored,) = engine.events({})
    engine.close()
    for name in ("cost_usd", "cost_source", "partially_priced", "cost_note"):
        assert getattr(stored, name) == getattr(tracked, name), name
    assert (stored.unpriced_reason is None) == (tracked.unpriced_reason is None)


@pytest.mark.scale
@pytest.mark.postgres
def test_three_replicas_on_postgresql_store_every_event_once(pg_url: str) -> None:
    import concurrent.futures

    with (
        serve_process(pg_url, ADMIN) as (a, _),
        serve_process(pg_url, ADMIN) as (b, _),
        serve_process(pg_url, ADMIN) as (c, _),
    ):
        replicas = [a, b, c]
        batches = [[event(tenant=f"t{i % 3}") for _ in range(40)] for i in range(12)]

        def send(i: int) -> int:
            # Every batch goes to two replicas at once (an app retrying against another replica).
            first = client(replicas[i % 3]).post("/api/v1/events", json={"events": batches[i]})
            second = client(replicas[(i + 1) % 3]).post("/api/v1/events", json={"events": batches[i]})
            assert first.status_code == second.status_code == 200
            return int(first.json()["accepted"]) + int(second.json()["accepted"])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            accepted = sum(pool.map(send, range(12)))
        assert accepted == 2 * 12 * 40
        rows = client(b).get("/api/v1/usage", params={"group_by": "tenant"}).json()["rows"]
        assert sorted((r["tenant"], r["requests"]) for r in rows) == [("t0", 160), ("t1", 160), ("t2", 160)]
        assert httpx2.get(f"{c}/readyz").json() == {"status": "ready", "ledger": "postgresql"}
