"""The durable local journal (the spool): records survive the death of the process that wrote them.

Records in, acknowledgements out. The journal knows nothing of events or databases: a record is one
line of bytes (no newline inside) that the caller appends, and acknowledges with `done()` once its
sink has committed it. What a dead process left is handed back, whole, by `orphans()`.

- **Append**: a memory copy into this process's current segment, a file mapped with `mmap`
  (`MAP_SHARED`) whose blocks were allocated up front (`posix_fallocate`), under a lock (so a
  segment is never unmapped under a writing thread). No system call and no fsync per record: the
  bytes are in the kernel's page cache as soon as the copy is done, and the page cache belongs to
  the file, not the process, so they survive the death of the process by any signal, `os._exit`
  or a crash of the interpreter, and are written back by the kernel like any dirty page. A
  **power loss or kernel crash** can lose what the kernel had not yet written back (typically the
  last few seconds: `vm.dirty_expire_centisecs`); the ledger's own SQLite WAL runs with
  `synchronous=NORMAL`, which makes the same trade. Blocks are allocated before the file is
  mapped, so a full disk fails the segment's creation (counted in `errors`), never a copy
  (a write into a mapped hole of a full filesystem would kill the process with SIGBUS). Where
  `mmap` or `posix_fallocate` is unavailable, a record is one `os.write` to an `O_APPEND` file.
- **Files**: `<directory>/<owner>.<n>.jnl`, mode 0600 in a 0700 directory. The owner (one per
  journal object: process id and a random token) holds an exclusive `fcntl.flock` on each of its
  files for as long as it lives, so another process can tell a dead owner's file: it can lock it.
  A file is created under a hidden name, locked, then renamed, so no one ever sees it unlocked.
- **Acknowledgement**: each append counts against its segment; `done(segment)` uncounts. A segment
  whose count is 0 and that has grown past `rotate_bytes` is deleted (a new one is opened on the
  next append); a full segment (`segment_bytes`) is retired (a new one opened) even while records
  in it are still owed, and deleted when they are acknowledged. (Deleting, not truncating: appends to
  a file truncated under them cost the appending threads far more.) A record may stand for an
  obligation that ends later (a call's start, closed by its end): the caller acknowledges it when
  the obligation ends.
- **Orphans**: `orphans()` locks every file of each dead or closed owner and yields them grouped
  by owner; the caller replays the records (idempotently: the same record may be replayed twice
  if a replayer dies half-way) and then calls `remove()`.
- **fork**: a child never writes to its parent's files. After `os.fork()` the child closes its
  inherited copies (the parent keeps its locks: a lock belongs to the open file, which the parent
  still holds) and starts its own files on its first append.

A mapped segment is zero-filled past its last record. A record's newline is stored after the
whole record, so a record cut by the death of its process (in the middle of its copy) has none:
such a torn line (the last, unterminated line of a dead owner's file) is dropped, like the torn
tail a power loss can leave. The call it belonged to had not returned (see `sdk/spool.py`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import secrets
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

from llmledger.events.ids import IdStream

__all__ = ["Journal", "OrphanFiles", "Segment"]

log = logging.getLogger("llmledger")

SUFFIX = ".jnl"
_HIDDEN = ".tmp-"


_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
_SMALLEST = 64 << 10
"""The smallest mapped segment tried when the full size cannot be allocated (a nearly full disk)."""


class Segment:
    """One journal file of this process: its descriptor, mapping, size and unacknowledged records."""

    __slots__ = ("capacity", "fd", "mm", "pair", "path", "pending", "retired", "size")

    def __init__(self, fd: int, path: Path, mm: mmap.mmap | None = None, capacity: int = sys.maxsize) -> None:
        self.fd = fd
        self.path = path
        self.mm = mm
        """The file's mapping (None: records are appended with `os.write`)."""
        self.capacity = capacity
        """Bytes the segment can hold (its allocated, mapped size)."""
        self.size = 0
        """Bytes of records written (the next record's offset)."""
        self.pending = 0
        self.retired = False
        self.pair = (self, self)
        """Two records in this segment (a call's start and end): one tuple for every such call, not
        a new one each (a call waiting for the writer holds it; fewer objects for the GC to scan)."""

    def unmap(self) -> None:
        mm, self.mm = self.mm, None
        if mm is not None:
            mm.close()


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
            data = _read_all(fd).rstrip(b"\0")  # a mapped segment is zero-filled past its records
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
        segment_bytes: int = 1 << 20,
        rotate_bytes: int = 256 << 10,
        mapped: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.rotate_bytes = rotate_bytes
        self.mapped = mapped and hasattr(os, "posix_fallocate")
        """Records are copied into mapped files (else: one `os.write` each)."""
        self.errors = 0
        """Appends that failed (disk full, permissions): counted, and the record kept in memory only."""
        self.last_error: str | None = None
        self._init_state()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_in_child(ref))

    def _init_state(self) -> None:
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.ids = IdStream(self.owner)
        """Sequence numbers of this owner's records, and the event ids derived from them (a replay
        derives the same ids from the owner named by the files)."""
        self._lock = threading.Lock()
        self._current: Segment | None = None
        self._retired: list[Segment] = []
        self._serial = 0
        self._closed = False

    # -- the caller's side --------------------------------------------------------------------

    def append(self, line: bytes) -> Segment | None:
        """Write one record (`line` must contain neither b"\\n" nor b"\\0"); returns the segment to
        acknowledge.

        None when the record could not be written (counted in `errors`; never raised) or the
        journal is closed: the caller still has the record in memory.
        """
        size = len(line) + 1
        with self._lock:
            seg = self._current
            if seg is None or seg.size + size > seg.capacity:
                seg = self._next_segment(size)
                if seg is None:
                    return None
            mm = seg.mm
            if mm is not None:  # a memory copy: the record first, then its newline (see above)
                end = seg.size + size - 1
                mm[seg.size : end] = line
                mm[end] = 10
                seg.size = end + 1
                seg.pending += 1
                return seg
            data = line + b"\n"
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
                    seg.unmap()
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

    def _next_segment(self, size: int) -> Segment | None:
        # The current segment (if any) cannot take `size` more bytes: retire it, open the next.
        seg = self._current
        if seg is not None:
            self._current = None
            seg.retired = True
            if seg.pending <= 0:
                self._drop(seg)
            else:
                self._retired.append(seg)
        if self._closed:
            return None
        return self._open_segment(size)

    def _open_segment(self, size: int) -> Segment | None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._serial += 1
            final = self.directory / f"{self.owner}.{self._serial:06d}{SUFFIX}"
            hidden = self.directory / f"{_HIDDEN}{final.name}"
            flags = os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            flags |= os.O_RDWR if self.mapped else os.O_WRONLY | os.O_APPEND
            fd = os.open(hidden, flags, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seg = self._map(fd, final, size) if self.mapped else Segment(fd, final)
                os.rename(hidden, final)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    hidden.unlink()
                raise
        except OSError as exc:
            self._failed(exc)
            return None
        self._current = seg
        return seg

    def _map(self, fd: int, path: Path, size: int) -> Segment:
        # Allocate the blocks first (a copy into a mapped hole of a full disk raises SIGBUS), then
        # map them. Short of room for a full segment, try a small one before giving up.
        capacity = max(self.segment_bytes, size)
        while True:
            try:
                os.posix_fallocate(fd, 0, capacity)
                break
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # cannot allocate here: write()
                    self.mapped = False
                    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
                    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_APPEND)
                    return Segment(fd, path)
                smaller = max(_SMALLEST, size)
                if exc.errno != errno.ENOSPC or capacity <= smaller:
                    raise
                os.ftruncate(fd, 0)
                capacity = smaller
        return Segment(fd, path, mmap.mmap(fd, capacity, _MAP_FLAGS), capacity)

    def _drop(self, seg: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        seg.unmap()
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
            with contextlib.suppress(OSError, ValueError):
                seg.unmap()  # the child's mapping only: the parent's stays
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
