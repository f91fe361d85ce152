"""The durable local journal (the spool): records survive the death of the process that wrote them.

Records in, acknowledgements out. The journal knows nothing of events or databases: a record is one
line of bytes (no newline inside) that the caller appends, and acknowledges with `done()` once its
sink has committed it. What a dead process left is handed back, whole, by `orphans()`.

- **Append**: one `os.write` of the line to an append-only file opened with `O_APPEND`, under a
  lock (so a segment is never closed under a writing thread). No fsync: once `write` returns, the
  bytes are in the kernel's page cache and survive the death of the process by any signal,
  `os._exit` or a crash of the interpreter. A **power loss or kernel crash** can lose what the
  kernel had not yet flushed to disk (typically the last few seconds: `vm.dirty_expire_centisecs`);
  the ledger's own SQLite WAL runs with `synchronous=NORMAL`, which makes the same trade.
- **Files**: `<directory>/<owner>.<n>.jnl`, mode 0600 in a 0700 directory. The owner (one per
  journal object: process id and a random token) holds an exclusive `fcntl.flock` on each of its
  files for as long as it lives, so another process can tell a dead owner's file: it can lock it.
  A file is created under a hidden name, locked, then renamed, so no one ever sees it unlocked.
- **Acknowledgement**: each append counts against its segment; `done(segment)` uncounts. A segment
  whose count is 0 and that has grown past `rotate_bytes` is deleted (a new one is opened on the
  next append); a segment past `segment_bytes` is retired (a new one opened) even while records in
  it are still owed, and deleted when they are acknowledged. (Deleting, not truncating: appends to
  a file truncated under them cost the appending threads far more.) A record may stand for an
  obligation that ends later (a call's start, closed by its end): the caller acknowledges it when
  the obligation ends.
- **Orphans**: `orphans()` locks every file of each dead or closed owner and yields them grouped
  by owner; the caller replays the records (idempotently: the same record may be replayed twice
  if a replayer dies half-way) and then calls `remove()`.
- **fork**: a child never writes to its parent's files. After `os.fork()` the child closes its
  inherited copies (the parent keeps its locks: a lock belongs to the open file, which the parent
  still holds) and starts its own files on its first append.

Torn lines (the last, unterminated line of a dead owner's file) are dropped: a line is written by
one `write`, so only a power loss, not a process death, can tear one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Journal", "OrphanFiles", "Segment"]

log = logging.getLogger("llmledger")

SUFFIX = ".jnl"
_HIDDEN = ".tmp-"


class Segment:
    """One journal file of this process: its descriptor, size and unacknowledged records."""

    __slots__ = ("fd", "path", "pending", "retired", "size")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.size = 0
        self.pending = 0
        self.retired = False


class OrphanFiles:
    """The files one dead (or closed) owner left, locked by us until `remove()` or `release()`."""

    def __init__(self, owner: str, files: list[tuple[Path, int]]) -> None:
        self.owner = owner
        self._files = files
        self.torn = 0
        """Unterminated last lines dropped (a power loss tears a line; a process death does not)."""

    @property
    def paths(self) -> list[Path]:
        return [path for path, _ in self._files]

    def records(self) -> list[bytes]:
        """Every complete record, in file order (files in creation order)."""
        out: list[bytes] = []
        for _, fd in self._files:
            data = _read_all(fd)
            lines = data.split(b"\n")
            if lines and lines[-1]:
                self.torn += 1
            out.extend(line for line in lines[:-1] if line)
        return out

    def remove(self) -> None:
        """Delete the files (their records are committed elsewhere) and drop the locks."""
        for path, fd in self._files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            os.close(fd)
        self._files = []

    def release(self) -> None:
        """Keep the files for a later replay (the sink failed) and drop the locks."""
        for _, fd in self._files:
            os.close(fd)
        self._files = []


class Journal:
    """An append-only, per-process spool of byte records under `directory`."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = 4 << 20,
        rotate_bytes: int = 256 << 10,
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.rotate_bytes = rotate_bytes
        self.errors = 0
        """Appends that failed (disk full, permissions): counted, and the record kept in memory only."""
        self.last_error: str | None = None
        self._init_state()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def _init_state(self) -> None:
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._current: Segment | None = None
        self._retired: list[Segment] = []
        self._serial = 0
        self._closed = False

    # -- the caller's side --------------------------------------------------------------------

    def append(self, line: bytes) -> Segment | None:
        """Write one record (`line` must not contain b"\\n"); returns the segment to acknowledge.

        None when the record could not be written (counted in `errors`; never raised) or the
        journal is closed: the caller still has the record in memory.
        """
        data = line + b"\n"
        with self._lock:
            seg = self._current
            if seg is None:
                if self._closed:
                    return None
                seg = self._open_segment()
                if seg is None:
                    return None
            try:
                written = os.write(seg.fd, data)
            except OSError as exc:
                self._failed(exc)
                return None
            if written != len(data):  # a full disk can cut a write short: end the line, drop it
                self._failed(OSError(errno.ENOSPC, "short write"))
                with contextlib.suppress(OSError):
                    os.write(seg.fd, b"\n")
                return None
            seg.size += written
            seg.pending += 1
            return seg

    def done(self, segment: Segment | None, count: int = 1) -> None:
        """Acknowledge `count` records of `segment` (committed by the sink, or no longer owed)."""
        if segment is not None:
            self.done_all({segment: count})

    def done_all(self, counts: dict[Segment, int]) -> None:
        """Acknowledge records of several segments at once (one lock for a whole batch)."""
        with self._lock:
            for segment, count in counts.items():
                segment.pending -= count
                if segment.pending > 0 or segment.fd < 0:
                    continue
                if not segment.retired and segment.size >= self.rotate_bytes:
                    # Everything in it is committed: start a new file on the next append and
                    # delete this one (cheaper for appenders than truncating it in place).
                    segment.retired = True
                    if self._current is segment:
                        self._current = None
                if segment.retired:
                    self._drop(segment)

    def maintain(self) -> None:
        """Retire the current segment when it has grown past `segment_bytes` (the writer calls it)."""
        with self._lock:
            seg = self._current
            if seg is not None and seg.size >= self.segment_bytes:
                seg.retired = True
                self._current = None
                if seg.pending <= 0:
                    self._drop(seg)
                else:
                    self._retired.append(seg)

    @property
    def pending(self) -> int:
        """Records appended and not yet acknowledged."""
        with self._lock:
            segs = [*self._retired, *([self._current] if self._current else [])]
            return sum(s.pending for s in segs)

    def close(self) -> None:
        """Stop appending; delete fully acknowledged files, leave (unlocked) those still owed, for
        the next process that opens the journal to replay."""
        with self._lock:
            self._closed = True
            segs = [*self._retired, *([self._current] if self._current else [])]
            self._current = None
            self._retired = []
            for seg in segs:
                if seg.pending <= 0:
                    self._drop(seg)
                else:
                    os.close(seg.fd)
                    seg.fd = -1

    # -- replay -------------------------------------------------------------------------------

    def orphans(self) -> Iterator[OrphanFiles]:
        """The files of owners that are gone, grouped by owner and locked by us, oldest first.

        Files another replayer holds, or that a live process owns, are skipped.
        """
        try:
            names = sorted(p.name for p in self.directory.iterdir())
        except FileNotFoundError:
            return
        by_owner: dict[str, list[str]] = {}
        for name in names:
            if name.endswith(SUFFIX) and not name.startswith(self.owner + "."):
                by_owner.setdefault(name.split(".", 1)[0], []).append(name)
            elif name.startswith(_HIDDEN):
                self._sweep_hidden(name)
        for owner, files in by_owner.items():
            locked: list[tuple[Path, int]] = []
            for name in sorted(files, key=_serial_of):
                got = _lock_existing(self.directory / name)
                if got is None:  # alive (or another replayer has it): leave the whole owner
                    for _, fd in locked:
                        os.close(fd)
                    locked = []
                    break
                locked.append((self.directory / name, got))
            if locked:
                yield OrphanFiles(owner, locked)

    # -- internals ----------------------------------------------------------------------------

    def _open_segment(self) -> Segment | None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._serial += 1
            final = self.directory / f"{self.owner}.{self._serial:06d}{SUFFIX}"
            hidden = self.directory / f"{_HIDDEN}{final.name}"
            fd = os.open(hidden, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(hidden, final)
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            self._failed(exc)
            return None
        seg = Segment(fd, final)
        self._current = seg
        return seg

    def _drop(self, seg: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1
        if seg in self._retired:
            self._retired.remove(seg)

    def _failed(self, exc: OSError) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.errors == 1 or self.errors % 1000 == 0:
            log.warning("llmledger: journal write failed (%s); %d so far", exc, self.errors)

    def _sweep_hidden(self, name: str) -> None:
        # A process died between creating its file and naming it: nothing was ever appended.
        path = self.directory / name
        fd = _lock_existing(path)
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_size == 0:
                    path.unlink()
            os.close(fd)

    def _forget_inherited(self) -> None:
        # In a forked child: close our copies of the parent's descriptors (the parent keeps its
        # locks) and start afresh with a new owner name.
        segs = [*self._retired, *([self._current] if self._current else [])]
        for seg in segs:
            with contextlib.suppress(OSError):
                os.close(seg.fd)
        self._init_state()


def _serial_of(name: str) -> int:
    try:
        return int(name.split(".")[1])
    except (IndexError, ValueError):
        return 0


def _lock_existing(path: Path) -> int | None:
    """Open and lock `path` if no one holds it; None if someone does, or it is gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_nlink == 0:  # removed by another replayer after we opened it
            raise FileNotFoundError(path)
    except OSError:
        os.close(fd)
        return None
    return fd


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _reset_in_child(ref: weakref.ref[Journal]) -> None:
    journal = ref()
    if journal is not None:
        journal._forget_inherited()
