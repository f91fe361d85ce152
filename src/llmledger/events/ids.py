"""Time-ordered event identifiers (UUIDv7, RFC 9562).

Python gains `uuid.uuid7` only in 3.14, so this is a small, fast implementation: 48 bits of Unix
milliseconds, then a 12-bit counter seeded at random each millisecond (monotonic within a process,
RFC 9562 "method 1"), then 62 random bits.
"""

from __future__ import annotations

import os
import random
import threading
import time

__all__ = ["uuid7", "uuid7_time_ms"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_RAND_B = (1 << 62) - 1


def uuid7(now_ns: int | None = None) -> str:
    """Return a new UUIDv7 as its canonical 36-character string.

    IDs made in one process sort in creation order, even within one millisecond.
    """
    global _last_ms, _counter
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand = random.getrandbits(80)  # CPython reseeds `random` in a forked child
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = rand >> 69  # 11 random bits: leaves room to count up
        else:
            ms = _last_ms  # clock went back or same ms: stay monotonic
            _counter += 1
            if _counter > 0xFFF:
                _last_ms = ms = ms + 1
                _counter = 0
        counter = _counter
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | (rand & _RAND_B)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(event_id: str) -> int:
    """The Unix time in milliseconds encoded in a UUIDv7 string."""
    return int(event_id.replace("-", "")[:12], 16)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)
