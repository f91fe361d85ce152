"""The server's metrics, counted a batch at a time, read the same as prometheus_client's own
per-event counting: the token histogram's buckets, counts and sums, spend and unpriced counters."""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import httpx2
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from tests.serving import serve_thread

from llmledger.events.event import UsageEvent
from llmledger.server import ServerSettings, create_app
from llmledger.server.metrics import _TOKEN_BUCKETS, Metrics

ADMIN = "llk_00112233445566aa_admin-secret-for-the-tests-0123"


def _events(n: int) -> list[UsageEvent]:
    rng = random.Random(7)
    now = datetime(2026, 12, 2, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        tokens = rng.choice([0, 1, 3, 4, 5, 1024, 1025, 4194304, 4194305, 10**9, rng.randrange(10**6)])
        out.append(
            UsageEvent(
                event_id=f"e{i}",
                timestamp=now,
                provider="openai",
                model=rng.choice(["gpt-4o", "gpt-4o-mini", "made-up"]),
                input_tokens=tokens,
                output_tokens=rng.randrange(5000),
                cost_usd=None if i % 5 == 0 else Decimal(rng.randrange(1, 10**6)) / 10**7,
                tenant=rng.choice([None, "acme", "globex"]),
            )
        )
    return out


def _lines(text: bytes, prefix: str) -> list[str]:
    return sorted(
        line for line in text.decode().splitlines() if line.startswith(prefix) and "_created" not in line
    )


def test_batched_metrics_read_as_per_event_counting_does() -> None:
    events = _events(600)
    metrics = Metrics()
    for start in range(0, len(events), 97):  # batches of any size
        metrics.observe_events(events[start : start + 97])
    reference = CollectorRegistry()
    tokens = Histogram(
        "gen_ai_client_token_usage",
        "Tokens per ingested call (OpenTelemetry GenAI gen_ai.client.token.usage)",
        ["gen_ai_token_type", "gen_ai_request_model"],
        buckets=_TOKEN_BUCKETS,
        registry=reference,
    )
    spend = Counter("llmledger_spend_usd", "", ["tenant", "model"], registry=reference)
    unpriced = Counter("llmledger_events_unpriced", "", ["model"], registry=reference)
    for e in events:
        tokens.labels("input", e.model).observe(e.input_tokens)
        tokens.labels("output", e.model).observe(e.output_tokens)
        if e.cost_usd is None:
            unpriced.labels(e.model).inc()
        else:
            spend.labels(e.tenant or "", e.model).inc(float(e.cost_usd))
    ours, theirs = metrics.render(), generate_latest(reference)
    assert len(_lines(ours, "gen_ai_client_token_usage_bucket")) == 3 * 2 * (len(_TOKEN_BUCKETS) + 1)
    assert _lines(ours, "gen_ai_client_token_usage") == _lines(theirs, "gen_ai_client_token_usage")
    assert _lines(ours, "# TYPE gen_ai") == _lines(theirs, "# TYPE gen_ai")
    assert _lines(ours, "llmledger_events_unpriced_total") == _lines(
        theirs, "llmledger_events_unpriced_total"
    )
    # spend: summed exactly per batch, then one float: equal to the per-event float sum within rounding
    pattern = re.compile(r'^llmledger_spend_usd_total\{model="([^"]+)",tenant="([^"]*)"\} (\S+)$', re.M)
    got = {(m, t): float(v) for m, t, v in pattern.findall(ours.decode())}
    want = {(m, t): float(v) for m, t, v in pattern.findall(theirs.decode())}
    assert got.keys() == want.keys() and len(got) == 9
    assert all(abs(got[k] - want[k]) <= 1e-12 * max(1.0, want[k]) for k in got)


def test_requests_are_counted_by_route_method_and_status(tmp_path: Path) -> None:
    app = create_app(ServerSettings(ledger=f"sqlite:///{tmp_path / 'm.db'}", admin_key=ADMIN))  # type: ignore[arg-type]
    with serve_thread(app) as url:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        assert httpx2.post(f"{url}/api/v1/events", json={"events": []}, headers=headers).status_code == 200
        assert httpx2.post(f"{url}/api/v1/events", json={"events": []}).status_code == 401
        assert httpx2.get(f"{url}/no/such/path").status_code == 404
        held = httpx2.delete(f"{url}/api/v1/reservations/r1", headers=headers)
        assert held.status_code == 404
        text = httpx2.get(f"{url}/metrics", headers=headers).text  # /metrics needs a read key
    for route, method, status in (
        ("/api/v1/events", "POST", "200"),
        ("/api/v1/events", "POST", "401"),
        ("unmatched", "GET", "404"),
        ("/api/v1/reservations/{reservation_id}", "DELETE", "404"),
    ):
        assert (
            f'llmledger_http_requests_total{{method="{method}",route="{route}",status="{status}"}} 1.0'
            in text
        )
        assert f'llmledger_http_request_duration_seconds_count{{method="{method}",route="{route}"}}' in text
