"""The demo: the whole pipeline in one process, as services on one runner.

The virtual plant serves OPC UA/Modbus, acquisition reads it through the real connectors onto the
bus, and the historian writer stores it; for a plant with no sources, the model feeds the bus directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from plant_simulator.service import (
    DEFAULT_STATE_DIR,
    SimulatorOptions,
    SimulatorService,
    plant_for,
    resume_start_ns,
)
from plant_simulator.state import ClockLease, read_state
from shopfloor.app.acquisition import Acquisition
from shopfloor.app.pipeline import leave, live_stream
from shopfloor.batch import SampleBatch
from shopfloor.bus import Bus
from shopfloor.config.schema import PlantConfig
from shopfloor.model import SignalType, now_ns
from shopfloor.service import Service, ServiceRunner

log = logging.getLogger(__name__)
NS = 1_000_000_000

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


class ModelFeed:
    """For a plant with no enabled sources: the model's samples go onto the bus directly, in
    simulated time running ``speed`` times ahead of the wall clock, from ``start_ns`` on.

    Like the simulator it reserves the simulated time it serves in ``state_dir`` first, so a
    restart resumes after it and never overwrites what an earlier run stored.
    """

    name = "model-feed"

    def __init__(
        self, source: Source, bus: Bus, speed: float, start_ns: int, state_dir: Path | None = None
    ) -> None:
        self.source, self.bus, self.speed, self.start_ns = source, bus, speed, start_ns
        self.lease = ClockLease(state_dir, max(10**9, int(10 * speed * 1e9))) if state_dir else None
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="model-feed")

    async def _run(self) -> None:
        sim_ns = self.start_ns
        loop = asyncio.get_running_loop()
        while True:
            tick = loop.time()
            nxt = sim_ns + int(self.speed * 1e9)
            if self.lease is not None:
                await asyncio.to_thread(self.lease.reserve_sync, nxt)
            batch = self.source(sim_ns, nxt)
            self.bus.publish(batch)
            self.published += len(batch)
            if self.lease is not None and len(batch):
                self.lease.served(int(batch.ts.max()))
            sim_ns = nxt
            await asyncio.sleep(max(0.0, 1.0 - (loop.time() - tick)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.lease is not None:
            self.lease.close()

    def status(self) -> str | None:
        return f"model feed: {self.published} samples"


DEMO_MODELS = Path("var/analytics/models.npz")


def analytics_services(cfg: PlantConfig, bus: Bus, models_path: Path = DEMO_MODELS) -> list[Service]:
    """The live analytics when trained models exist (``shopfloor analytics train`` makes them)."""
    if not models_path.exists():
        print(
            f"Analytics: no models at {models_path}; `shopfloor analytics train` makes them (a few minutes)"
        )
        return []
    from analytics import store as model_store
    from historian.factory import open_reader
    from shopfloor.app.analytics_live import AnalyticsService, LiveOptions, mes_opener

    try:
        models = model_store.load(models_path)
    except model_store.IncompatibleModel as exc:
        print(f"Analytics: not started: {exc}")
        return []
    svc = AnalyticsService(
        cfg,
        models,
        open_reader(cfg.historian),
        bus.publish,
        bus.publish_events,
        mes_opener(cfg),
        LiveOptions(),
    )
    print(
        f"Analytics: scoring {len(svc.plans)} assets every {svc.opt.every_s:g} s (each learns its healthy "
        f"operation over its first {svc.opt.healthy_days:g} simulated days)"
    )
    return [svc]


def load_demo(
    config_path: str | Path,
    speed: float,
    port: int | None = None,
    historian: str | None = None,
    history_days: float = 0.0,
) -> tuple[PlantConfig, Any]:
    """The plant config with the demo's overrides: another historian, the dashboard's port, and the
    dashboard's clock on the data (simulated time runs ahead of the wall clock)."""
    from shopfloor.config.load import load_yaml, validate_document
    from shopfloor.config.sources import validate_sources

    doc = load_yaml(config_path)
    if isinstance(doc.data, dict):
        data = dict(doc.data)
        if historian:
            data["historian"] = {**(data.get("historian") or {}), "url": historian}
        dash = dict(data.get("dashboard") or {})
        if port is not None:
            dash["port"] = port
        if speed != 1:
            dash.setdefault("clock", "data")
        data["dashboard"] = dash
        if history_days > 0 and isinstance(data.get("mes"), dict):
            # the MES derives the whole back-filled history on the first start (orders, stops, shift OEE
            # and lot genealogy for every simulated week; a day more, so nothing at its start is cut off)
            data["mes"] = {"catch_up_days": history_days + 1.0, **data["mes"]}
        doc = replace(doc, data=data)
    cfg = validate_document(doc)
    return cfg, validate_sources(cfg, doc)


