"""Every backend stores what it is given and computes aggregates exactly as numpy does.

Runs against the embedded SQLite store and a real influxd (Debian's InfluxDB 1.6).
"""

from __future__ import annotations

import numpy as np
import pytest

from historian.base import Store
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Quality, SeriesKey

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000


def random_batch(rng: np.random.Generator, n: int) -> SampleBatch:
    keys = [
        ("qijiang/copper/hot-rolling/mill-1", "roll_force"),
        ("qijiang/copper/hot-rolling/mill-1", "speed"),
        ("qijiang/machining/gearbox-line/cnc-1", "spindle_load"),
    ]
    ts = T0 + np.sort(rng.choice(3600 * SEC // 1_000_000, n, replace=False)) * 1_000_000  # unique ms
    value = np.round(rng.normal(1000, 250, n), 3)
    quality = rng.choice([0, 0, 0, 0, 1, 2], n).astype(np.uint8)
    return SampleBatch.from_columns(keys, rng.integers(0, 3, n), ts, value, quality)


async def test_raw_round_trip_latest_and_series(store: Store) -> None:
    batch = random_batch(np.random.default_rng(1), 20_000)
    await store.write_samples(batch)
    for i, key in enumerate(batch.keys):
        rows = batch.series == i
        frame = await store.query_raw(key.asset, key.signal, T0, T0 + 7200 * SEC)
        assert np.array_equal(frame.ts, batch.ts[rows])
        assert np.array_equal(frame.value, batch.value[rows])
        assert np.array_equal(frame.quality, batch.quality[rows])
    assert await store.list_series() == sorted(batch.keys)
    latest = {(s.asset, s.signal): s for s in await store.latest()}
    for i, key in enumerate(batch.keys):
        last = np.flatnonzero(batch.series == i)[-1]
        s = latest[key]
        assert (s.ts_ns, s.value, s.quality) == (
            batch.ts[last],
            batch.value[last],
            Quality(batch.quality[last]),
        )
    only = await store.latest("qijiang/machining/gearbox-line/cnc-1")
    assert [s.signal for s in only] == ["spindle_load"]


@pytest.mark.parametrize("fn", ["mean", "min", "max", "last", "count"])
async def test_aggregates_equal_numpy(store: Store, fn: str) -> None:
    rng = np.random.default_rng(2)
    batch = random_batch(rng, 30_000)
    await store.write_samples(batch)
    every = 60 * SEC
    start, end = T0 + 17 * SEC, T0 + 3000 * SEC  # an unaligned start, like a user's time picker
    key = batch.keys[0]
    rows = (batch.series == 0) & (batch.quality < 2) & (batch.ts >= start) & (batch.ts < end)
    ts, value = batch.ts[rows], batch.value[rows]
    bucket = ts - ts % every
    expect_ts = np.unique(bucket)
    reducers = {"mean": np.mean, "min": np.min, "max": np.max, "last": lambda v: v[-1], "count": len}
    expect = np.array([reducers[fn](value[bucket == b]) for b in expect_ts], dtype=float)
    frame = await store.query_agg(key.asset, key.signal, start, end, every, fn)  # type: ignore[arg-type]
    assert np.array_equal(frame.ts, expect_ts)
    np.testing.assert_allclose(frame.value, expect, rtol=1e-12)
    with_bad = await store.query_agg(key.asset, key.signal, start, end, every, "count", include_bad=True)
    assert with_bad.value.sum() == ((batch.series == 0) & (batch.ts >= start) & (batch.ts < end)).sum()


async def test_latest_reports_a_newest_bad_sample_not_an_older_good_one(store: Store) -> None:
    batch = SampleBatch.from_columns([("s/a/l/m", "t")], [0, 0], [T0, T0 + 5], [42.0, np.nan], [0, 2])
    await store.write_samples(batch)
    (s,) = await store.latest("s/a/l/m")
    assert s.ts_ns == T0 + 5 and s.quality == Quality.BAD and np.isnan(s.value)


async def test_nan_values_keep_their_bad_quality(store: Store) -> None:
    batch = SampleBatch.from_columns(
        [("s/a/l/m", "t")], [0, 0, 0], [T0, T0 + 1, T0 + 2], [1.0, np.nan, 3.0], [0, 2, 0]
    )
    await store.write_samples(batch)
    frame = await store.query_raw("s/a/l/m", "t", T0, T0 + 10)
    assert frame.ts.tolist() == [T0, T0 + 1, T0 + 2]
    assert np.isnan(frame.value[1]) and frame.quality.tolist() == [0, 2, 0]
    mean = await store.query_agg("s/a/l/m", "t", T0, T0 + 10, SEC, "mean")
    assert mean.value.tolist() == [2.0]


async def test_events_round_trip(store: Store) -> None:
    events = [
        Event(
            "s/a/l/m1", EventKind.STATE_CHANGE, T0 + 1, "DOWN", "bearing failure", 4.0, {"reason": "bearing"}
        ),
        Event("s/a/l/m2", EventKind.ALARM, T0 + 2, "HI_TEMP", 'furnace "zone 2" high', 905.5),
        Event("s/a/l/m1", EventKind.PART_PRODUCED, T0 + 3, "", "", None, {"part": "shaft-17"}),
    ]
    await store.write_events(events)
    assert await store.query_events(T0, T0 + 10) == events
    assert await store.query_events(T0, T0 + 10, asset="s/a/l/m1") == [events[0], events[2]]
    assert await store.query_events(T0, T0 + 10, kind=EventKind.ALARM) == [events[1]]


async def test_rewriting_the_same_points_does_not_duplicate(store: Store) -> None:
    batch = random_batch(np.random.default_rng(3), 1000)
    await store.write_samples(batch)
    await store.write_samples(batch)
    total = 0
    for key in batch.keys:
        total += len(await store.query_raw(key.asset, key.signal, T0, T0 + 7200 * SEC))
    assert total == 1000
    assert SeriesKey(*batch.keys[0]) in await store.list_series()
