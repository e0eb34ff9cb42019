"""The spool's disk fills up: drops are counted exactly, the writer keeps going and recovers.

Mounts a 512 KiB tmpfs for the spool (needs root); the store is SQLite on normal disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from historian.sqlite_store import SQLiteStore
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import HistorianConfig

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def small_disk(tmpfs: Callable[[str], Path]) -> Path:
    return tmpfs("size=512k")


async def test_disk_full_drops_are_counted_and_writing_resumes(small_disk: Path, tmp_path: Path) -> None:
    cfg = HistorianConfig.model_validate(
        {
            "url": f"sqlite:///{tmp_path}/h.db",
            "batch": {"max_points": 1000, "max_age_ms": 10},
            "spool": {"dir": str(small_disk / "spool"), "segment_bytes": 64 << 10, "max_bytes": 64 << 20},
            "health_interval_s": 0,
        }
    )
    store = SQLiteStore(tmp_path / "h.db")
    writer = HistorianWriter(store, cfg)
    await writer.start()
    writer.spool.inflight_points  # noqa: B018 - the spool exists
    # Fill the disk faster than the writer drains: 40,000 points ≈ 840 KB > 512 KiB
    n = 0
    for _ in range(40):
        idx = np.arange(n, n + 1000)
        writer.submit(
            SampleBatch.from_columns([("s/a/l/m", "x")], np.zeros(1000), T0 + idx, idx.astype(float))
        )
        n += 1000
        assert writer.stats().balanced
    full = writer.stats()
    assert full.dropped.get("disk_error", 0) > 0
    assert await writer.flush(30)
    # space is back (delivered segments were deleted): new data is accepted again
    idx = np.arange(n, n + 1000)
    writer.submit(SampleBatch.from_columns([("s/a/l/m", "x")], np.zeros(1000), T0 + idx, idx.astype(float)))
    n += 1000
    assert await writer.flush(30)
    s = writer.stats()
    await writer.stop()
    frame = await store.query_raw("s/a/l/m", "x", 0, 2**62)
    print(
        f"\n[disk full] produced={s.produced} written={s.written} dropped={s.dropped} in store={len(frame)}"
    )
    assert s.balanced and s.pending == 0
    assert len(frame) == s.written == n - s.dropped["disk_error"]  # dropped = missing, exactly
    assert frame.value[-1] == n - 1  # the batch after recovery landed
    await asyncio.sleep(0)
