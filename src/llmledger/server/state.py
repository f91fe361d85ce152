"""What one server app holds: its settings, its engine, metrics, the key cache and the rate limiter.

Nothing here is a module global: `create_app()` builds one `ServerState` per app.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmledger.engine import Engine
from llmledger.server.metrics import Metrics
from llmledger.server.settings import ServerSettings
from llmledger.server.webhooks import WebhookSender
from llmledger.storage.keys import ApiKey

__all__ = ["KEY_CACHE_SECONDS", "RateLimiter", "ServerState"]

KEY_CACHE_SECONDS = 5.0
"""How long a verified key is trusted without asking the database again. A key revoked through
this server stops at once; revoked through another replica, within this many seconds."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: `rate` requests per second, bursts up to `2 * rate`."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0.0 when a request may go now, else the seconds until one may."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate


@dataclass
class ServerState:
    """One app's state (`request.app.state.ledger`)."""

    settings: ServerSettings
    engine: Engine
    metrics: Metrics = field(default_factory=Metrics)
    webhooks: WebhookSender | None = None
    """Delivers threshold alerts to `settings.webhooks` (None when there are none)."""
    limiter: RateLimiter = field(init=False)
    _keys: dict[str, tuple[ApiKey, float]] = field(default_factory=dict)
    _keys_lock: threading.Lock = field(default_factory=threading.Lock)
    on_forget_key: list[Callable[[str], None]] = field(default_factory=list)
    """Called with a revoked key's id (the gateway mounted beside the API drops it from its cache)."""

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.settings.rate_limit)

    def cached_key(self, presented: str) -> ApiKey | None:
        """The key `presented` is when it was verified in the last `KEY_CACHE_SECONDS` (no database
        read), else None: then ask `verify` (off the event loop: it may read the database)."""
        return self._cached(_digest(presented), time.monotonic())

    def verify(self, presented: str) -> ApiKey | None:
        """The active key `presented` is, or None; verified keys are cached for a few seconds."""
        digest = _digest(presented)
        now = time.monotonic()
        cached = self._cached(digest, now)
        if cached is not None:
            return cached
        key = self.engine.keys.verify(presented)
        with self._keys_lock:
            if key is None:
                self._keys.pop(digest, None)
            else:
                if len(self._keys) > 10_000:
                    self._keys.clear()
                self._keys[digest] = (key, now + KEY_CACHE_SECONDS)
        return key

    def _cached(self, digest: str, now: float) -> ApiKey | None:
        with self._keys_lock:
            cached = self._keys.get(digest)
        return cached[0] if cached is not None and cached[1] > now else None

    def forget_key(self, key_id: str) -> None:
        """Drop a revoked key from the cache."""
        with self._keys_lock:
            for digest in [d for d, (k, _) in self._keys.items() if k.key_id == key_id]:
                del self._keys[digest]
        for forget in self.on_forget_key:
            forget(key_id)


def _digest(presented: str) -> str:
    """The cache's name for a presented key (the secret itself is never kept)."""
    return hashlib.sha256(presented.encode("utf-8", "replace")).hexdigest()
