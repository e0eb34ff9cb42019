"""The on-disk spool: an append-only, checksummed log of batches that the writer delivers from.

Every accepted batch is appended here first; a record leaves only after the store acknowledged it.
Segments rotate by size; the total is bounded, with a stated policy when full; a torn tail is cut.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shopfloor.config.schema import FsyncPolicy, WhenFull
from shopfloor.model import now_ns

log = logging.getLogger(__name__)

MAGIC = 0x5346_5350  # "SFSP"
# magic, payload length, crc32 (of everything after it), kind, flags, pad, point count, appended ns
HEADER = struct.Struct("<IIIBBxxIq")
CURSOR = struct.Struct("<QQI")  # segment, offset, crc32 of the first 16 bytes
MAX_PAYLOAD = 1 << 30

KIND_SAMPLES = 1
KIND_EVENTS = 2
FLAG_SPOOLED = 1  # appended while the store was unreachable


class SpoolUnusable(Exception):
    """The spool directory cannot be used (not writable, or in use by another process); the message
    names the directory, the cause and the fix, in one line."""


@dataclass(slots=True)
class Record:
    seq: int
    offset: int
    end: int
    kind: int
    flags: int
    count: int
    appended_ns: int
    payload: bytes
    recovered: bool = False


@dataclass(slots=True)
class Segment:
    seq: int
    path: Path
    size: int = 0
    points: int = 0  # points in all valid records
    acked: int = 0  # points acknowledged (records before the cursor)


@dataclass(slots=True)
class RecoveryReport:
    segments: int = 0
    records: int = 0
    points: int = 0  # pending points found (to be replayed)
    torn_bytes: int = 0  # bytes cut from torn or corrupt tails
    torn_segments: int = 0

    def __str__(self) -> str:
        return (
            f"{self.records} records / {self.points} points pending in {self.segments} segments; "
            f"{self.torn_bytes} torn bytes cut in {self.torn_segments} segments"
        )


@dataclass
class Position:
    seq: int
    offset: int

    def key(self) -> tuple[int, int]:
        return (self.seq, self.offset)


@dataclass
class SpoolStats:
    bytes: int = 0
    segments: int = 0
    pending_points: int = 0
    unread_points: int = 0
    peak_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


class Spool:
    """Append, read ahead, acknowledge.

    ``on_drop(points, reason)`` is called for every point the spool has to give up on.
    Not thread-safe: one event loop owns it.
    """

    def __init__(
        self,
        directory: str | Path,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 8 << 20,
        when_full: WhenFull = WhenFull.DROP_OLDEST,
        fsync: FsyncPolicy = FsyncPolicy.INTERVAL,
        on_drop: Callable[[int, str], None] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.when_full = WhenFull(when_full)
        self.fsync_policy = FsyncPolicy(fsync)
        self.on_drop = on_drop or (lambda n, reason: None)
        self.segments: list[Segment] = []
        self.cursor = Position(0, 0)  # first unacknowledged record
        self.read_pos = Position(0, 0)  # next record to hand out
        self.inflight_points = 0
        self.peak_bytes = 0
        self._recovery_end = (0, 0)
        self._append_fd: int | None = None
        self._read_fds: dict[int, int] = {}
        self._dirty = False
        self._cursor_dirty = False
        self._cursor_fd: int | None = None
        self._disk_error = False
        self._lock_fd: int | None = None
        self.readonly = False
        self.recovery = RecoveryReport()

    # -- life cycle ----------------------------------------------------------------------------
    def open(self, readonly: bool = False) -> RecoveryReport:
        """Lock the directory, scan existing segments, cut torn tails, restore the cursor.

        One process at a time: a second one is refused with :class:`SpoolUnusable` (never two
        writers on one log). ``readonly`` only reads (no lock, nothing cut or written): for
        ``shopfloor spool status`` beside a running writer.
        """
        self.readonly = readonly
        if not readonly:
            self._lock()
        try:
            return self._open()
        except OSError as exc:
            self.close()
            raise SpoolUnusable(self._explain(exc)) from None

    def _explain(self, exc: OSError) -> str:
        cause = exc.strerror or str(exc)
        where = f"spool directory {self.dir.resolve()}"
        if exc.errno in (errno.EACCES, errno.EPERM):
            fix = "give the user running Shopfloor write access to it, or set historian.spool.dir to a directory it owns"
        elif exc.errno == errno.EROFS:
            fix = "set historian.spool.dir to a directory on a writable file system"
        elif exc.errno == errno.ENOSPC:
            fix = "free space on its file system or set historian.spool.dir elsewhere"
        else:
            fix = "check the path, or set historian.spool.dir to a writable directory"
        return f"{where} is not usable ({cause}): {fix}"

    def _lock(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SpoolUnusable(self._explain(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SpoolUnusable(
                f"spool directory {self.dir.resolve()} is in use by another Shopfloor process (pid {holder}): "
                "stop it first, or give this one its own historian.spool.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _open(self) -> RecoveryReport:
        if self.readonly and not self.dir.is_dir():
            self.recovery = RecoveryReport()
            return self.recovery
        self.dir.mkdir(parents=True, exist_ok=True)
        seqs = sorted(int(p.stem) for p in self.dir.glob("*.seg") if p.stem.isdigit())
        cursor = self._load_cursor()
        report = RecoveryReport()
        if cursor is None:
            cursor = Position(seqs[0] if seqs else 1, 0)
        for seq in seqs:
            path = self._path(seq)
            if seq < cursor.seq:
                if not self.readonly:
                    path.unlink(missing_ok=True)  # fully acknowledged before the last stop
                continue
            seg = Segment(seq, path)
            good_end, torn = self._scan(seg, cursor if seq == cursor.seq else None, report)
            if torn and self.readonly:
                report.torn_bytes += torn
                report.torn_segments += 1
            elif torn:
                log.warning("spool %s: cut %d torn bytes at offset %d", path.name, torn, good_end)
                with open(path, "r+b") as f:
                    f.truncate(good_end)
                    os.fsync(f.fileno())
                report.torn_bytes += torn
                report.torn_segments += 1
            seg.size = good_end
            self.segments.append(seg)
        if not self.segments:
            self.segments.append(Segment(cursor.seq, self._path(cursor.seq)))
            if not self.readonly:
                self._path(cursor.seq).touch()
        head = self.segments[0]
        if cursor.seq != head.seq:
            cursor = Position(head.seq, 0)
        cursor.offset = min(cursor.offset, head.size)
        self.cursor = cursor
        self.read_pos = Position(cursor.seq, cursor.offset)
        report.segments = len(self.segments)
        report.points = self.pending_points
        last = self.segments[-1]
        self._recovery_end = (last.seq, last.size)
        self.peak_bytes = self.size_bytes
        self.recovery = report
        if not self.readonly:
            self._append_fd = os.open(last.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._write_cursor()
        return report

    def close(self) -> None:
        if not self.readonly:
            with contextlib.suppress(OSError):
                self.sync()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None
        if self._append_fd is not None:
            os.close(self._append_fd)
            self._append_fd = None
        if self._cursor_fd is not None:
            os.close(self._cursor_fd)
            self._cursor_fd = None
        for fd in self._read_fds.values():
            os.close(fd)
        self._read_fds.clear()

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:016d}.seg"

    def _scan(self, seg: Segment, cursor: Position | None, report: RecoveryReport) -> tuple[int, int]:
        """Validate every record; return (end of the last good record, bytes after it)."""
        data = seg.path.read_bytes()
        off = 0
        while off + HEADER.size <= len(data):
            magic, length, crc, _kind, _flags, count, _ts = HEADER.unpack_from(data, off)
            end = off + HEADER.size + length
            if magic != MAGIC or length > MAX_PAYLOAD or end > len(data):
                break
            if zlib.crc32(memoryview(data)[off + 12 : end]) != crc:
                break
            seg.points += count
            if cursor is not None and end <= cursor.offset:
                seg.acked += count
            else:
                report.records += 1
            off = end
        return off, len(data) - off

    # -- cursor --------------------------------------------------------------------------------
    def _load_cursor(self) -> Position | None:
        try:
            raw = (self.dir / "cursor").read_bytes()
            seq, offset, crc = CURSOR.unpack(raw)
            if zlib.crc32(raw[:16]) != crc:
                log.warning("spool cursor is corrupt; replaying from the oldest segment")
                return None
            return Position(seq, offset)
        except (OSError, struct.error):
            return None

    def _write_cursor(self) -> None:
        """Overwrite the 20-byte cursor in place (pwrite, no rename: this runs on every ack).

        A torn cursor fails its CRC on the next start and the spool replays from its oldest
        segment: duplicates the store absorbs (same series and timestamp), never a loss.
        """
        body = struct.pack("<QQ", self.cursor.seq, self.cursor.offset)
        if self._cursor_fd is None:
            self._cursor_fd = os.open(self.dir / "cursor", os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(self._cursor_fd, body + struct.pack("<I", zlib.crc32(body)), 0)
        if self.fsync_policy == FsyncPolicy.ALWAYS:
            os.fsync(self._cursor_fd)
        self._cursor_dirty = self.fsync_policy == FsyncPolicy.INTERVAL

    # -- accounting ----------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def pending_points(self) -> int:
        return sum(s.points - s.acked for s in self.segments)

    @property
    def unread_points(self) -> int:
        return self.pending_points - self.inflight_points

    def stats(self) -> SpoolStats:
        return SpoolStats(
            bytes=self.size_bytes,
            segments=len(self.segments),
            pending_points=self.pending_points,
            unread_points=self.unread_points,
            peak_bytes=self.peak_bytes,
        )

    # -- append --------------------------------------------------------------------------------
    def append(self, kind: int, payload: bytes, count: int, flags: int = 0) -> bool:
        """Append one record. False if the bound forced this record itself to be dropped."""
        assert self._append_fd is not None, "spool not open"
        ts = now_ns()
        rest = struct.pack("<BBxxIq", kind, flags, count, ts)
        crc = zlib.crc32(payload, zlib.crc32(rest))
        record = struct.pack("<III", MAGIC, len(payload), crc) + rest + payload
        size = len(record)
        if not self._make_room(size):
            self.on_drop(count, "spool_full")
            return False
        active = self.segments[-1]
        if active.size and active.size + size > self.segment_bytes:
            active = self._rotate()
        try:
            written = os.write(self._append_fd, record)
            if written != size:
                raise OSError(28, f"short write ({written} of {size} bytes)")
        except OSError as exc:
            # ENOSPC and friends: cut the partial record so the segment stays readable.
            if not self._disk_error:
                log.error("spool write failed (%s): dropping new data until it succeeds again", exc.strerror)
            self._disk_error = True
            with contextlib.suppress(OSError):
                os.ftruncate(self._append_fd, active.size)
            self.on_drop(count, "disk_error")
            return False
        if self._disk_error:
            log.warning("spool writes succeed again")
            self._disk_error = False
        active.size += size
        active.points += count
        self.peak_bytes = max(self.peak_bytes, self.size_bytes)
        if self.fsync_policy == FsyncPolicy.ALWAYS:
            os.fsync(self._append_fd)
        else:
            self._dirty = True
        return True

    def _rotate(self, sync: bool = True) -> Segment:
        assert self._append_fd is not None
        if sync and self.fsync_policy != FsyncPolicy.NEVER:
            os.fsync(self._append_fd)
        os.close(self._append_fd)
        seg = Segment(self.segments[-1].seq + 1, self._path(self.segments[-1].seq + 1))
        self._append_fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.segments.append(seg)
        return seg

    def _make_room(self, size: int) -> bool:
        while self.size_bytes + size > self.max_bytes:
            if self.when_full == WhenFull.DROP_NEWEST:
                return False
            victim = self._oldest_droppable()
            if victim is None:
                return False
            self._drop_segment(victim)
        return True

    def _oldest_droppable(self) -> Segment | None:
        """The oldest segment holding no record that is being delivered right now."""
        busy = range(self.cursor.seq, self.read_pos.seq + 1) if self.inflight_points else range(0)
        for seg in self.segments:
            if seg.seq not in busy and seg.size:
                return seg
        return None

    def _drop_segment(self, seg: Segment) -> None:
        lost = seg.points - seg.acked
        log.warning("spool full: dropping segment %s with %d undelivered points", seg.path.name, lost)
        if lost:
            self.on_drop(lost, "spool_full")
        idx = self.segments.index(seg)
        is_active = seg is self.segments[-1]
        self._close_read_fd(seg.seq)
        if is_active:
            assert self._append_fd is not None
            os.close(self._append_fd)
            self._append_fd = None
        seg.path.unlink(missing_ok=True)
        if is_active:
            new = Segment(seg.seq + 1, self._path(seg.seq + 1))
            self._append_fd = os.open(new.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.segments.append(new)
        del self.segments[idx]
        head = self.segments[0]
        if self.cursor.seq < head.seq or (self.cursor.seq == seg.seq):
            self.cursor = Position(head.seq, 0)
            self._write_cursor()
        if self.read_pos.key() < self.cursor.key() or self.read_pos.seq == seg.seq:
            self.read_pos = Position(self.cursor.seq, self.cursor.offset)

    # -- read / ack ----------------------------------------------------------------------------
    def _read_fd(self, seq: int) -> int:
        fd = self._read_fds.get(seq)
        if fd is None:
            fd = self._read_fds[seq] = os.open(self._path(seq), os.O_RDONLY)
        return fd

    def _close_read_fd(self, seq: int) -> None:
        fd = self._read_fds.pop(seq, None)
        if fd is not None:
            os.close(fd)

    def _segment(self, seq: int) -> Segment | None:
        for s in self.segments:
            if s.seq == seq:
                return s
        return None

    def peek_appended_ns(self) -> int | None:
        """When the next unread record was appended (None if there is none)."""
        rec = self._read_at(self.read_pos)
        return rec.appended_ns if rec else None

    def _read_at(self, pos: Position) -> Record | None:
        while True:
            seg = self._segment(pos.seq)
            if seg is None or pos.offset >= seg.size:
                nxt = next((s for s in self.segments if s.seq > pos.seq), None)
                if nxt is None:
                    return None
                pos.seq, pos.offset = nxt.seq, 0
                continue
            fd = self._read_fd(seg.seq)
            head = os.pread(fd, HEADER.size, pos.offset)
            magic, length, _crc, kind, flags, count, ts = HEADER.unpack(head)
            if magic != MAGIC:
                raise OSError(f"spool segment {seg.path.name} is corrupt at offset {pos.offset}")
            payload = os.pread(fd, length, pos.offset + HEADER.size)
            end = pos.offset + HEADER.size + length
            recovered = (seg.seq, end) <= self._recovery_end
            return Record(seg.seq, pos.offset, end, kind, flags, count, ts, payload, recovered)

    def read(self, max_points: int) -> list[Record]:
        """Hand out the next unread records of one kind, up to ``max_points`` (at least one record)."""
        out: list[Record] = []
        total = 0
        while True:
            pos = Position(self.read_pos.seq, self.read_pos.offset)
            rec = self._read_at(pos)
            if rec is None or (out and (rec.kind != out[0].kind or total + rec.count > max_points)):
                break
            out.append(rec)
            total += rec.count
            self.read_pos = Position(rec.seq, rec.end)
            if total >= max_points:
                break
        self.inflight_points += total
        return out

    def ack(self, records: list[Record]) -> None:
        """The store has these records (the oldest in flight, in order): move the cursor past them."""
        if not records:
            return
        for rec in records:
            seg = self._segment(rec.seq)
            if seg is not None:
                seg.acked += rec.count
            self.inflight_points -= rec.count
        last = records[-1]
        self.cursor = Position(last.seq, last.end)
        while len(self.segments) > 1 and self.segments[0].seq < self.cursor.seq:
            self._retire(self.segments[0])
        head = self.segments[0]
        if len(self.segments) > 1 and self.cursor.offset >= head.size:
            self._retire(head)
            self.cursor = Position(self.segments[0].seq, 0)
        elif self.inflight_points == 0 and self.cursor.offset >= head.size and head.size:
            self._reset_active(head)
        self._write_cursor()

    def _reset_active(self, seg: Segment) -> None:
        """Everything is delivered and only the active segment is left: start a fresh one.

        A new sequence number (not an in-place truncate) keeps a stale cursor from ever
        covering records appended later, even if the cursor write is lost in a power cut.
        """
        self._rotate(sync=False)
        self._retire(seg)
        self.cursor = Position(self.segments[0].seq, 0)
        self.read_pos = Position(self.segments[0].seq, 0)

    def _retire(self, seg: Segment) -> None:
        self._close_read_fd(seg.seq)
        seg.path.unlink(missing_ok=True)
        self.segments.remove(seg)

    def rewind(self) -> None:
        """Forget what was handed out but not acknowledged; it will be read again."""
        self.read_pos = Position(self.cursor.seq, self.cursor.offset)
        self.inflight_points = 0

    def sync(self) -> None:
        """fsync the active segment and the cursor if anything changed (the 'interval' policy).

        Safe to call from a worker thread: it only fsyncs descriptors.
        """
        if self.fsync_policy == FsyncPolicy.NEVER:
            return
        fd, cursor_fd = self._append_fd, self._cursor_fd
        if self._dirty and fd is not None:
            self._dirty = False
            with contextlib.suppress(OSError):  # closed by a concurrent rotation: it fsynced itself
                os.fsync(fd)
        if self._cursor_dirty and cursor_fd is not None:
            self._cursor_dirty = False
            with contextlib.suppress(OSError):
                os.fsync(cursor_fd)
