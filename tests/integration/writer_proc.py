"""A writer process for crash tests: submits sequence-numbered samples and reports progress.

Usage: python writer_proc.py URL SPOOL_DIR — prints "submitted N" after every submit() returns.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

from historian.factory import open_store
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import HistorianConfig

T0 = 1_700_000_000_000_000_000


async def main(url: str, spool: str) -> None:
    cfg = HistorianConfig.model_validate(
        {
            "url": url,
            "timeout_s": 2,
            "batch": {"max_points": 1000, "max_age_ms": 50},
            "spool": {"dir": spool, "segment_bytes": 128 << 10, "max_bytes": 256 << 20},
            "retry": {"initial_ms": 50, "max_ms": 300},
            "health_interval_s": 0,
        }
    )
    writer = HistorianWriter(open_store(cfg), cfg)
    await writer.start()
    n = 0
    while True:
        idx = np.arange(n, n + 50)
        writer.submit(
            SampleBatch.from_columns([("s/a/l/m", "x")], np.zeros(50), T0 + idx * 1000, idx.astype(float))
        )
        n += 50
        print(f"submitted {n}", flush=True)
        await asyncio.sleep(0.005)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
