"""Reservations over HTTP (`/api/v1/reservations`): in-process through the ASGI app, against a real
`llmledger serve` process, and 3 replicas on one PostgreSQL database sharing a strict limit."""

from __future__ import annotations

import concurrent.futures
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient
from tests.serving import serve_process

from llmledger.engine import EnforcementPolicy, Engine
from llmledger.events.ids import uuid7
from llmledger.limit.request import shape_of
from llmledger.server import ServerSettings, create_app

ADMIN = "llk_00112233445566aa_admin-secret-for-the-tests-0123"
# gpt-4o: $2.50 / $10 per 1M tokens, so 1,000 in + 1,000 out costs at most exactly $0.0125
SHAPE = {"input_tokens": 1000, "output_tokens": 1000}
WORST = Decimal("0.0125")
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi " * 300}], "max_tokens": 500}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def event(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": uuid7(),
        "timestamp": _now(),
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1000,
        "output_tokens": 1000,
        "tenant": "acme",
    }
    base.update(over)
    return base


def reservation(tenant: str | None = "acme", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": "openai", "model": "gpt-4o", "shape": SHAPE}
    if tenant is not None:
        body["attribution"] = {"tenant": tenant}
    body.update(over)
    return body


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(f"sqlite:///{tmp_path / 'res.db'}")
    yield eng
    eng.close()


def _app(engine: Engine, **settings: Any) -> Any:
    return create_app(ServerSettings(ledger="sqlite://", admin_key=ADMIN, **settings), engine=engine)


@pytest.fixture
def api(engine: Engine) -> Iterator[TestClient]:
    with TestClient(_app(engine), headers={"Authorization": f"Bearer {ADMIN}"}) as test_client:
        yield test_client


def key(api: TestClient, scope: str, tenant: str | None = None) -> dict[str, str]:
    made = api.post("/api/v1/keys", json={"scope": scope, "tenant": tenant})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def reserved(engine: Engine, **scope: Any) -> Decimal:
    return sum((s.reserved for s in engine.status(**scope)), Decimal(0))


def test_reserve_settle_ingest_and_release(api: TestClient, engine: Engine) -> None:
    limit = engine.set_limit(usd="0.03", per="day", tenant="acme")
    first = api.post("/api/v1/reservations", json=reservation())
    assert first.status_code == 201, first.text
    answer = first.json()
    rid = answer["reservation_id"]
    assert rid and answer["model"] is None and answer["unchecked"] is False
    assert datetime.fromisoformat(answer["expires_at"]) > datetime.now(timezone.utc)
    assert reserved(engine, tenant="acme") == WORST
    second = api.post("/api/v1/reservations", json=reservation()).json()["reservation_id"]
    refused = api.post("/api/v1/reservations", json=reservation())
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["limit_id"], error["metric"]) == ("limit_exceeded", limit.id, "usd")
    assert (error["reserved"], error["requested"], error["remaining"]) == ("0.0250", "0.0125", "0.0050")
    assert int(refused.headers["retry-after"]) >= 1 and error["retry_after"] > 0
    # settle to the actual use, then ingest the event naming its reservation: the hold is gone
    settled = api.post(f"/api/v1/reservations/{rid}/settle", json={"amounts": {limit.id: "0.004"}})
    assert settled.status_code == 200 and settled.json() == {"reservation_id": rid, "settled": True}
    assert reserved(engine, tenant="acme") == WORST + Decimal("0.004")
    stored = api.post("/api/v1/events", json={"events": [event(output_tokens=100, reservation_id=rid)]})
    assert stored.json()["accepted"] == 1
    status = engine.status(tenant="acme")[0]
    assert (status.spent, status.reserved) == (Decimal("0.0035"), WORST)
    gone = api.delete(f"/api/v1/reservations/{second}")
    assert gone.status_code == 204 and gone.content == b""
    assert reserved(engine, tenant="acme") == 0
    assert api.delete(f"/api/v1/reservations/{second}").status_code == 404  # released: nothing held
    assert api.post(f"/api/v1/reservations/{rid}/settle", json={"amounts": {}}).status_code == 404
    assert engine.reconcile() == []