def demo_login(cfg: PlantConfig) -> tuple[str, str | None]:
    """The demo's login: user ``demo`` (engineer) with a password made on first start and kept, mode 600,
    beside the users file, so it can be printed again. (None if the users file has other users.)"""
    import os
    import secrets

    from dashboard.auth import Users

    users = Users(cfg.dashboard.users_file)
    keep = Path(cfg.dashboard.users_file).with_name("demo-password")
    if keep.exists() and users.get("demo") is not None:
        return "demo", keep.read_text(encoding="utf-8").strip()
    if users.names() and users.get("demo") is None:
        return "", None  # a plant's own users: the demo adds nobody
    password = secrets.token_urlsafe(9)
    users.set("demo", "engineer", password)
    keep.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    return "demo", password


async def run_demo(
    config_path: str | Path,
    duration_s: float = 0,
    speed: float = 60.0,
    port: int | None = None,
    historian: str | None = None,
    history_days: float = 0.0,
) -> int:
    """The whole pipeline in one process, until Ctrl-C (or ``duration_s``).

    The virtual plant serves OPC UA/Modbus on the ports the config's sources name, the acquisition
    service reads them through the real connectors, the writer stores into the configured historian.
    If the config has no enabled sources, the plant model feeds the bus directly instead.
    """
    first_start = read_state(DEFAULT_STATE_DIR) is None  # read before anything of this run writes it
    cfg, sources = load_demo(config_path, speed, port, historian, history_days if first_start else 0.0)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # the simulator's demo endpoints are unsecured on purpose; asyncua warns about that at length
        logging.getLogger("asyncua").setLevel(logging.ERROR)
    writer, bus = live_stream(cfg)
    store = writer.store
    url = getattr(store, "url", None)
    where = url.redacted() if url is not None else getattr(store, "path", store.name)
    print(f"Shopfloor demo: plant {cfg.name or cfg.site}, {len(cfg.assets)} assets, historian {where}")

    services: list[Service] = [writer, bus]
    if cfg.mes.assets:  # the MES derives orders, stops, counts and lots from the live stream
        from shopfloor.app.mes_cli import mes_services

        # orders as an ERP would send them, so the floor fills them with nobody typing (first run only)
        schedule = Path(config_path).resolve().parent / "mes" / "schedule.b2mml.xml"
        services += mes_services(cfg, bus, seed_orders=schedule)
        print(
            f"MES: {len(cfg.mes.assets)} assets, database {cfg.mes.database}, API on {cfg.mes.api.host}:{cfg.mes.api.port}"
        )
    # the plant resumes after the simulated time earlier runs served (kept in var/state/simulator),
    # so a second demo never overwrites what the first one stored
    start = resume_start_ns(DEFAULT_STATE_DIR, now_ns())
    if sources:
        opcua_port, modbus_port = _endpoint_ports(cfg)
        if first_start and history_days > 0:
            from shopfloor.app import demo_history

            # the plant of the live demo, started history_days ago and computed up to now offline (or, after
            # a first start stopped during the back-fill, the same history again: it goes live where it ends)
            first, days = demo_history.history_plan(start, history_days)
            start = first + int(days * 86400) * NS
            plant = plant_for(cfg, start_ns=first)
            await demo_history.back_fill(cfg, plant, days)
            if not Path("var/analytics/models.npz").exists():
                await asyncio.to_thread(demo_history.train_on_history)
        else:
            plant = plant_for(cfg, start_ns=start)
        options = SimulatorOptions(
            speed=speed, opcua_port=opcua_port, modbus_port=modbus_port, state_dir=DEFAULT_STATE_DIR
        )
        services += [SimulatorService(plant, options), Acquisition(cfg, sources, bus)]
        print(
            f"Virtual plant at {speed:g}x: OPC UA on 127.0.0.1:{opcua_port or '-'}, Modbus TCP on "
            f"127.0.0.1:{modbus_port or '-'}; acquiring from: {', '.join(sources)}"
        )
        print(
            f"Simulated time runs {speed:g}x ahead of the wall clock: one minute here is {speed:g} "
            "simulated minutes, and the historian holds simulated timestamps (`historian query "
            "--minutes` counts back from the newest sample)."
        )
    else:
        feed = simulator_source(cfg, start_ns=start) or synthetic_source(cfg)
        services.append(ModelFeed(feed, bus, speed, start, DEFAULT_STATE_DIR))
        print(f"No enabled sources: the plant model feeds the historian directly at {speed:g}x.")
    services += analytics_services(cfg, bus)
    from dashboard.server import DashboardService

    dash = DashboardService(cfg)
    services.append(dash)
    user, password = demo_login(cfg)
    login = f"log in as {user} / {password}" if password else f"users: {cfg.dashboard.users_file}"
    print(f"Dashboard: {dash.url} — {login}")
    print(f"Ctrl-C stops. Spool: {Path(cfg.historian.spool.dir).resolve()}", flush=True)

    runner = ServiceRunner(
        services, status_every_s=5.0, duration_s=duration_s, report=lambda line: print(line, flush=True)
    )
    code = await runner.run()
    s = writer.stats()
    print(
        f"stopped: produced={s.produced} written={s.written} pending={s.pending} "
        f"dropped={s.dropped_total} quarantined={s.quarantined}"
    )
    return leave(code)
