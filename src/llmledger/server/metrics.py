"""Prometheus metrics of one server (its own registry: two apps in one process never share counters).

Names follow Prometheus conventions; token usage follows the OpenTelemetry GenAI metric
`gen_ai.client.token.usage` (exported as `gen_ai_client_token_usage`, label `gen_ai_token_type` =
input | output).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from llmledger.events.event import UsageEvent

__all__ = ["MetricSet", "Metrics"]

_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


class MetricSet:
    """Metrics in one registry (their own unless `registry` is given: two apps in one process never
    share counters), rendered in the text exposition format."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class Metrics(MetricSet):
    """The server's counters and histograms."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.ingested = Counter(
            "llmledger_events_ingested", "Usage events accepted by POST /api/v1/events", registry=r
        )
        self.rejected = Counter(
            "llmledger_events_rejected", "Usage events refused by POST /api/v1/events", registry=r
        )
        self.spend = Counter(
            "llmledger_spend_usd",
            "USD of the events ingested, by tenant and model",
            ["tenant", "model"],
            registry=r,
        )
        self.unpriced = Counter(
            "llmledger_events_unpriced", "Ingested events without a price, by model", ["model"], registry=r
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per ingested call (OpenTelemetry GenAI gen_ai.client.token.usage)",
            ["gen_ai_token_type", "gen_ai_request_model"],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "llmledger_reservations_refused",
            "Reservations refused by a limit, or undecided under on_ledger_fault=closed",
            registry=r,
        )
        self.requests = Counter(
            "llmledger_http_requests", "HTTP requests served", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "llmledger_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.auth_failures = Counter(
            "llmledger_auth_failures", "Requests refused for a missing or wrong key", registry=r
        )
        self.rate_limited = Counter(
            "llmledger_rate_limited", "Requests refused by a key's rate limit", registry=r
        )

    def observe_events(self, events: Iterable[UsageEvent]) -> None:
        """Count stored events: spend by tenant and model, tokens by type."""
        for e in events:
            if e.cost_usd is not None:
                self.spend.labels(e.tenant or "", e.model).inc(float(e.cost_usd))
            else:
                self.unpriced.labels(e.model).inc()
            self.tokens.labels("input", e.model).observe(e.input_tokens)
            self.tokens.labels("output", e.model).observe(e.output_tokens)
