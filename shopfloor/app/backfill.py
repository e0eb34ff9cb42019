"""Back-filling a store with simulated history: the plant model stepped offline, written in batches.

Used by the analytics tests and the demo's first start, so trends and models have weeks behind them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from historian.base import Store
from plant_simulator.codes import Status
from plant_simulator.offline import kept_steps
from plant_simulator.plant import Plant
from shopfloor.batch import SampleBatch
from shopfloor.model import Quality, SeriesKey

#: Simulator status -> sample quality (uncertain statuses stay usable, a failed sensor is bad).
QUALITY = {
    int(Status.GOOD): Quality.GOOD,
    int(Status.UNCERTAIN_LAST_USABLE): Quality.UNCERTAIN,
    int(Status.UNCERTAIN_NOT_ACCURATE): Quality.UNCERTAIN,
    int(Status.BAD_SENSOR_FAILURE): Quality.BAD,
}


def block_batch(plant: Plant, k: int, every: int) -> SampleBatch:
    """Every asset's kept steps of block ``k`` as one batch."""
    blk = plant.block(k)
    idx = kept_steps(blk.t0, blk.n, every)
    ts = blk.ts_ns()[idx]
    keys: list[SeriesKey] = []
    series, stamps, values, quality = [], [], [], []
    qmap = np.zeros(256, np.uint8)
    for s, q in QUALITY.items():
        qmap[s] = q
    for path in plant.assets:
        v = blk.values[path][:, idx]
        st = blk.status[path][:, idx]
        for i, spec in enumerate(plant.signals(path)):
            series.append(np.full(len(idx), len(keys), np.uint32))
            keys.append(SeriesKey(path, spec.name))
            stamps.append(ts)
            values.append(v[i])
            quality.append(qmap[st[i]])
    return SampleBatch(
        tuple(keys),
        np.concatenate(series),
        np.concatenate(stamps),
        np.concatenate(values),
        np.concatenate(quality),
    )


async def backfill(
    store: Store,
    plant: Plant,
    n_blocks: int,
    every: int = 60,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write ``n_blocks`` simulated hours from the plant's next block on; returns the samples written."""
    written = 0
    first = plant.next_block
    for k in range(first, first + n_blocks):
        batch = block_batch(plant, k, every)
        await store.write_samples(batch)
        written += len(batch)
        if progress is not None:
            progress(k - first + 1, n_blocks)
    return written


def text_progress(done: int, total: int) -> None:
    if done == total or done % 24 == 0:
        sys.stderr.write(f"\rback-filling: {done}/{total} simulated hours")
        if done == total:
            sys.stderr.write("\n")
