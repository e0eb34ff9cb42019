"""The plant model: assets, their schedules and sensor faults, stepped in blocks of simulated time.

Offline generation and both protocol servers call ``Plant.block(k)`` on the same model.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plant_simulator import sensor_faults
from plant_simulator.clock import BLOCK_STEPS, DEFAULT_START, NS, parse_start
from plant_simulator.codes import State
from plant_simulator.ground_truth import GroundTruth
from plant_simulator.lines.base import AssetModel, Block
from plant_simulator.schedule import AssetSchedule
from plant_simulator.sensor_faults import SensorFaultSchedule
from plant_simulator.signals import SignalSpec

SCHEDULE_MARGIN_S = 2 * 86400  # schedules are generated this far ahead of the rendered block


@dataclass
class AssetRuntime:
    model: AssetModel
    key: int  # stable per asset path, so adding an asset does not change the others' data
    schedule: AssetSchedule
    faults: SensorFaultSchedule
    carry: dict[str, Any] = field(default_factory=dict)
    cumrun: float = 0.0
    stuck: dict[tuple[str, int], float] = field(default_factory=dict)
    defects: list[GroundTruth] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.model.path


@dataclass
class PlantBlock:
    """One block of every asset: ``values[path]`` is (signals, steps) float64, ``status`` uint8."""

    index: int
    t0: int  # first step (seconds since start)
    n: int
    start_ns: int
    values: dict[str, np.ndarray]
    status: dict[str, np.ndarray]

    def ts_ns(self) -> np.ndarray:
        return self.start_ns + (self.t0 + np.arange(self.n, dtype=np.int64)) * NS


class Plant:
    """A deterministic plant: same assets, seed and options -> identical data, however it is stepped."""

    def __init__(
        self,
        assets: list[AssetModel],
        seed: int = 0,
        start_ns: int | None = None,
        sensor_fault_interval_days: float = 10.0,
        name: str = "",
        site: str = "",
    ) -> None:
        self.seed = int(seed)
        self.start_ns = parse_start(DEFAULT_START) if start_ns is None else int(start_ns)
        self.name = name
        self.site = site or (assets[0].path.split("/")[0] if assets else "")
        self.assets: dict[str, AssetRuntime] = {}
        for m in assets:
            if m.path in self.assets:
                raise ValueError(f"duplicate asset {m.path}")
            key = zlib.crc32(m.path.encode())
            faultable = [(s.name, s.low, s.high) for s in m.signals if s.faultable]
            self.assets[m.path] = AssetRuntime(
                m,
                key,
                AssetSchedule(
                    m.path, m.failure_modes(), m.state_params(), np.random.default_rng([self.seed, key, 1])
                ),
                SensorFaultSchedule(
                    m.path, faultable, np.random.default_rng([self.seed, key, 2]), sensor_fault_interval_days
                ),
            )
        self.order = self._render_order()
        self.next_block = 0
        self._last: PlantBlock | None = None

    def _render_order(self) -> list[str]:
        done: list[str] = []
        pending = list(self.assets)
        while pending:
            progressed = False
            for p in list(pending):
                ups = self.assets[p].model.upstream_assets()
                if all(u in done or u not in self.assets for u in ups):
                    done.append(p)
                    pending.remove(p)
                    progressed = True
            if not progressed:
                raise ValueError(f"cycle in upstream dependencies among {pending}")
        return done

    # -- structure ----------------------------------------------------------------------------
    def signals(self, path: str) -> list[SignalSpec]:
        return self.assets[path].model.signals

    def signal_index(self, path: str, signal: str) -> int:
        return [s.name for s in self.signals(path)].index(signal)

    # -- stepping -----------------------------------------------------------------------------
    def block(self, k: int) -> PlantBlock:
        """Block ``k`` (steps ``k*3600 .. k*3600+3599``); computed in order, the last one is kept."""
        if self._last is not None and self._last.index == k:
            return self._last
        if k < self.next_block:
            raise ValueError(f"block {k} is in the past (next is {self.next_block}); make a new Plant")
        while self.next_block <= k:
            self._last = self._compute(self.next_block)
            self.next_block += 1
        assert self._last is not None
        return self._last

    def blocks(self, n_blocks: int, first: int = 0) -> Iterator[PlantBlock]:
        for k in range(first, first + n_blocks):
            yield self.block(k)

    def _compute(self, k: int) -> PlantBlock:
        n = BLOCK_STEPS
        t0 = k * n
        ti = np.arange(t0, t0 + n, dtype=np.int64)
        t = ti.astype(np.float64)
        rendered: dict[str, dict[str, np.ndarray]] = {}
        values: dict[str, np.ndarray] = {}
        status: dict[str, np.ndarray] = {}
        for path in self.order:
            rt = self.assets[path]
            m = rt.model
            rt.schedule.extend(t0 + n + SCHEDULE_MARGIN_S)
            rt.faults.extend(t0 + n + SCHEDULE_MARGIN_S)
            state, reason = rt.schedule.states(ti)
            cumrun = rt.cumrun + np.cumsum(state == State.RUNNING, dtype=np.float64)
            rt.cumrun = float(cumrun[-1])
            sev: dict[str, np.ndarray] = {}
            age: dict[str, np.ndarray] = {}
            for mode in rt.schedule.modes:
                sev[mode.name], age[mode.name] = rt.schedule.lives[mode.name].evaluate(mode, t, cumrun)
            rng = np.random.default_rng([self.seed, rt.key, 3, k])
            b = Block(
                path,
                k,
                t,
                state,
                reason,
                cumrun,
                rng,
                sev,
                age,
                {u: rendered[u] for u in m.upstream_assets() if u in rendered},
                lambda sig, _f=rt.faults, _t=t: _f.drift_offset(sig, _t),
                rt.defects,
            )
            out = m.render_all(b, rt.carry)
            rendered[path] = out
            specs = m.signals
            st = {s.name: np.zeros(n, dtype=np.uint8) for s in specs}
            vals = {s.name: np.array(out[s.name], dtype=np.float64) for s in specs}
            active = rt.faults.active(t0, t0 + n)
            if active:
                ranges = {s.name: (s.low, s.high) for s in specs}
                sensor_faults.apply(active, t, vals, st, ranges, rt.stuck, rng)
            values[path] = np.vstack([vals[s.name] for s in specs])
            status[path] = np.vstack([st[s.name] for s in specs])
        return PlantBlock(k, t0, n, self.start_ns, values, status)

    # -- ground truth -------------------------------------------------------------------------
    def truth(self, until_s: float | None = None) -> list[GroundTruth]:
        """Ground-truth records up to ``until_s`` (default: the end of the last computed block)."""
        end = self.next_block * BLOCK_STEPS if until_s is None else until_s
        out: list[GroundTruth] = []
        for rt in self.assets.values():
            out.extend(r for r in rt.schedule.truth if r.t_s < end)
            out.extend(r for r in rt.faults.truth if r.t_s < end)
            out.extend(r for r in rt.defects if r.t_s < end)
        out.sort(key=lambda r: (r.t_s, r.asset, r.event))
        return out

    def inject_sensor_fault(self, path: str, fault: sensor_faults.SensorFault) -> None:
        """Add a sensor fault (tests and demos); it must start after the last computed block."""
        if fault.start < self.next_block * BLOCK_STEPS:
            raise ValueError("inject sensor faults before computing the blocks they touch")
        self.assets[path].faults.add(fault)


def default_plant(seed: int = 0, start_ns: int | None = None, **kwargs: Any) -> Plant:
    """The Qijiang demo plant (see ``plant_simulator.layout``)."""
    from plant_simulator.layout import qijiang_assets

    return Plant(
        qijiang_assets(), seed=seed, start_ns=start_ns, name="Qijiang demo plant", site="qijiang", **kwargs
    )
