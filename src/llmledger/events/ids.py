"""Time-ordered event identifiers (UUIDv7, RFC 9562).

Python gains `uuid.uuid7` only in 3.14, so this is a small, fast implementation: 48 bits of Unix
milliseconds, then a 12-bit counter seeded at random each millisecond (monotonic within a process,
RFC 9562 "method 1"), then 62 random bits.

`IdStream` makes the ids of metered calls without that cost on the caller's thread: the caller takes
only a sequence number, and the id is derived later (on the writer thread, or by a replay of the
journal) from the call's start time, the stream's 48-bit number and that sequence number.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import secrets
import threading
import time

__all__ = ["IdStream", "stream_number", "uuid7", "uuid7_at", "uuid7_time_ms"]

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


def uuid7_at(ms: int, stream: int, seq: int) -> str:
    """The UUIDv7 of sequence number `seq` (26 bits kept) of the 48-bit `stream` at Unix time `ms`.

    Deterministic: the same inputs give the same id (a replay derives the id the live writer used).
    Ids of one stream within one millisecond sort by `seq`; two streams collide only if their
    48-bit numbers are equal and the same `seq` (mod 2**26) falls in the same millisecond."""
    seq &= 0x3FFFFFF
    value = (
        ((ms & 0xFFFFFFFFFFFF) << 80)
        | (0x7 << 76)
        | ((seq >> 14) << 64)
        | (0b10 << 62)
        | ((seq & 0x3FFF) << 48)
        | (stream & 0xFFFFFFFFFFFF)
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stream_number(name: str) -> int:
    """The 48-bit stream number of a name (a journal's owner: process id and a random token)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=6).digest(), "big")


class IdStream:
    """Sequence numbers for the caller's thread (`next()`: an atomic counter step) and the ids
    derived from them (`id_at`). Named by a journal's owner (so a replay can derive the same ids
    from the owner's files), or random. Never shared across a fork: the child makes its own."""

    __slots__ = ("next", "stream")

    def __init__(self, name: str | None = None) -> None:
        self.stream = stream_number(name) if name is not None else secrets.randbits(48)
        self.next = itertools.count(1).__next__
        """The next sequence number (thread-safe: one C call under the GIL)."""

    def id_at(self, wall_us: int, seq: int) -> str:
        """The id of sequence number `seq`, taken by a call that started at `wall_us`."""
        return uuid7_at(wall_us // 1000, self.stream, seq)


def uuid7_time_ms(event_id: str) -> int:
    """The Unix time in milliseconds encoded in a UUIDv7 string."""
    return int(event_id.replace("-", "")[:12], 16)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)
