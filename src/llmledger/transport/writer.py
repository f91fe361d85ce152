"""Moves events off the caller's thread: a bounded in-memory buffer drained by a background writer.

- `submit()` never blocks and never touches the disk: an append to a deque. When the buffer is full
  the event is dropped and counted (never silently): `stats().dropped`.
- The writer thread wakes every `flush_interval` seconds (or as soon as a batch is full), hands up to
  `batch_size` events to the sink in one call, and retries a failing sink with backoff while keeping
  the events (the buffer bound still holds, so a long outage drops new events and counts them).
  After a failure batches are halved (down to one event), and doubled back after each success.
- `close()` flushes, then stops the thread: at once if the flush timed out (the sink failing),
  so a closed writer never spins; what it still held stays counted in `pending`.
- `flush()` waits until everything submitted before it is written; interpreter exit flushes.
- Fork-safe: a child process starts with an empty buffer and its own writer thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["BackgroundWriter", "WriterCounters", "describe_error"]

log = logging.getLogger("llmledger")

T = TypeVar("T")


class WriterCounters:
    """Counts kept by a writer. Each is written by one thread only, or under the writer's lock."""

    __slots__ = ("dropped", "last_error", "write_errors", "written")

    def __init__(self) -> None:
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self.last_error: str | None = None


class BackgroundWriter(Generic[T]):
    """A bounded buffer with one background thread that delivers batches to `sink`."""

    def __init__(
        self,
        sink: Callable[[Sequence[T]], None],
        *,
        max_buffer: int = 100_000,
        batch_size: int = 5_000,
        flush_interval: float = 0.2,
        max_backoff: float = 5.0,
        name: str = "llmledger-writer",
        tick: Callable[[], None] | None = None,
        tick_interval: float = 2.0,
    ) -> None:
        self._sink = sink
        self._tick = tick
        self.tick_interval = tick_interval
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.name = name
        self.counters = WriterCounters()
        self._init_state()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def _init_state(self) -> None:
        self._buffer: deque[T] = deque()
        self._retry: list[T] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._busy = False
        self._in_flight = 0
        self._closed = False
        self._stop_at = float("inf")
        self._size = self.batch_size
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Events accepted but not yet written."""
        return len(self._buffer) + len(self._retry) + self._in_flight

    def submit(self, item: T) -> bool:
        """Queue one item for writing. Returns False (and counts a drop) if the buffer is full."""
        buffer = self._buffer
        if len(buffer) + len(self._retry) >= self.max_buffer or self._closed:
            with self._lock:
                self.counters.dropped += 1
                if self.counters.dropped == 1 or self.counters.dropped % 10_000 == 0:
                    log.warning(
                        "llmledger: buffer full (%d); %d event(s) dropped so far (ledger slow or down?)",
                        self.max_buffer,
                        self.counters.dropped,
                    )
            return False
        buffer.append(item)
        if self._thread is None:
            self._start()
        elif len(buffer) >= self.batch_size and not self._wake.is_set():
            # once per writer cycle: while the writer works through a backlog, every submit
            # setting the event again took its lock and woke no one (~half the calls of a burst)
            self._wake.set()
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def flush(self, timeout: float | None = 30.0, give_up: Callable[[], bool] | None = None) -> bool:
        """Write everything queued so far. Returns False if `timeout` ran out first, or as soon as
        `give_up()` says waiting is pointless (a sink whose failures the journal keeps safe)."""
        if self._thread is None:
            if not self.pending:
                return True
            self._start()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._buffer or self._retry or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if give_up is not None and give_up():
                    return False
                self._wake.set()
                self._idle.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    def close(self, timeout: float | None = 10.0, give_up: Callable[[], bool] | None = None) -> bool:
        """Flush (see `flush` for `give_up`), then stop the writer thread. Later submits are
        dropped and counted."""
        done = self.flush(timeout, give_up)
        # The thread stops once everything is written, or at once if the flush timed out (the
        # sink is failing): what it still holds is counted in `pending` (and, with a journal,
        # kept on disk for the next process).
        self._stop_at = time.monotonic() if not done else time.monotonic() + (timeout or 0.0)
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return done

    def _take_batch(self) -> list[T]:
        # After a failure the next batches are smaller (halved per failure, doubled back per
        # success): a sink that fails for lack of room (a full disk) can still take small ones.
        with self._lock:
            size = self._size
            batch = self._retry[:size]
            self._retry = self._retry[size:]
            buffer = self._buffer
            while buffer and len(batch) < size:
                batch.append(buffer.popleft())
            self._busy = bool(batch)
            self._in_flight = len(batch)
            return batch

    def _run(self) -> None:
        backoff = 0.0
        next_tick = 0.0
        while True:
            if self._closed and (not self.pending or time.monotonic() >= self._stop_at):
                return
            if backoff:
                # After a failure, wait out the backoff even if flush() or close() asks to hurry
                # (a closed writer whose sink keeps failing must not spin).
                retry_at = time.monotonic() + backoff
                while (left := min(retry_at, self._stop_at) - time.monotonic()) > 0:
                    self._wake.wait(left)
                    self._wake.clear()
                if self._closed and time.monotonic() >= self._stop_at:
                    return
            else:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            while True:
                batch = self._take_batch()
                if not batch:
                    break
                if self._deliver(batch):
                    backoff = 0.0
                    continue
                backoff = min(self.max_backoff, max(0.05, backoff * 2))
                break
            with self._idle:
                self._idle.notify_all()
            if self._closed and not self.pending:
                return
            if self._tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_interval
                try:
                    self._tick()
                except Exception as exc:  # housekeeping must never stop the writer
                    log.warning("llmledger: writer housekeeping failed: %s", describe_error(exc))

    def _deliver(self, batch: list[T]) -> bool:
        try:
            self._sink(batch)
        except Exception as exc:  # the sink is a database or a network: keep the events, retry
            with self._lock:
                self.counters.write_errors += 1
                self.counters.last_error = describe_error(exc)
                self._retry = batch + self._retry
                self._size = max(1, min(self._size, len(batch)) // 2)
                self._busy = False
                self._in_flight = 0
                if self.counters.write_errors == 1 or self.counters.write_errors % 100 == 0:
                    log.warning("llmledger: writing %d event(s) failed (%s); will retry", len(batch), exc)
            return False
        with self._lock:
            self._size = min(self.batch_size, self._size * 2)
            self.counters.written += len(batch)
            self._busy = False
            self._in_flight = 0
        return True


def describe_error(exc: BaseException) -> str:
    """A short, one-line description of a sink failure: the driver's own error when SQLAlchemy
    wraps one, never the statement or its parameters (which hold attribution data)."""
    cause = getattr(exc, "orig", None) or exc
    first_line = (str(cause).splitlines() or [""])[0][:200]
    return f"{type(cause).__name__}: {first_line}"


def _reset_in_child(ref: weakref.ref[BackgroundWriter[Any]]) -> None:
    # The parent still owns (and will write) what it had buffered; the child starts clean.
    writer = ref()
    if writer is not None:
        writer._init_state()
