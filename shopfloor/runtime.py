"""The runtime that wires subsystems together in one process: the demo pipeline.

``run_demo`` serves the virtual plant over OPC UA/Modbus, reads it through the connectors and
stores it through the historian writer, printing the counters as it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

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


def _endpoint_ports(cfg: PlantConfig) -> tuple[int, int]:
    """The OPC UA and Modbus ports the config's sources name (0 = none), enabled or not: the demo
    serves both so a user can point another client (a Modbus tool, UaExpert) at the plant too."""
    opcua = modbus = 0
    for src in cfg.sources:
        if src.connector == "opcua":
            endpoint = str(src.settings.get("endpoint", ""))
            port = urlsplit(endpoint.replace("opc.tcp://", "http://", 1)).port
            opcua = port or 4840
        elif src.connector == "modbus":
            modbus = int(src.settings.get("port", 502))
    return opcua, modbus


async def run_demo(config_path: str | Path, duration_s: float = 0, speed: float = 60.0) -> int:
    """The whole pipeline in one process, until Ctrl-C (or ``duration_s``).

    The virtual plant serves OPC UA/Modbus on the ports the config's sources name, the acquisition
    service reads them through the real connectors, the writer stores into the configured historian.
    If the config has no enabled sources, the plant model feeds the writer directly instead.
    """
    from shopfloor.acquire import Acquisition, load_plant

    cfg, sources = load_plant(config_path)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # the simulator's demo endpoints are unsecured on purpose; asyncua warns about that at length
        logging.getLogger("asyncua").setLevel(logging.ERROR)
    store = open_store(cfg.historian)
    writer = HistorianWriter(
        store, cfg.historian, health_asset=f"{cfg.site}/_system/shopfloor/historian-writer"
    )
    await writer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    url = getattr(store, "url", None)
    where = url.redacted() if url is not None else getattr(store, "path", store.name)
    print(f"Shopfloor demo: plant {cfg.name or cfg.site}, {len(cfg.assets)} assets, historian {where}")

    sim_task: asyncio.Task[None] | None = None
    acq: Acquisition | None = None
    feed: Source | None = None
    if sources:
        from plant_simulator import cli as sim_cli
        from plant_simulator.clock import parse_start

        opcua_port, modbus_port = _endpoint_ports(cfg)
        parser = argparse.ArgumentParser()
        sim_cli.add_arguments(parser)
        sim_args = parser.parse_args(
            ["--config", str(config_path), "--speed", f"{speed:g}",
             "--opcua-port", str(opcua_port), "--modbus-port", str(modbus_port)]
        )  # fmt: skip
        plant = sim_cli.build_plant(sim_args, parse_start("now"))
        sim_task = asyncio.create_task(sim_cli.serve(plant, sim_args), name="plant-simulator")
        await asyncio.sleep(1.0)  # let the servers bind before the connectors dial in
        if sim_task.done():
            sim_task.result()  # e.g. a port already in use: show why
        acq = Acquisition(cfg, sources, writer)
        await acq.start()
        print(
            f"Virtual plant at {speed:g}x: OPC UA on 127.0.0.1:{opcua_port or '-'}, Modbus TCP on "
            f"127.0.0.1:{modbus_port or '-'}; acquiring from: {', '.join(sources)}"
        )
    else:
        feed = simulator_source(cfg, start_ns=now_ns()) or synthetic_source(cfg)
        print(f"No enabled sources: the plant model feeds the historian directly at {speed:g}x.")
    print(f"Ctrl-C stops. Spool: {Path(cfg.historian.spool.dir).resolve()}", flush=True)

    sim_ns = now_ns()
    started = last_report = loop.time()
    try:
        while not stop.is_set():
            tick = loop.time()
            if feed is not None:
                nxt = sim_ns + int(speed * 1e9)
                writer.submit(feed(sim_ns, nxt))
                sim_ns = nxt
            if tick - last_report >= 5:
                last_report = tick
                s = writer.stats()
                line = (
                    f"historian: produced={s.produced} written={s.written} pending={s.pending} "
                    f"spooled={s.spooled} dropped={s.dropped_total} quarantined={s.quarantined} state={s.state}"
                )
                if acq is not None:
                    line += "".join(
                        f" | {n}: {h.state} {h.samples_per_s:.0f}/s" for n, h in acq.health().items()
                    )
                print(line, flush=True)
            if duration_s and tick - started >= duration_s:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (loop.time() - tick)))
    finally:
        if acq is not None:
            await acq.stop()
        if sim_task is not None:
            sim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sim_task
        await writer.flush(10)
        await writer.stop()
        s = writer.stats()
        print(
            f"stopped: produced={s.produced} written={s.written} pending={s.pending} dropped={s.dropped_total}"
        )
    return 0
