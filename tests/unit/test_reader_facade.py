"""The read-only interface and its synchronous facade, against scripted readers (no servers).

The same facade against real SQLite and influxd is in tests/integration/test_reader.py.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from historian.base import Store
from historian.errors import StoreRejected, StoreUnavailable
from historian.factory import open_reader, open_store
from historian.influx_v1 import InfluxV1Store
from historian.reader import (
    AGG_FNS,
    AggFn,
    HistorianReader,
    ReaderClosedError,
    SeriesFrame,
    SyncReader,
    check_agg,
)
from historian.sqlite_store import SQLiteStore
from shopfloor.config.schema import HistorianConfig
from shopfloor.model import Event, EventKind, Quality, Sample, SeriesKey

READ_METHODS = {"open", "close", "list_series", "latest", "query_raw", "query_agg", "query_events"}


class FakeReader(HistorianReader):
    """Answers from memory; records which thread and loop ran each call; can be told to hang."""

    name = "fake"

    def __init__(self) -> None:
        self.opens = 0
        self.closes = 0
        self.hang = asyncio.Event()  # never set: awaiting it hangs
        self.hanging = False
        self.fail_open: Exception | None = None
        self.threads: set[str] = set()
        self.loops: set[int] = set()

    def _seen(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.loops.add(id(asyncio.get_running_loop()))

    async def open(self) -> None:
        self._seen()
        self.opens += 1
        if self.fail_open is not None:
            raise self.fail_open

    async def close(self) -> None:
        self.closes += 1

    async def list_series(self) -> list[SeriesKey]:
        self._seen()
        if self.hanging:
            await self.hang.wait()
        return [SeriesKey("s/a/l/m", "x")]

    async def latest(self, asset: str | None = None) -> list[Sample]:
        self._seen()
        return [Sample(asset or "s/a/l/m", "x", 1.5, 7, Quality.UNCERTAIN)]

    async def query_raw(
        self, asset: str, signal: str, start_ns: int, end_ns: int, limit: int | None = None
    ) -> SeriesFrame:
        self._seen()
        await asyncio.sleep(0.001)
        ts = np.arange(start_ns, end_ns, dtype=np.int64)[:limit]
        return SeriesFrame(ts, ts.astype(np.float64), np.zeros(len(ts), np.uint8))

    async def query_agg(
        self,
        asset: str,
        signal: str,
        start_ns: int,
        end_ns: int,
        every_ns: int,
        fn: AggFn,
        include_bad: bool = False,
    ) -> SeriesFrame:
        self._seen()
        check_agg(fn, every_ns)
        ts = np.arange(start_ns, end_ns, every_ns, dtype=np.int64)
        return SeriesFrame(ts, np.full(len(ts), float(include_bad)))

    async def query_events(
        self, start_ns: int, end_ns: int, asset: str | None = None, kind: EventKind | None = None
    ) -> list[Event]:
        self._seen()
        return [Event(asset or "s/a/l/m", kind or EventKind.ALARM, start_ns, key="x")]


def test_aggregate_names_are_written_once() -> None:
    assert AGG_FNS == get_args(AggFn) == ("mean", "min", "max", "last", "count")
    with pytest.raises(ValueError, match="mean, min, max, last, count"):
        check_agg("median", 1)
    with pytest.raises(ValueError, match="positive"):
        check_agg("mean", 0)


def test_store_is_the_reader_plus_the_write_path() -> None:
    assert issubclass(Store, HistorianReader)
    reader_abstract = HistorianReader.__abstractmethods__
    assert reader_abstract == READ_METHODS - {"open", "close"}
    assert Store.__abstractmethods__ - reader_abstract == {"encode_samples", "encode_events", "send"}
    # the reader has no write path at all
    assert not any(hasattr(HistorianReader, m) for m in ("send", "write_samples", "write_events"))


def test_facade_has_the_readers_methods_with_the_same_arguments() -> None:
    for name in READ_METHODS - {"open", "close"}:
        sync = inspect.signature(getattr(SyncReader, name))
        reader = inspect.signature(getattr(HistorianReader, name))
        assert list(sync.parameters) == list(reader.parameters), name
        for p in reader.parameters.values():
            assert sync.parameters[p.name].default == p.default, (name, p.name)


def test_facade_returns_what_the_reader_returns_on_the_loop_thread() -> None:
    fake = FakeReader()
    with SyncReader(fake, timeout_s=5) as r:
        assert fake.opens == 1
        assert r.list_series() == [SeriesKey("s/a/l/m", "x")]
        assert r.latest("s/a/l/n") == [Sample("s/a/l/n", "x", 1.5, 7, Quality.UNCERTAIN)]
        frame = r.query_raw("s/a/l/m", "x", 10, 20, limit=3)
        assert frame.ts.tolist() == [10, 11, 12] and frame.quality is not None
        agg = r.query_agg("s/a/l/m", "x", 0, 30, 10, "max", include_bad=True)
        assert agg.ts.tolist() == [0, 10, 20] and agg.value.tolist() == [1.0, 1.0, 1.0]
        assert r.query_events(5, 6, kind=EventKind.GAP)[0].kind == EventKind.GAP
        with pytest.raises(ValueError, match="unknown aggregate"):  # the reader's own error, as is
            r.query_agg("s/a/l/m", "x", 0, 30, 10, "median", False)  # type: ignore[arg-type]
    assert fake.closes == 1
    assert fake.threads == {"historian-reader-fake"} and len(fake.loops) == 1


def test_facade_opens_lazily_once_for_many_threads() -> None:
    fake = FakeReader()
    r = SyncReader(fake, timeout_s=10)
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        try:
            barrier.wait()
            for i in range(25):
                results.append(len(r.query_raw("s/a/l/m", "x", 0, 10 + i)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    r.close()
    assert not errors
    assert sorted(results) == sorted(10 + i for i in range(25) for _ in range(8))
    assert fake.opens == 1 and fake.closes == 1


def test_a_reader_that_does_not_answer_times_out_and_the_facade_stays_usable() -> None:
    fake = FakeReader()
    fake.hanging = True
    r = SyncReader(fake, timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"fake: list_series got no answer within 0\.3 s"):
        r.list_series()
    assert time.monotonic() - t0 < 2
    fake.hanging = False
    assert r.list_series() == [SeriesKey("s/a/l/m", "x")]
    r.close()


def test_open_failure_reaches_the_caller_and_is_retried_on_the_next_call() -> None:
    fake = FakeReader()
    fake.fail_open = StoreUnavailable("ping: connection refused")
    r = SyncReader(fake, timeout_s=5)
    with pytest.raises(StoreUnavailable, match="connection refused"):
        r.list_series()
    fake.fail_open = None
    assert r.list_series() == [SeriesKey("s/a/l/m", "x")]
    assert fake.opens == 2
    r.close()


def test_with_block_opens_eagerly_and_closes_when_open_fails() -> None:
    fake = FakeReader()
    fake.fail_open = StoreUnavailable("ping: connection refused")
    r = SyncReader(fake, timeout_s=5)
    with pytest.raises(StoreUnavailable), r:
        raise AssertionError("the with body must not run")
    assert r.closed and not r._thread.is_alive()


def test_closed_facade_refuses_calls_with_a_clear_message() -> None:
    fake = FakeReader()
    r = SyncReader(fake, timeout_s=5)
    r.list_series()
    r.close()
    r.close()  # idempotent
    assert r.closed and fake.closes == 1
    for call in (r.list_series, r.open, lambda: r.query_events(0, 1)):
        with pytest.raises(ReaderClosedError, match=r"SyncReader \(fake\) is closed"):
            call()
    assert not r._thread.is_alive()


def test_close_cancels_a_call_in_flight() -> None:
    fake = FakeReader()
    fake.hanging = True
    r = SyncReader(fake, timeout_s=10)
    caught: list[BaseException] = []

    def call() -> None:
        try:
            r.list_series()
        except BaseException as exc:
            caught.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    r.close()
    t.join(5)
    assert time.monotonic() - t0 < 3
    assert len(caught) == 1 and isinstance(caught[0], ReaderClosedError)
    assert "closed during the call" in str(caught[0])


def test_calling_the_facade_from_its_own_loop_is_refused_not_a_deadlock() -> None:
    fake = FakeReader()
    r = SyncReader(fake, timeout_s=5)
    seen: list[BaseException] = []

    async def inside() -> None:
        try:
            r.list_series()
        except RuntimeError as exc:
            seen.append(exc)

    asyncio.run_coroutine_threadsafe(inside(), r._loop).result(5)
    r.close()
    assert "own loop thread" in str(seen[0])


def test_open_reader_builds_read_only_stores(tmp_path: Path) -> None:
    cfg = HistorianConfig.model_validate({"url": "sqlite:///h.db"})
    reader = open_reader(cfg, base_dir=tmp_path)
    assert isinstance(reader, SQLiteStore) and not reader.create
    assert reader.path == str(tmp_path / "h.db")
    store = open_store(cfg, base_dir=tmp_path)
    assert isinstance(store, SQLiteStore) and store.create

    v1 = HistorianConfig.model_validate({"url": "influxdb-v1+http://127.0.0.1:1/plant"})
    influx = open_reader(v1)
    assert isinstance(influx, InfluxV1Store) and not influx.create_database
    writer_side = open_store(v1)
    assert isinstance(writer_side, InfluxV1Store) and writer_side.create_database


async def test_read_only_sqlite_reader_creates_nothing_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "h.db"
    reader = SQLiteStore(path, create=False)
    await reader.open()
    with pytest.raises(StoreUnavailable, match="no such database yet"):
        await reader.list_series()
    assert not path.parent.exists()
    with pytest.raises(StoreRejected, match="read-only"):
        await reader.write_events([Event("s/a/l/m", EventKind.GAP, 1)])
    await reader.close()
    assert not path.parent.exists()


def test_sync_reader_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError):
        SyncReader(FakeReader(), timeout_s=0)