def test_a_caller_chosen_id_is_one_reservation_however_often_asked(api: TestClient, engine: Engine) -> None:
    engine.set_limit(usd="0.03", per="day", tenant="acme")
    rid = uuid7()
    first = api.post("/api/v1/reservations", json=reservation(reservation_id=rid))
    assert first.status_code == 201 and first.json()["reservation_id"] == rid
    again = api.post("/api/v1/reservations", json=reservation(reservation_id=rid))
    assert again.status_code == 201 and again.json()["reservation_id"] == rid
    assert again.json()["expires_at"] == first.json()["expires_at"]
    assert reserved(engine, tenant="acme") == WORST  # held once
    # Regression (newcomer report, 2026-12-02, item 9): the retry was counted (and logged) as a
    # ledger fault, "1 call sent unchecked", hiding the next real fault's log line.
    assert engine.enforcer.unchecked == 0 and engine.enforcer.last_fault is None
    other = api.post("/api/v1/reservations", json=reservation(reservation_id="other-1")).json()
    assert other["reservation_id"] == "other-1" and reserved(engine, tenant="acme") == 2 * WORST
    # the limit has room for no third: a retry of a held id is still answered, a new id is refused
    assert api.post("/api/v1/reservations", json=reservation(reservation_id=rid)).status_code == 201
    assert api.post("/api/v1/reservations", json=reservation(reservation_id="new-2")).status_code == 429
    assert reserved(engine, tenant="acme") == 2 * WORST
    assert api.delete(f"/api/v1/reservations/{rid}").status_code == 204
    assert reserved(engine, tenant="acme") == WORST
    for bad in ("", "x" * 37, "a b", "../x"):
        answer = api.post("/api/v1/reservations", json=reservation(reservation_id=bad))
        assert answer.status_code == 422 and "reservation_id" in answer.text, bad


def test_a_tenant_bound_key_reaches_only_its_own_tenants_reservations(
    api: TestClient, engine: Engine
) -> None:
    engine.set_limit(usd=1, per="day", tenant="*")
    acme, beta = key(api, "ingest", tenant="acme"), key(api, "ingest", tenant="beta")
    mine = api.post("/api/v1/reservations", json=reservation(tenant=None), headers=acme).json()
    rid = mine["reservation_id"]
    chosen = api.post("/api/v1/reservations", json=reservation(None, reservation_id="r-1"), headers=acme)
    assert chosen.json()["reservation_id"] == "r-1"
    # the same ids from another tenant's key name nothing: 404, and acme's holds stay
    for named in (rid, "r-1"):
        assert api.delete(f"/api/v1/reservations/{named}", headers=beta).status_code == 404
        settle = api.post(f"/api/v1/reservations/{named}/settle", json={"amounts": {}}, headers=beta)
        assert settle.status_code == 404
        beta_event = event(tenant="beta", reservation_id=named)
        assert api.post("/api/v1/events", json={"events": [beta_event]}, headers=beta).json()["accepted"] == 1
    assert reserved(engine, tenant="acme") == 2 * WORST
    # beta may choose the same id for its own reservation: a separate one
    theirs = api.post("/api/v1/reservations", json=reservation(None, reservation_id="r-1"), headers=beta)
    assert theirs.status_code == 201 and reserved(engine, tenant="beta") == WORST
    assert reserved(engine, tenant="acme") == 2 * WORST
    # acme's own key settles, releases and (by its event) drops its own
    assert (
        api.post(f"/api/v1/reservations/{rid}/settle", json={"amounts": {}}, headers=acme).status_code == 200
    )
    assert api.delete(f"/api/v1/reservations/{rid}", headers=acme).status_code == 204
    stored = api.post("/api/v1/events", json={"events": [event(reservation_id="r-1")]}, headers=acme)
    assert stored.json()["accepted"] == 1
    assert reserved(engine, tenant="acme") == 0 and reserved(engine, tenant="beta") == WORST


def test_settle_with_the_event_holds_its_priced_cost(api: TestClient, engine: Engine) -> None:
    engine.set_limit(usd=1, per="day", tenant="acme")
    rid = api.post("/api/v1/reservations", json=reservation()).json()["reservation_id"]
    answer = api.post(f"/api/v1/reservations/{rid}/settle", json={"event": event(output_tokens=10)})
    assert answer.status_code == 200
    assert reserved(engine, tenant="acme") == Decimal("0.0026")  # 1000 x 2.5 + 10 x 10 per 1M


def test_no_limit_applies_gives_a_null_reservation(api: TestClient, engine: Engine) -> None:
    engine.set_limit(usd=1, per="day", tenant="other")
    answer = api.post("/api/v1/reservations", json=reservation())
    assert answer.status_code == 201 and answer.json()["reservation_id"] is None


