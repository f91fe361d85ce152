"""Spend limits enforced by the gateway before forwarding: refusals in the provider's own error
format (the SDKs raise their usual classes), credit exhausted as 402, downgrades in place, and every
reservation settled — including a stream the client hangs up on."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import openai
import pytest
import sqlalchemy as sa
from tests.fakes.upstream import Upstream
from tests.gateway_rig import Rig, rig

from llmledger.storage.tables import reservations

MESSAGES = [{"role": "user", "content": "Hi"}]


def _held(r: Rig) -> int:
    with r.engine.ledger.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(reservations)).scalar_one())


def _wait_unheld(r: Rig) -> None:
    deadline = time.monotonic() + 10
    while _held(r) and time.monotonic() < deadline:
        r.gateway.recorder.flush(5)
        time.sleep(0.05)
    assert _held(r) == 0


def test_hard_limit_is_the_sdks_rate_limit_error_and_nothing_is_sent(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        limit = r.engine.set_limit(usd="0.000001", per="day", tenant="acme")
        client = r.openai(**{"X-Ledger-Tenant": "acme"})
        with pytest.raises(openai.RateLimitError, match=f"limit {limit.id} for tenant=acme") as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
        headers = caught.value.response.headers
        assert int(headers["retry-after"]) >= 1 and headers["x-should-retry"] == "false"
        assert headers["x-ledger-error"] == "limit_exceeded"
        with pytest.raises(anthropic.RateLimitError, match="would be exceeded"):
            r.anthropic(**{"X-Ledger-Tenant": "acme"}).messages.create(
                model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES
            )
        r.openai(**{"X-Ledger-Tenant": "other"}).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert len(r.upstream.fake.seen) == 1  # only the other tenant's call reached the provider
        assert [e.tenant for e in r.events()] == ["other"]
        assert _held(r) == 0


def test_exhausted_credit_is_402(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.engine.set_limit(usd="0.000001", per="lifetime", user="u-1")
        client = r.openai(**{"X-Ledger-User": "u-1"})
        with pytest.raises(openai.APIStatusError, match="does not reset") as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
        assert caught.value.status_code == 402
        assert caught.value.response.headers["x-ledger-error"] == "credit_exhausted"
        assert r.upstream.fake.seen == []


def test_soft_limit_downgrades_in_place(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.engine.set_limit(
            usd="0.000001", per="day", tenant="acme", mode="soft", downgrade={"gpt-4o": "gpt-4o-mini"}
        )
        client = r.openai(**{"X-Ledger-Tenant": "acme"})
        completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=20)
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=20, stream=True)
        list(stream)
        sent = [s.body["model"] for s in r.upstream.fake.seen]
        events = r.wait_events(2)  # a stream's event is recorded just after its last chunk
        _wait_unheld(r)
    assert sent == ["gpt-4o-mini", "gpt-4o-mini"]
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert [(e.requested_model, e.model) for e in events] == [("gpt-4o", "gpt-4o-mini-2024-07-18")] * 2


def test_admitted_calls_settle_and_reconcile(tmp_path: Path) -> None:
    with rig(tmp_path, upstream=Upstream(delay=0.02)) as r:
        r.engine.set_limit(usd=100, per="month", tenant="acme")
        client = r.openai(**{"X-Ledger-Tenant": "acme"})
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
        r.upstream.statuses = [500]
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
        r.upstream.stall_after = 4
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=20, stream=True
        )
        next(stream)
        stream.close()
        events = r.wait_events(3)
        _wait_unheld(r)  # every reservation settled and dropped by its event's write
        assert r.engine.reconcile() == []
        [status] = r.engine.status(tenant="acme")
    assert [e.status for e in events] == ["ok", "error", "cancelled"]
    assert status.spent == sum(e.cost_usd or 0 for e in events)
