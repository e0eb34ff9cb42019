"""Faults against a real influxd: killed mid-stream, field type conflicts, nothing lost or doubled.

Figures (produced, spooled, replayed, spool peak, drain time) are printed, never asserted on time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from historian.influx_v1 import InfluxV1Store
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.historian_url import parse_url
from shopfloor.config.schema import HistorianConfig
from shopfloor.testing.servers import InfluxDB1Server, http

T0 = 1_700_000_000_000_000_000
KEYS = [
    ("qijiang/copper/hot-rolling/mill-1", "roll_force"),
    ("qijiang/machining/gearbox-line/cnc-1", "spindle_load"),
]


def writer_config(tmp_path: Path, url: str) -> HistorianConfig:
    return HistorianConfig.model_validate(
        {
            "url": url,
            "timeout_s": 2,
            "batch": {"max_points": 2000, "max_age_ms": 50},
            "spool": {"dir": str(tmp_path / "spool"), "segment_bytes": 256 << 10, "max_bytes": 256 << 20},
            "retry": {"initial_ms": 50, "max_ms": 500},
            "health_interval_s": 0,
        }
    )


async def produce(
    writer: HistorianWriter, counter: list[int], stop: asyncio.Event, per_tick: int = 100
) -> float:
    """Submit sequence-numbered samples every 10 ms until stopped; returns the slowest submit() in s."""
    worst = 0.0
    while not stop.is_set():
        n0 = counter[0]
        idx = np.arange(n0, n0 + per_tick)
        batch = SampleBatch.from_columns(KEYS, idx % 2, T0 + idx * 1_000_000, idx.astype(float))
        t = time.perf_counter()
        writer.submit(batch)
        worst = max(worst, time.perf_counter() - t)
        counter[0] += per_tick
        await asyncio.sleep(0.01)
    return worst


async def read_all(store: InfluxV1Store) -> np.ndarray:
    values = []
    for asset, signal in KEYS:
        f = await store.query_raw(asset, signal, T0, T0 + 10**15)
        assert np.all(np.diff(f.ts) > 0)  # in time order, no duplicate timestamps
        values.append(f.value)
    await store.close()
    return np.sort(np.concatenate(values))


async def test_influxd_killed_mid_stream_loses_nothing_and_duplicates_nothing(
    influxd_private: InfluxDB1Server, tmp_path: Path
) -> None:
    server = influxd_private
    url = f"influxdb-v1+{server.base_url}/plant"
    store = InfluxV1Store(parse_url(url), timeout_s=2)
    writer = HistorianWriter(store, writer_config(tmp_path, url))
    await writer.start()
    counter = [0]
    stop = asyncio.Event()
    producer = asyncio.create_task(produce(writer, counter, stop))

    await asyncio.sleep(1.0)
    before_kill = counter[0]
    server.kill()  # SIGKILL: no clean shutdown
    outage_start = counter[0]
    await asyncio.sleep(4.0)
    during = writer.stats()
    server.start()
    outage_end = counter[0]
    await asyncio.sleep(1.0)
    stop.set()
    worst_submit = await producer
    t = time.perf_counter()
    assert await writer.flush(60)
    drain = time.perf_counter() - t
    stats = writer.stats()
    await writer.stop()

    values = await read_all(InfluxV1Store(parse_url(url)))
    produced = counter[0]
    print(
        f"\n[outage] produced={produced} in store={len(values)} outage points={outage_end - outage_start} "
        f"spooled={stats.spooled} replayed={stats.replayed} retries={stats.retries} "
        f"spool peak={stats.spool_peak_bytes} B drain={drain:.2f}s worst submit()={worst_submit * 1e3:.2f} ms"
    )
    assert before_kill > 0 and outage_end - outage_start > 0
    assert during.state == "outage" and during.spooled > 0
    assert len(values) == produced  # exactly once ...
    assert np.array_equal(values, np.arange(produced, dtype=float))  # ... every one of them
    assert stats.written == produced and stats.pending == 0 and stats.balanced
    assert stats.replayed >= stats.spooled > 0


async def test_type_conflict_is_quarantined_while_batch_mates_land(
    influxd: InfluxDB1Server, influx_db: str, tmp_path: Path
) -> None:
    # Another tool already wrote this measurement's "value" field as an integer (same shard).
    line = f"s/a/l/legacy,signal=x value=1i {T0 - 1}\n".encode()
    status, body = http("POST", f"{influxd.base_url}/write?db={influx_db}", line)
    assert status == 204, body
    url = f"influxdb-v1+{influxd.base_url}/{influx_db}"
    store = InfluxV1Store(parse_url(url))
    writer = HistorianWriter(store, writer_config(tmp_path, url))
    await writer.start()
    n = 1000
    idx = np.arange(n)
    series = (idx % 100 == 7).astype(np.uint32)  # 10 points go to the conflicting measurement
    keys = [("s/a/l/good", "x"), ("s/a/l/legacy", "x")]
    writer.submit(SampleBatch.from_columns(keys, series, T0 + idx, idx.astype(float)))
    assert await writer.flush(30)
    stats = writer.stats()
    print(f"\n[poison] quarantined={stats.quarantined} written={stats.written} extra requests={stats.splits}")
    assert stats.quarantined == 10 and stats.written == 990 and stats.balanced
    good = await store.query_raw("s/a/l/good", "x", T0, 2**62)
    assert good.value.tolist() == [float(i) for i in range(n) if i % 100 != 7]
    entries = writer.quarantine.entries()
    assert sorted(e.sample.value for e in entries) == [float(i) for i in range(7, n, 100)]
    assert all("conflict" in e.reason for e in entries)
    exported = tmp_path / "quarantine.json"
    assert writer.quarantine.export(exported) == 10
    await writer.stop()


async def test_the_writer_resumes_when_influxd_answers_again_not_when_its_backoff_ends(
    influxd_private: InfluxDB1Server, tmp_path: Path
) -> None:
    """The backoff is 20-40 s from the first failure on; influxd is back after ~2 s. Probing its
    /ping every 200 ms, the writer delivers within a few seconds of it answering, inside that backoff."""
    server = influxd_private
    url = f"influxdb-v1+{server.base_url}/plant"
    cfg = HistorianConfig.model_validate(
        {
            "url": url,
            "timeout_s": 2,
            "batch": {"max_points": 2000, "max_age_ms": 20},
            "spool": {"dir": str(tmp_path / "spool")},
            "retry": {"initial_ms": 40_000, "max_ms": 60_000, "probe_interval_ms": 200},
            "health_interval_s": 0,
        }
    )
    writer = HistorianWriter(InfluxV1Store(parse_url(url), timeout_s=2), cfg)
    await writer.start()
    writer.submit(SampleBatch.from_columns(KEYS[:1], [0], [T0], [1.0]))
    assert await writer.flush(20)
    server.kill()
    writer.submit(SampleBatch.from_columns(KEYS[:1], [0, 0], [T0 + 1, T0 + 2], [2.0, 3.0]))
    for _ in range(200):  # until it has noticed the outage and is waiting out its (long) backoff
        if writer.stats().state == "outage":
            break
        await asyncio.sleep(0.05)
    assert writer.stats().state == "outage"
    await asyncio.sleep(2.0)
    server.start()
    back = time.monotonic()
    delivered = await writer.flush(15)  # well inside the 20 s the backoff waits at the least
    resumed_after = time.monotonic() - back
    s = writer.stats()
    await writer.stop()
    print(f"\n[probe] influxd back; writer delivered {resumed_after:.2f} s later (backoff was >= 20 s)")
    assert delivered and s.written == 3 and s.retries == 1 and s.balanced
    assert (await read_all(InfluxV1Store(parse_url(url)))).tolist() == [1.0, 2.0, 3.0]


async def test_a_store_that_accepts_and_never_answers_is_an_outage_not_a_hang() -> None:
    """A hung influxd (its socket accepts, nothing answers): the write fails after the store's own
    timeout as unreachable, so the writer spools and probes instead of waiting for ever."""
    import socket

    import pytest

    from historian.errors import StoreUnavailable

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)
    try:
        store = InfluxV1Store(
            parse_url(f"influxdb-v1+http://127.0.0.1:{hang.getsockname()[1]}/plant"), timeout_s=1
        )
        with pytest.raises(StoreUnavailable) as info:
            await asyncio.wait_for(
                store.send(b"m,signal=x value=1 1\n"), 20
            )  # 20 s: only a bound on the test
        assert info.value.unreachable
        assert await asyncio.wait_for(store.ping(), 20) is False
        await store.close()
    finally:
        hang.close()