def test_a_request_body_reserves_what_its_shape_does(api: TestClient, engine: Engine) -> None:
    engine.set_limit(usd=1, per="day", tenant="acme")
    api.post("/api/v1/reservations", json=reservation(shape=None, request=BODY))
    by_body = reserved(engine, tenant="acme")
    wire = shape_of(BODY, "gpt-4o", "openai").to_wire()
    api.post("/api/v1/reservations", json=reservation(shape=wire))
    assert reserved(engine, tenant="acme") == 2 * by_body > 0


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (reservation(shape=None), "exactly one"),
        (reservation(request=BODY), "exactly one"),
        (reservation(shape={"input_tokens": -5, "output_tokens": 1}), "input_tokens"),
        (reservation(shape={"input_tokens": 5, "prompt": "secret"}), "unknown"),
        (reservation(attribution={"tenant": "acme", "tags": {"a": 1}}), "tags"),
        (reservation(model=""), "model"),
        ({"provider": "openai"}, "model"),
        (reservation(max_output_tokens=True), "max_output_tokens"),  # a boolean is not a number
        (reservation(shape={"input_tokens": True, "output_tokens": 1}), "input_tokens"),
    ],
)
def test_bad_reservations_are_422_naming_the_field(
    api: TestClient, engine: Engine, body: dict[str, Any], needle: str
) -> None:
    engine.set_limit(usd=1, per="day", tenant="acme")
    answer = api.post("/api/v1/reservations", json=body)
    assert answer.status_code == 422, answer.text
    assert needle in answer.text


def test_bad_settle_bodies_are_422(api: TestClient, engine: Engine) -> None:
    for body in (
        {},
        {"amounts": {"x": "1"}, "event": event()},
        {"amounts": {"x": "-1"}},
        {"amounts": {"x": "NaN"}},
        {"event": {"model": "x"}},
    ):
        assert api.post("/api/v1/reservations/r1/settle", json=body).status_code == 422, body


def test_scopes_and_tenant_bound_keys(api: TestClient, engine: Engine) -> None:
    engine.set_limit(usd=1, per="day", tenant="acme")
    read = key(api, "read")
    assert api.post("/api/v1/reservations", json=reservation(), headers=read).status_code == 403
    assert api.delete("/api/v1/reservations/x", headers=read).status_code == 403
    bound = key(api, "ingest", tenant="acme")
    other = api.post("/api/v1/reservations", json=reservation(tenant="beta"), headers=bound)
    assert other.status_code == 403
    filled = api.post("/api/v1/reservations", json=reservation(tenant=None), headers=bound)
    assert filled.status_code == 201 and filled.json()["reservation_id"] is not None  # acme's limit
    anon = api.post("/api/v1/reservations", json=reservation(tenant=None))
    assert (
        anon.json()["reservation_id"] is None
    )  # an unbound key naming no tenant: acme's limit does not apply


def test_exhausted_credit_is_402_and_a_throttle_429_rate_limited(api: TestClient, engine: Engine) -> None:
    engine.set_limit(usd="0.02", per="lifetime", tenant="acme")
    assert api.post("/api/v1/reservations", json=reservation()).status_code == 201
    broke = api.post("/api/v1/reservations", json=reservation())
    assert broke.status_code == 402 and broke.json()["error"]["type"] == "credit_exhausted"
    assert "retry-after" not in broke.headers  # nothing to wait for: top it up
    engine.set_limit(requests=1, per="rolling:1h", tenant="beta", mode="throttle")
    assert api.post("/api/v1/reservations", json=reservation("beta")).status_code == 201
    throttled = api.post("/api/v1/reservations", json=reservation("beta"))
    assert throttled.status_code == 429 and throttled.json()["error"]["type"] == "rate_limited"
    assert int(throttled.headers["retry-after"]) > 0


