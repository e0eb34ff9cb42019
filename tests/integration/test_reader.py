"""The read-only interface and its synchronous facade against the embedded SQLite store and influxd.

The facade must return exactly what the async reader returns, from many plain threads at once, and
must fail within its timeout (never hang) when the store is gone or does not answer.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from historian.errors import StoreUnavailable
from historian.factory import open_reader, open_store
from historian.reader import AGG_FNS, HistorianReader, ReaderClosedError, SyncReader
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import HistorianConfig
from shopfloor.model import Event, EventKind
from shopfloor.testing.servers import InfluxDB1Server, free_port

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000
MILL = "qijiang/copper/hot-rolling/mill-1"
CNC = "qijiang/machining/gearbox-line/cnc-1"
KEYS = [(MILL, "roll_force"), (MILL, "speed"), (CNC, "spindle_load")]


@pytest.fixture(autouse=True)
def _no_url_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOPFLOOR_HISTORIAN_URL", raising=False)


def plant_data() -> tuple[SampleBatch, list[Event]]:
    rng = np.random.default_rng(7)
    n = 6000
    ts = T0 + np.sort(rng.choice(1800 * SEC // 1_000_000, n, replace=False)) * 1_000_000
    value = np.round(rng.normal(500, 80, n), 3)
    value[::97] = np.nan  # some points without a reading
    quality = rng.choice([0, 0, 0, 1, 2], n).astype(np.uint8)
    batch = SampleBatch.from_columns(KEYS, rng.integers(0, 3, n), ts, value, quality)
    events = [
        Event(MILL, EventKind.STATE_CHANGE, T0 + 5 * SEC, "DOWN", "bearing", 4.0, {"r": "b"}, key="state"),
        Event(MILL, EventKind.ALARM, T0 + 9 * SEC, "HI", "hot", 905.5, key="roll_force"),
        Event(MILL, EventKind.ALARM, T0 + 9 * SEC, "HI", "hot", 910.0, key="speed"),
        Event(CNC, EventKind.PART_PRODUCED, T0 + 11 * SEC, "", "", None, {"part": "shaft-17"}),
    ]
    return batch, events


@pytest.fixture(params=["sqlite", "influxdb-v1"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> HistorianConfig:
    """A historian config whose store already holds plant_data()."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/h.db"
    else:
        server: InfluxDB1Server = request.getfixturevalue("influxd")
        url = f"influxdb-v1+{server.base_url}/{request.getfixturevalue('influx_db')}"
    cfg = HistorianConfig.model_validate({"url": url, "spool": {"dir": str(tmp_path / "spool")}})

    async def fill() -> None:
        store = open_store(cfg)
        await store.open()
        batch, events = plant_data()
        await store.write_samples(batch)
        await store.write_events(events)
        await store.close()

    asyncio.run(fill())
    return cfg


# Every read method with the arguments to call it with: (method, args).
CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("list_series", ()),
    ("latest", ()),
    ("latest", (CNC,)),
    ("query_raw", (MILL, "roll_force", T0, T0 + 3600 * SEC)),
    ("query_raw", (MILL, "speed", T0 + 60 * SEC, T0 + 600 * SEC, 50)),
    *[("query_agg", (CNC, "spindle_load", T0 + 7 * SEC, T0 + 1800 * SEC, 60 * SEC, fn)) for fn in AGG_FNS],
    ("query_agg", (MILL, "speed", T0, T0 + 1800 * SEC, 300 * SEC, "mean", True)),
    ("query_events", (T0, T0 + 60 * SEC)),
    ("query_events", (T0, T0 + 60 * SEC, MILL, EventKind.ALARM)),
]


def reference(reader: HistorianReader) -> list[Any]:
    """What the async reader answers to CALLS, in its own event loop."""

    async def run() -> list[Any]:
        await reader.open()
        try:
            return [await getattr(reader, name)(*args) for name, args in CALLS]
        finally:
            await reader.close()

    return asyncio.run(run())


