"""Threshold alerts POSTed to the configured webhooks, signed, retried, delivered once.

An alert (a limit's threshold crossed by committed spend, or a blocking limit's first refusal in a
window) reaches a server once across replicas (the ledger's alerts table); it is queued in memory
(never blocking the request that fired it), recorded in the ledger's delivery table by a background
thread — one row per webhook, limit, subject, window and threshold, so it is delivered once even if
two replicas record it — and POSTed until a 2xx answer, with exponential backoff and jitter.

Each POST: `Content-Type: application/json`, `X-Ledger-Timestamp: <unix seconds>`,
`X-Ledger-Signature: sha256=<hex HMAC-SHA256 of the raw body with the webhook's secret>`. The body
carries the same `sent_at`; receivers verify the signature over the raw bytes, compare it in constant
time, refuse a `sent_at` older than a few minutes, and dedupe on `id` (see docs/server.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from llmledger._version import __version__
from llmledger.events.ids import uuid7
from llmledger.limit.model import Alert
from llmledger.server.settings import Webhook
from llmledger.storage.decide import alert_key, level_key
from llmledger.storage.webhooks import Delivery, DeliveryStore

__all__ = ["WebhookSender", "alert_payload", "sign"]

log = logging.getLogger("llmledger.server")
SIGNATURE_HEADER = "X-Ledger-Signature"
TIMESTAMP_HEADER = "X-Ledger-Timestamp"


def sign(secret: str, body: bytes) -> str:
    """The `X-Ledger-Signature` value of `body`: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alert_payload(alert: Alert, fired_us: int) -> tuple[str, dict[str, object]]:
    """(the alert's key: limit, subject, window, threshold and kind; the JSON body without `sent_at`)."""
    limit = alert.limit
    key = f"{limit.id}|{alert.subject}|{alert_key(limit, fired_us)}|{level_key(alert.threshold)}|{alert.kind}"
    body: dict[str, object] = {
        "id": "alrt_" + hashlib.sha256(key.encode()).hexdigest()[:24],
        "type": f"limit.{alert.kind}",
        "limit": {
            "id": limit.id,
            "name": limit.name,
            "scope": dict(limit.scope),
            "metric": limit.metric,
            "amount": str(limit.amount),
            "window": limit.window.describe(),
            "mode": limit.mode,
        },
        "subject": alert.subject,
        "threshold": level_key(alert.threshold),
        "spent": str(alert.spent),
        "allowed": str(alert.allowed),
        "fired_at": datetime.fromtimestamp(fired_us / 1e6, timezone.utc).isoformat(),
    }
    return key, body


@dataclass(frozen=True, slots=True)
class _Hook:
    id: str
    url: str
    secret: str


class WebhookSender:
    """Queues alerts (`on_alert`, safe from any thread, never blocks) and delivers them on a daemon
    thread (`start`/`stop`). `attempts`: tries per delivery before it is marked failed; the wait
    after the n-th failure is `base_delay * 2**(n-1)` (capped at `max_delay`), plus up to 10 %
    jitter."""

    def __init__(
        self,
        store: DeliveryStore,
        hooks: Sequence[Webhook],
        *,
        attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        lease: float = 30.0,
        timeout: float = 10.0,
        poll: float = 1.0,
    ) -> None:
        self.store = store
        self.hooks = {
            h.id: h
            for h in (
                _Hook(hashlib.sha256(w.url.encode()).hexdigest()[:32], w.url, w.secret.get_secret_value())
                for w in hooks
            )
        }
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self.lease, self.timeout, self.poll = lease, timeout, poll
        self._queue: queue.Queue[tuple[Alert, int]] = queue.Queue(maxsize=10_000)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def on_alert(self, alert: Alert) -> None:
        """Queue an alert for every webhook (dropped, counted and logged when the queue is full)."""
        try:
            self._queue.put_nowait((alert, time.time_ns() // 1000))
        except queue.Full:
            self.dropped += 1
            log.warning("llmledger: webhook queue full; alert for %s dropped", alert.limit.id)
            return
        self._wake.set()

    def start(self) -> None:
        """Start the delivery thread (once)."""
        if self._thread is None and self.hooks:
            self._thread = threading.Thread(target=self._run, name="llmledger-webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Record what is queued, then stop the thread (pending deliveries stay in the ledger: this
        or another server delivers them later)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self._record()
                if not stopping:
                    self._deliver_due()
            except Exception as exc:  # the ledger is down or locked: try again on the next round
                log.warning("llmledger: webhook round failed: %s: %s", type(exc).__name__, exc)
            if stopping:
                return
            self._wake.wait(self.poll)
            self._wake.clear()

    def _record(self) -> None:
        deliveries: list[Delivery] = []
        while True:
            try:
                alert, fired_us = self._queue.get_nowait()
            except queue.Empty:
                break
            key, body = alert_payload(alert, fired_us)
            text = json.dumps(body, separators=(",", ":"), sort_keys=True)
            deliveries += [Delivery(uuid7(), hook, key, text) for hook in self.hooks]
        if deliveries:
            self.store.add(deliveries, time.time_ns() // 1000)

    def _deliver_due(self) -> None:
        now_us = time.time_ns() // 1000
        for delivery in self.store.claim(now_us, int(self.lease * 1e6)):
            hook = self.hooks.get(delivery.hook)
            if hook is None:  # a webhook no longer configured here: another server may have it
                continue
            attempts = delivery.attempts + 1
            error = self._post(hook, delivery.payload)
            done_us = time.time_ns() // 1000
            if error is None:
                self.store.delivered(delivery.delivery_id, attempts, done_us)
                self.delivered += 1
            elif attempts >= self.attempts:
                self.store.failed(delivery.delivery_id, attempts, done_us, error)
                self.failed += 1
                log.warning("llmledger: webhook %s gave up after %d attempts: %s", hook.url, attempts, error)
            else:
                delay = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
                delay *= 1 + random.random() / 10
                self.store.retry(delivery.delivery_id, attempts, done_us + int(delay * 1e6), error)

    def _post(self, hook: _Hook, payload: str) -> str | None:
        """POST once; None when the receiver answered 2xx, else what went wrong."""
        sent = int(time.time())
        body = json.dumps(
            {**json.loads(payload), "sent_at": sent}, separators=(",", ":"), sort_keys=True
        ).encode()
        request = urllib.request.Request(
            hook.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"llmledger/{__version__}",
                TIMESTAMP_HEADER: str(sent),
                SIGNATURE_HEADER: sign(hook.secret, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read(65536)
                return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"[:256]