def test_unpriced_model_is_refused_typed(api: TestClient, engine: Engine) -> None:
    engine.set_limit(usd=1, per="day", tenant="acme")
    answer = api.post("/api/v1/reservations", json=reservation(model="no-such-model-xyz"))
    assert answer.status_code == 429 and answer.json()["error"]["type"] == "unpriced_refused"


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_ledger_that_cannot_decide_follows_on_ledger_fault(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "locked.db"
    engine = Engine(str(path), policy=EnforcementPolicy(limit_timeout=0.05, on_ledger_fault=policy))
    engine.set_limit(usd=1, per="day", tenant="acme")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with TestClient(_app(engine), headers={"Authorization": f"Bearer {ADMIN}"}) as api:
            holder.execute("BEGIN IMMEDIATE")  # another process holds the ledger's write lock
            answer = api.post("/api/v1/reservations", json=reservation())
            if policy == "open":
                assert answer.status_code == 201
                assert answer.json()["reservation_id"] is None and answer.json()["unchecked"] is True
            else:
                assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
                assert answer.json()["error"]["type"] == "limit_undecided"
    finally:
        holder.close()
        engine.close()


def test_server_settings_choose_the_policy(tmp_path: Path) -> None:
    settings = ServerSettings.load(
        env={"LLMLEDGER_LIMIT_TIMEOUT": "0.2", "LLMLEDGER_ON_LEDGER_FAULT": "closed"},
    )
    assert (settings.limit_timeout, settings.on_ledger_fault) == (0.2, "closed")
    app = create_app(settings.model_copy(update={"ledger": f"sqlite:///{tmp_path / 's.db'}"}))
    policy = app.state.ledger.engine.enforcer.policy
    assert (policy.limit_timeout, policy.on_ledger_fault) == (0.2, "closed")
    app.state.ledger.engine.close()


def test_reservations_against_a_real_serve_process(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'proc.db'}"
    setup = Engine(ledger)
    limit = setup.set_limit(usd="0.02", per="day", tenant="acme")
    setup.close()
    with serve_process(ledger, ADMIN) as (url, _):
        c = httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        rid = c.post("/api/v1/reservations", json=reservation()).json()["reservation_id"]
        refused = c.post("/api/v1/reservations", json=reservation())
        assert refused.status_code == 429 and refused.json()["error"]["limit_id"] == limit.id
        assert (
            c.post(f"/api/v1/reservations/{rid}/settle", json={"amounts": {limit.id: "0.001"}}).status_code
            == 200
        )
        assert c.post("/api/v1/reservations", json=reservation()).status_code == 201  # room again
        stored = c.post("/api/v1/events", json={"events": [event(output_tokens=0, reservation_id=rid)]})
        assert stored.json()["accepted"] == 1
    check = Engine(ledger)
    (status,) = check.status(tenant="acme")
    assert (status.spent, status.reserved) == (Decimal("0.0025"), WORST)
    assert check.reconcile() == []
    check.close()


@pytest.mark.scale
@pytest.mark.postgres
def test_three_replicas_32_clients_each_never_overshoot_a_strict_limit(pg_url: str) -> None:
    setup = Engine(pg_url)
    setup.set_limit(usd=1, per="day", tenant="strict")
    setup.close()
    env = {
        "LLMLEDGER_ON_LEDGER_FAULT": "closed",
        "LLMLEDGER_LIMIT_TIMEOUT": "5",
        "LLMLEDGER_RATE_LIMIT": "100000",
    }
    with (
        serve_process(pg_url, ADMIN, **env) as (a, _),
        serve_process(pg_url, ADMIN, **env) as (b, _),
        serve_process(pg_url, ADMIN, **env) as (c, _),
    ):
        replicas = [a, b, c]

        def app(n: int) -> tuple[int, int]:
            # one app: reserve, "call" (billed its worst case: the provider used the whole cap),
            # send the event naming its reservation; twice
            http = httpx2.Client(
                base_url=replicas[n % 3], headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
            )
            made = refused = 0
            for _ in range(2):
                answer = http.post("/api/v1/reservations", json=reservation("strict"))
                while answer.status_code == 503:  # undecided (closed): retry
                    answer = http.post("/api/v1/reservations", json=reservation("strict"))
                if answer.status_code == 429:
                    refused += 1
                    continue
                assert answer.status_code == 201, answer.text
                rid = answer.json()["reservation_id"]
                assert rid is not None, answer.text
                sent = http.post(
                    "/api/v1/events", json={"events": [event(tenant="strict", reservation_id=rid)]}
                )
                assert sent.json()["accepted"] == 1
                made += 1
            return made, refused

        with concurrent.futures.ThreadPoolExecutor(96) as pool:
            results = list(pool.map(app, range(96)))
        made = sum(m for m, _ in results)
        spend = Decimal(
            httpx2.get(
                f"{a}/api/v1/spend", headers={"Authorization": f"Bearer {ADMIN}"}, params={"tenant": "strict"}
            ).json()["cost_usd"]
        )
        assert spend <= Decimal(1)  # 0 overshoot
        assert made == 80 and spend == 80 * WORST  # and every call that fits was admitted
        assert sum(r for _, r in results) == 192 - 80
    check = Engine(pg_url)
    assert check.status(tenant="strict")[0].reserved == 0
    assert check.reconcile() == []
    check.close()
