"""Prometheus metrics of one gateway: calls by outcome, upstream errors, refusals, overhead.

Registered in the server's registry when `llmledger serve` mounts the gateway (its `/metrics`
shows both), else in the gateway's own, served at the gateway's `/metrics`. Label children are
made once per label value and kept, so a request pays for a dictionary look-up and an increment.

- `llmledger_gateway_calls_total{endpoint, status}`: metered calls ended (ok, error, cancelled).
- `llmledger_gateway_upstream_errors_total{kind}`: upstream failures (`HTTP 500`, `Timeout`, ...),
  failed fallback attempts included.
- `llmledger_gateway_refusals_total{code}`: answers the gateway gave itself (`limit_exceeded`,
  `key_rate_limited`, `invalid_ledger_key`, `upstream_refused`, ...).
- `llmledger_gateway_overhead_seconds`: the gateway's own time per metered call (histogram; the
  upstream's wait excluded).
- `llmledger_gateway_events_quarantined`: events the ledger refused, kept in the quarantine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmledger.server.metrics import MetricSet

__all__ = ["GatewayMetrics"]

_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class GatewayMetrics(MetricSet):
    """The gateway's counters (thread-safe; prometheus-client's own locks)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, quarantined: Callable[[], float] | None = None
    ):
        super().__init__(registry)
        r = self.registry
        self._calls = Counter(
            "llmledger_gateway_calls",
            "Metered gateway calls ended, by outcome",
            ["endpoint", "status"],
            registry=r,
        )
        self._upstream = Counter(
            "llmledger_gateway_upstream_errors", "Upstream failures seen by the gateway", ["kind"], registry=r
        )
        self._refusals = Counter(
            "llmledger_gateway_refusals", "Answers the gateway gave itself, by code", ["code"], registry=r
        )
        self.overhead = Histogram(
            "llmledger_gateway_overhead_seconds",
            "The gateway's own time per metered call (the upstream's wait excluded)",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        if quarantined is not None:
            gauge = Gauge(
                "llmledger_gateway_events_quarantined",
                "Gateway events the ledger refused, kept in the quarantine",
                registry=r,
            )
            gauge.set_function(quarantined)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > 10_000:  # label values come from a bounded set; a guard only
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child

    def call(self, endpoint: str, status: str) -> None:
        """A metered call ended with `status`."""
        self._child(self._calls, endpoint, status).inc()

    def upstream_error(self, kind: str) -> None:
        """An upstream answered an error status, timed out or could not be reached."""
        self._child(self._upstream, kind[:64]).inc()

    def refusal(self, code: str) -> None:
        """The gateway answered a request itself (limit, key, attribution, upstream not allowed)."""
        self._child(self._refusals, code).inc()
