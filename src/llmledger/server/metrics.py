"""Prometheus metrics of one server (its own registry: two apps in one process never share counters).

Names follow Prometheus conventions; token usage follows the OpenTelemetry GenAI metric
`gen_ai.client.token.usage` (exported as `gen_ai_client_token_usage`, label `gen_ai_token_type` =
input | output).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        self.tokens = TokenUsage(r)
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
        """Count stored events: spend by tenant and model, tokens by type. Summed per batch first:
        a `labels()` and an `inc()`/`observe()` per event cost more than validating the event."""
        spend: dict[tuple[str, str], Decimal] = {}
        unpriced: dict[str, int] = {}
        tokens: dict[str, tuple[list[int], list[int]]] = {}
        for e in events:
            model = e.model
            if e.cost_usd is not None:
                key = (e.tenant or "", model)
                spend[key] = spend.get(key, 0) + e.cost_usd
            else:
                unpriced[model] = unpriced.get(model, 0) + 1
            counts = tokens.get(model)
            if counts is None:
                counts = tokens[model] = ([], [])
            counts[0].append(e.input_tokens)
            counts[1].append(e.output_tokens)
        for (tenant, model), usd in spend.items():
            self.spend.labels(tenant, model).inc(float(usd))
        for model, n in unpriced.items():
            self.unpriced.labels(model).inc(n)
        for model, (inputs, outputs) in tokens.items():
            self.tokens.observe("input", model, inputs)
            self.tokens.observe("output", model, outputs)

class TokenUsage(Collector):
    """`gen_ai_client_token_usage` (OpenTelemetry GenAI `gen_ai.client.token.usage`): a histogram
    by `gen_ai_token_type` and `gen_ai_request_model`, observed a batch at a time (one lock and a
    bisect per value; prometheus_client's `Histogram.observe` takes two locks per value)."""

    name = "gen_ai_client_token_usage"
    documentation = "Tokens per ingested call (OpenTelemetry GenAI gen_ai.client.token.usage)"

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], list[int]] = {}
        """(token type, model) -> count per bucket (the last one +Inf), then the sum."""
        registry.register(self)

    def observe(self, token_type: str, model: str, values: Iterable[int]) -> None:
        """Count each of `values` (token counts of one type and model)."""
        with self._lock:
            row = self._series.get((token_type, model))
            if row is None:
                row = self._series[(token_type, model)] = [0] * (len(_TOKEN_BUCKETS) + 2)
            for value in values:
                row[bisect_left(_TOKEN_BUCKETS, value)] += 1  # the first bucket with value <= its bound
                row[-1] += value

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            self.name, self.documentation, labels=["gen_ai_token_type", "gen_ai_request_model"]
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        with self._lock:
            series = [(labels, list(row)) for labels, row in self._series.items()]
        bounds = [*(floatToGoString(b) for b in _TOKEN_BUCKETS), "+Inf"]  # type: ignore[no-untyped-call]
        for labels, row in sorted(series):
            cumulative = 0
            buckets = []
            for bound, count in zip(bounds, row[:-1], strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric(list(labels), buckets, float(row[-1]))
        yield family
