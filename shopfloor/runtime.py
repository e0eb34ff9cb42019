"""The runtime that wires subsystems together in one process: today the demo pipeline.

``run_demo`` feeds the historian writer from the virtual plant model and prints its counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np

from historian.factory import open_store
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import PlantConfig
from shopfloor.model import SignalType, now_ns

log = logging.getLogger(__name__)

Source = Callable[[int, int], SampleBatch]  # (start_ns, end_ns) -> samples in [start, end)


def synthetic_source(cfg: PlantConfig, step_ns: int = 1_000_000_000, seed: int = 0) -> Source:
    """Smooth, noisy values inside each signal's range, for plants the simulator does not model."""
    keys = [(a.path, s.name) for a in cfg.assets for s in a.signals]
    sigs = [s for a in cfg.assets for s in a.signals]
    lo = np.array([s.range[0] if s.range else 0.0 for s in sigs])
    hi = np.array([s.range[1] if s.range else 100.0 for s in sigs])
    is_state = np.array([s.type in (SignalType.STATE, SignalType.BOOL) for s in sigs])
    rng = np.random.default_rng(seed)
    period = rng.uniform(600, 7200, len(sigs)) * 1e9
    phase = rng.uniform(0, 2 * np.pi, len(sigs))

    def produce(start_ns: int, end_ns: int) -> SampleBatch:
        ts = np.arange(start_ns - start_ns % step_ns + step_ns, end_ns, step_ns, dtype=np.int64)
        if not len(ts) or not keys:
            return SampleBatch.empty()
        wave = np.sin(2 * np.pi * ts[:, None] / period[None, :] + phase[None, :])
        value = lo + (hi - lo) * (0.5 + 0.35 * wave + 0.03 * rng.standard_normal(wave.shape))
        value = np.where(is_state[None, :], (wave > -0.8).astype(float), np.round(value, 3))
        n_t, n_s = value.shape
        return SampleBatch.from_columns(
            keys,
            np.tile(np.arange(n_s), n_t),
            np.repeat(ts, n_s),
            value.ravel(),
            np.zeros(n_t * n_s, np.uint8),
        )

    return produce


async def run_demo(cfg: PlantConfig, duration_s: float = 0, speed: float = 60.0) -> int:
    """Run until Ctrl-C (or ``duration_s``): plant model → historian writer → store."""
    store = open_store(cfg.historian)
    writer = HistorianWriter(
        store, cfg.historian, health_asset=f"{cfg.site}/_system/shopfloor/historian-writer"
    )
    await writer.start()
    source = synthetic_source(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    url = getattr(store, "url", None)
    where = url.redacted() if url is not None else getattr(store, "path", store.name)
    print(f"Shopfloor demo: plant {cfg.name or cfg.site}, {len(cfg.assets)} assets, historian {where}")
    print(f"Simulated time runs {speed:g}x; Ctrl-C stops. Spool: {Path(cfg.historian.spool.dir).resolve()}")
    sim_ns = now_ns() - int(86_400e9)  # replay the last day fast, then follow real time
    started = loop.time()
    last_report = started
    try:
        while not stop.is_set():
            tick = loop.time()
            nxt = min(sim_ns + int(speed * 1e9), now_ns())
            writer.submit(source(sim_ns, nxt))
            sim_ns = nxt
            if tick - last_report >= 5:
                last_report = tick
                s = writer.stats()
                print(
                    f"produced={s.produced} written={s.written} pending={s.pending} spooled={s.spooled} "
                    f"dropped={s.dropped_total} quarantined={s.quarantined} state={s.state}",
                    flush=True,
                )
            if duration_s and tick - started >= duration_s:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (loop.time() - tick)))
    finally:
        await writer.flush(10)
        await writer.stop()
        s = writer.stats()
        print(
            f"stopped: produced={s.produced} written={s.written} pending={s.pending} dropped={s.dropped_total}"
        )
    return 0
