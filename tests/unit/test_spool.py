"""The on-disk spool: order, acknowledgement, recovery after a crash, torn tails and the bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from historian.spool import HEADER, KIND_SAMPLES, Spool, SpoolUnusable
from shopfloor.config.schema import FsyncPolicy, WhenFull


def payload(i: int, size: int = 100) -> bytes:
    return i.to_bytes(4, "little") * (size // 4)


def fill(spool: Spool, start: int, n: int, count: int = 10, size: int = 100) -> None:
    for i in range(start, start + n):
        assert spool.append(KIND_SAMPLES, payload(i, size), count)


def ids(records: list) -> list[int]:
    return [int.from_bytes(r.payload[:4], "little") for r in records]


def test_read_in_order_and_ack_moves_the_cursor(tmp_path: Path) -> None:
    s = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    s.open()
    fill(s, 0, 100)
    assert s.pending_points == 1000
    got = []
    while s.unread_points:
        recs = s.read(95)
        got += ids(recs)
        s.ack(recs)
    assert got == list(range(100))
    assert s.pending_points == 0
    assert len(s.segments) == 1  # delivered segments are deleted
    s.close()


def test_unacked_records_survive_a_restart_and_acked_ones_do_not(tmp_path: Path) -> None:
    s = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    s.open()
    fill(s, 0, 100)
    s.ack(s.read(300))  # 30 records delivered
    s.read(100)  # 10 more handed out but never acknowledged (crash mid-send)
    s.close()
    s2 = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    report = s2.open()
    assert report.points == 700 and report.records == 70 and report.torn_bytes == 0
    recs = s2.read(10_000)
    assert ids(recs) == list(range(30, 100))
    assert all(r.recovered for r in recs)


def test_crash_without_close_keeps_everything_appended(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:  # the child appends and dies without close(): the OS still has every write(2)
        s = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20, fsync=FsyncPolicy.NEVER)
        s.open()
        fill(s, 0, 50)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    s2 = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    assert s2.open().points == 500
    assert ids(s2.read(10_000)) == list(range(50))


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size + 5])
def test_torn_tail_is_truncated_at_last_good_record(tmp_path: Path, cut: int) -> None:
    s = Spool(tmp_path, segment_bytes=1 << 20, max_bytes=4 << 20)
    s.open()
    fill(s, 0, 20)
    seg = s.segments[-1].path
    s.close()
    size = seg.stat().st_size
    record = HEADER.size + 100
    with open(seg, "r+b") as f:  # the last record half-written
        f.truncate(size - record + cut)
    s2 = Spool(tmp_path, segment_bytes=1 << 20, max_bytes=4 << 20)
    report = s2.open()
    assert report.torn_bytes == cut and report.points == 190
    assert ids(s2.read(10_000)) == list(range(19))
    fill(s2, 19, 1)  # appends continue cleanly after the cut
    assert s2.unread_points == 10


def test_corrupted_bytes_are_cut_not_replayed(tmp_path: Path) -> None:
    s = Spool(tmp_path, segment_bytes=1 << 20, max_bytes=4 << 20)
    s.open()
    fill(s, 0, 10)
    seg = s.segments[-1].path
    s.close()
    data = bytearray(seg.read_bytes())
    data[-10] ^= 0xFF  # flip a bit in the last payload
    seg.write_bytes(bytes(data))
    s2 = Spool(tmp_path, segment_bytes=1 << 20, max_bytes=4 << 20)
    report = s2.open()
    assert report.points == 90 and report.torn_bytes == HEADER.size + 100


def test_drop_oldest_counts_exactly_what_it_drops(tmp_path: Path) -> None:
    dropped: list[tuple[int, str]] = []
    s = Spool(tmp_path, segment_bytes=4096, max_bytes=4 * 4096, on_drop=lambda n, r: dropped.append((n, r)))
    s.open()
    fill(s, 0, 400, count=3)
    lost = sum(n for n, _ in dropped)
    assert all(r == "spool_full" for _, r in dropped)
    assert s.size_bytes <= 4 * 4096
    assert lost + s.pending_points == 1200
    remaining = ids(s.read(10**6))
    assert remaining == list(range(400 - len(remaining), 400))  # the newest survive, in order


def test_drop_newest_keeps_the_oldest(tmp_path: Path) -> None:
    dropped: list[int] = []
    s = Spool(
        tmp_path,
        segment_bytes=4096,
        max_bytes=4 * 4096,
        when_full=WhenFull.DROP_NEWEST,
        on_drop=lambda n, r: dropped.append(n),
    )
    s.open()
    accepted = sum(s.append(KIND_SAMPLES, payload(i), 3) for i in range(400))
    assert sum(dropped) == (400 - accepted) * 3
    assert ids(s.read(10**6)) == list(range(accepted))


def test_records_in_flight_are_never_dropped(tmp_path: Path) -> None:
    dropped: list[int] = []
    s = Spool(tmp_path, segment_bytes=4096, max_bytes=3 * 4096, on_drop=lambda n, r: dropped.append(n))
    s.open()
    fill(s, 0, 30)
    inflight = s.read(50)
    fill(s, 30, 300)  # far past the bound while the first five records are on the wire
    s.ack(inflight)
    assert ids(inflight) == [0, 1, 2, 3, 4]
    assert sum(dropped) + s.pending_points + 50 == 3300


def test_segments_are_named_and_cleaned(tmp_path: Path) -> None:
    s = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    s.open()
    fill(s, 0, 200)
    assert len(list(tmp_path.glob("*.seg"))) > 3
    while s.unread_points:
        s.ack(s.read(1000))
    assert len(list(tmp_path.glob("*.seg"))) == 1
    assert os.path.exists(tmp_path / "cursor")


def test_a_second_process_on_the_same_spool_is_refused_and_a_reader_is_not(tmp_path: Path) -> None:
    s = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    s.open()
    fill(s, 0, 7)
    other = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    with pytest.raises(SpoolUnusable) as info:
        other.open()
    message = str(info.value)
    assert f"in use by another Shopfloor process (pid {os.getpid()})" in message
    assert str(tmp_path.resolve()) in message and "\n" not in message
    before = sorted(p.stat().st_size for p in tmp_path.glob("*.seg"))
    status = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    assert status.open(readonly=True).points == 70  # `spool status` beside the running writer
    status.close()
    assert sorted(p.stat().st_size for p in tmp_path.glob("*.seg")) == before  # it changed nothing
    fill(s, 7, 3)  # the writer is unaffected
    s.close()
    again = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    assert again.open().points == 100  # the lock went with the first one's close
    again.close()
