"""Benchmark: what the live-stream bus costs on the hot path.

Publishes the default plant's poll-sized batches (229 samples) through ``Bus.publish`` with the
historian writer attached (lossless, inline) and two queued subscribers draining, beside the bare
baseline measured in the same run: the same batches handed to ``HistorianWriter.submit`` directly.
Both append to the writer's real spool (on /dev/shm where there is one, so that disk noise does not
drown the figure); nothing is sent to the store while measuring.
Run: .venv/bin/python benchmarks/bus.py [--batches N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from historian.sqlite_store import SQLiteStore
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.bus import Bus
from shopfloor.config.schema import HistorianConfig
from shopfloor.model import Event

SIGNALS = 229
# The spool on a RAM disk where there is one: the figure is the bus, not the disk's mood.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


class Counting:
    def __init__(self) -> None:
        self.samples = 0

    async def on_batch(self, batch: SampleBatch) -> None:
        self.samples += len(batch)

    async def on_events(self, events: Sequence[Event]) -> None:
        pass


def batches(n: int) -> list[SampleBatch]:
    keys = [(f"s/a/l/m{i // 20}", f"x{i % 20}") for i in range(SIGNALS)]
    t0 = 1_700_000_000_000_000_000
    rng = np.random.default_rng(1)
    return [
        SampleBatch.from_columns(
            keys, np.arange(SIGNALS), np.full(SIGNALS, t0 + k * 10**8), rng.normal(size=SIGNALS)
        )
        for k in range(n)
    ]


def quiet() -> None:
    logging.getLogger("historian.writer").setLevel(
        logging.ERROR
    )  # "stopped with N points spooled": by design here


async def writer_in(tmp: Path) -> HistorianWriter:
    cfg = HistorianConfig.model_validate(
        {
            "url": f"sqlite:///{tmp}/h.db",
            "spool": {
                "dir": str(tmp / "spool"),
                "max_bytes": 4 << 30,
                "segment_bytes": 64 << 20,
                "fsync": "never",
            },
            "batch": {"max_points": 1_000_000, "max_age_ms": 600_000},  # nothing is sent while we measure
            "health_interval_s": 0,
        }
    )
    w = HistorianWriter(SQLiteStore(tmp / "h.db"), cfg)
    await w.start()
    return w


async def run(n: int) -> None:
    quiet()
    data = batches(n)
    samples = n * SIGNALS
    best_bare = best_bus = best_inline = 0.0
    for _ in range(5):
        with tempfile.TemporaryDirectory(dir=SCRATCH) as d:
            w = await writer_in(Path(d))
            bus = Bus()
            bus.attach("historian", w.submit, w.submit_events)
            await bus.start()
            t = time.perf_counter()
            for k, b in enumerate(data):
                bus.publish(b)
                if k % 50 == 0:
                    await asyncio.sleep(0)
            best_inline = max(best_inline, samples / (time.perf_counter() - t))
            await bus.stop()
            await w.stop(timeout_s=0)
        with tempfile.TemporaryDirectory(dir=SCRATCH) as d:
            w = await writer_in(Path(d))
            t = time.perf_counter()
            for k, b in enumerate(data):
                w.submit(b)
                if k % 50 == 0:
                    await asyncio.sleep(0)  # the loop turns as often as in the bus runs
            best_bare = max(best_bare, samples / (time.perf_counter() - t))
            await w.stop(timeout_s=0)
        with tempfile.TemporaryDirectory(dir=SCRATCH) as d:
            w = await writer_in(Path(d))
            bus = Bus()
            bus.attach("historian", w.submit, w.submit_events)
            subs = [Counting(), Counting()]
            for i, s in enumerate(subs):
                bus.subscribe(f"sub{i}", s, max_points=samples)
            await bus.start()
            t = time.perf_counter()
            for k, b in enumerate(data):
                bus.publish(b)
                if k % 50 == 0:
                    await asyncio.sleep(0)  # the queued subscribers get their turn, as in a real loop
            await bus.stop(timeout_s=60)
            elapsed = time.perf_counter() - t
            assert all(s.samples == samples for s in subs) and w.stats().produced == samples
            best_bus = max(best_bus, samples / elapsed)
            await w.stop(timeout_s=0)
    print(f"{n:,} batches x {SIGNALS} samples, best of 5")
    print(
        f"bus publish (writer only, as shopfloor acquire) vs writer.submit  ours {best_inline:>12,.0f} samples/s   "
        f"baseline {best_bare:>12,.0f} samples/s   ratio {best_inline / best_bare:5.2f}x"
    )
    print(
        f"bus publish (writer + 2 queued subscribers) vs writer.submit  ours {best_bus:>12,.0f} samples/s   "
        f"baseline {best_bare:>12,.0f} samples/s   ratio {best_bus / best_bare:5.2f}x"
    )


def overhead(n: int = 200_000) -> None:
    """The bus alone: publish with one inline no-op subscriber vs calling that no-op directly."""
    b = batches(1)[0]

    def noop(_: object) -> None:
        return None

    bus = Bus()
    bus.attach("noop", noop, noop)
    best_direct = best_bus = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            noop(b)
        best_direct = min(best_direct, (time.perf_counter() - t) / n)
        t = time.perf_counter()
        for _ in range(n):
            bus.publish(b)
        best_bus = min(best_bus, (time.perf_counter() - t) / n)
    print(
        f"bus publish cost per batch (inline no-op) vs a direct call  ours {best_bus * 1e6:8.2f} us/batch   "
        f"baseline {best_direct * 1e6:8.2f} us/batch   ratio {best_direct / best_bus:5.2f}x "
        f"(+{(best_bus - best_direct) * 1e6:.2f} us per batch)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=5000)
    asyncio.run(run(ap.parse_args().batches))
    overhead()


if __name__ == "__main__":
    main()
