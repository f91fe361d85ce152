"""The reservation routes decide on the event loop only when the ledger is free at once; a decision
that must wait for the write lock is handed to a worker thread, so the server keeps answering."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from llmledger.engine import EnforcementPolicy, Engine
from llmledger.server import ServerSettings, create_app
from llmledger.tokens import warm

ADMIN = "llk_0011223344556677_loop-admin-secret-0123456789"
RESERVE = {
    "provider": "openai",
    "model": "gpt-4o",
    "attribution": {"tenant": "acme"},
    "shape": {"input_tokens": 10},
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Engine, TestClient]]:
    path = tmp_path / "loop.db"
    engine = Engine(f"sqlite:///{path}", policy=EnforcementPolicy(limit_timeout=10.0))
    engine.set_limit(usd=100, per="month", tenant="acme")
    app = create_app(ServerSettings(ledger="sqlite://", admin_key=ADMIN), engine=engine)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield path, engine, client
    engine.close()


def test_a_free_ledger_is_decided_and_released(served: tuple[Path, Engine, TestClient]) -> None:
    _, engine, client = served
    for _ in range(3):
        made = client.post("/api/v1/reservations", json=RESERVE)
        assert made.status_code == 201, made.text
        rid = made.json()["reservation_id"]
        assert rid and made.json()["unchecked"] is False
        assert engine.held_until(rid) is not None
        assert client.delete(f"/api/v1/reservations/{rid}").status_code == 204
        assert engine.held_until(rid) is None
        assert client.delete(f"/api/v1/reservations/{rid}").status_code == 404  # released already


def test_a_decision_waiting_for_the_lock_does_not_block_the_server(
    served: tuple[Path, Engine, TestClient],
) -> None:
    path, _, client = served
    client.post("/api/v1/reservations", json=RESERVE)  # the decision connection is open
    warm().join()  # the tokenizer's load holds the GIL at times: not what is measured here
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the ledger's write lock
    answer: dict[str, Any] = {}

    def reserve() -> None:
        answer["response"] = client.post("/api/v1/reservations", json=RESERVE)
        answer["at"] = time.monotonic()

    asking = threading.Thread(target=reserve)
    asking.start()
    try:
        time.sleep(0.05)
        started = time.monotonic()
        health = client.get("/healthz")
        answered = time.monotonic()
        assert health.status_code == 200
        # the lock is held 2 s: a blocked loop would answer after it (a busy machine: well before)
        assert answered - started < 1.0, "the waiting decision blocked the event loop"
        time.sleep(max(0.0, 2.0 - (answered - started)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    asking.join(10)
    made = answer["response"]
    assert made.status_code == 201, made.text
    assert made.json()["reservation_id"] and made.json()["unchecked"] is False
    assert answer["at"] >= answered