def same(a: Any, b: Any) -> bool:
    """Equality that compares frames array by array (NaN equal to NaN)."""
    if hasattr(a, "ts") and hasattr(b, "ts"):
        arrays = [(a.ts, b.ts), (a.value, b.value)]
        if (a.quality is None) != (b.quality is None):
            return False
        if a.quality is not None:
            arrays.append((a.quality, b.quality))
        return all(x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True) for x, y in arrays)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_facade_reads_what_the_async_reader_reads(config: HistorianConfig) -> None:
    expected = reference(open_reader(config))
    batch, events = plant_data()
    # the data really is there (so the comparison is not between two empty answers)
    assert expected[0] == sorted(batch.keys)
    assert len(expected[3]) == int((batch.series == 0).sum())
    assert expected[-2] == events and expected[-1] == events[1:3]
    with SyncReader(open_reader(config), timeout_s=30) as reader:
        for (name, args), want in zip(CALLS, expected, strict=True):
            got = getattr(reader, name)(*args)
            assert same(got, want), name


def test_facade_serves_many_plain_threads_at_once(config: HistorianConfig) -> None:
    expected = reference(open_reader(config))
    reader = SyncReader(open_reader(config), timeout_s=60)
    n_threads, rounds = 8, 4
    barrier = threading.Barrier(n_threads)
    failures: list[str] = []
    done = [0] * n_threads

    def work(k: int) -> None:
        try:
            barrier.wait(10)
            for r in range(rounds):
                for j in range(len(CALLS)):
                    i = (j + k + r) % len(CALLS)  # every thread in a different order
                    name, args = CALLS[i]
                    if not same(getattr(reader, name)(*args), expected[i]):
                        failures.append(f"thread {k}: {name}{args} differs")
                    done[k] += 1
        except BaseException as exc:
            failures.append(f"thread {k}: {exc!r}")

    threads = [threading.Thread(target=work, args=(k,), name=f"dash-worker-{k}") for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    reader.close()
    assert not failures, failures[:5]
    assert done == [rounds * len(CALLS)] * n_threads
    with pytest.raises(ReaderClosedError):
        reader.list_series()


def test_reader_of_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    cfg = HistorianConfig.model_validate({"url": f"sqlite:///{tmp_path}/not-yet/h.db"})
    with (
        SyncReader(open_reader(cfg), timeout_s=5) as reader,
        pytest.raises(StoreUnavailable, match="no such database yet"),
    ):
        reader.list_series()
    assert not (tmp_path / "not-yet").exists()


def test_reader_does_not_create_an_influx_database(influxd: InfluxDB1Server) -> None:
    cfg = HistorianConfig.model_validate({"url": f"influxdb-v1+{influxd.base_url}/never_created"})
    with (
        SyncReader(open_reader(cfg), timeout_s=10) as reader,
        pytest.raises(StoreUnavailable, match="database not found"),
    ):
        reader.list_series()
    assert b"never_created" not in influxd.query("SHOW DATABASES")


def test_reader_at_a_dead_influx_port_raises_within_the_timeout() -> None:
    cfg = HistorianConfig.model_validate({"url": f"influxdb-v1+http://127.0.0.1:{free_port()}/plant"})
    reader = SyncReader(open_reader(cfg), timeout_s=5)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"Connection refused|NewConnectionError"):
        reader.query_raw(MILL, "speed", T0, T0 + SEC)
    with pytest.raises(StoreUnavailable):
        reader.open()
    assert time.monotonic() - t0 < 5
    reader.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join(5)
    for c in accepted:
        c.close()
    sock.close()


def test_reader_at_a_server_that_never_answers_times_out_instead_of_hanging(silent_port: int) -> None:
    # the store's own HTTP timeout is long; the facade's is what the caller waits at most
    cfg = HistorianConfig.model_validate(
        {"url": f"influxdb-v1+http://127.0.0.1:{silent_port}/plant", "timeout_s": 60}
    )
    reader = SyncReader(open_reader(cfg), timeout_s=1.0)
    for call in (reader.list_series, lambda: reader.query_events(T0, T0 + SEC)):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"influxdb-v1: \w+ got no answer within 1 s"):
            call()
        assert 0.9 < time.monotonic() - t0 < 3
    t0 = time.monotonic()
    reader.close(timeout_s=3)
    assert time.monotonic() - t0 < 4
    with pytest.raises(ReaderClosedError):
        reader.latest()
