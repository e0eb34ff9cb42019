"""The runtime that wires subsystems together in one process: today the demo pipeline.

``run_demo`` feeds the historian writer from the virtual plant's model and prints its counters;
the connectors take the model's place once they exist (issue: connectors).
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


def simulator_source(cfg: PlantConfig, seed: int = 0, start_ns: int | None = None) -> Source | None:
    """Samples from the virtual plant's model for the config's assets (None if it knows none)."""
    from plant_simulator.clock import BLOCK_STEPS
    from plant_simulator.codes import QUALITY_OF_STATUS
    from plant_simulator.from_config import assets_from_config
    from plant_simulator.plant import Plant

    models = assets_from_config(cfg)
    if not models:
        return None
    start = now_ns() if start_ns is None else start_ns
    plant = Plant(models, seed=seed, start_ns=start, site=cfg.site, name=cfg.name)
    paths = list(plant.assets)
    keys = [(p, s.name) for p in paths for s in plant.signals(p)]
    n_sig = len(keys)
    quality_lut = np.array(QUALITY_OF_STATUS, dtype=np.uint8)
    step_ns = 1_000_000_000

    def produce(start_ns: int, end_ns: int) -> SampleBatch:
        first = max(0, -(-(start_ns - start) // step_ns))  # steps with start <= ts < end
        last = max(first, -(-(end_ns - start) // step_ns))
        parts = []
        for k in range(first // BLOCK_STEPS, -(-last // BLOCK_STEPS)):
            block = plant.block(k)
            a = max(first, k * BLOCK_STEPS) - k * BLOCK_STEPS
            b = min(last, (k + 1) * BLOCK_STEPS) - k * BLOCK_STEPS
            if b <= a:
                continue
            values = np.vstack([block.values[p][:, a:b] for p in paths])  # (signals, steps)
            status = np.vstack([block.status[p][:, a:b] for p in paths])
            n = b - a
            ts = block.ts_ns()[a:b]
            parts.append(
                SampleBatch.from_columns(
                    keys,
                    np.tile(np.arange(n_sig, dtype=np.uint32), n),
                    np.repeat(ts, n_sig),
                    values.T.ravel(),
                    quality_lut[status.T.ravel()],
                )
            )
        return SampleBatch.concat(parts)

    return produce


async def run_demo(cfg: PlantConfig, duration_s: float = 0, speed: float = 60.0) -> int:
    """Run until Ctrl-C (or ``duration_s``): plant model → historian writer → store."""
    store = open_store(cfg.historian)
    writer = HistorianWriter(
        store, cfg.historian, health_asset=f"{cfg.site}/_system/shopfloor/historian-writer"
    )
    await writer.start()
    sim_start = now_ns()
    source = simulator_source(cfg, start_ns=sim_start)
    model = "virtual plant model"
    if source is None:
        source, model = (
            synthetic_source(cfg),
            "synthetic signals (the simulator knows none of these asset kinds)",
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    url = getattr(store, "url", None)
    where = url.redacted() if url is not None else getattr(store, "path", store.name)
    print(f"Shopfloor demo: plant {cfg.name or cfg.site}, {len(cfg.assets)} assets, historian {where}")
    print(f"Data: {model}; simulated time starts now and runs {speed:g}x (source timestamps run ahead).")
    print(f"Ctrl-C stops. Spool: {Path(cfg.historian.spool.dir).resolve()}")
    sim_ns = sim_start
    started = loop.time()
    last_report = started
    try:
        while not stop.is_set():
            tick = loop.time()
            nxt = sim_ns + int(speed * 1e9)
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
