"""The contract every simulated asset model follows, and the per-block context it renders from.

An asset declares signals, failure modes and state statistics; ``render`` fills its arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from plant_simulator.codes import State
from plant_simulator.degradation import FailureMode
from plant_simulator.ground_truth import GroundTruth
from plant_simulator.schedule import StateParams
from plant_simulator.signals import ENERGY_SIGNALS, STATE_SIGNALS, SignalSpec


@dataclass
class Block:
    """One block of simulated time for one asset, with everything its renderer needs."""

    asset: str
    index: int
    t: np.ndarray  # float64 seconds since the start, one per step
    state: np.ndarray  # int8 State codes
    reason: np.ndarray  # int16 Reason codes
    cumrun: np.ndarray  # running seconds since the start, counted through the end of each step
    rng: np.random.Generator
    severity: dict[str, np.ndarray]
    age: dict[str, np.ndarray]  # running seconds since each component was installed
    upstream: dict[str, dict[str, np.ndarray]]
    drift: Any  # callable(signal) -> true drift offset of that sensor (for control loops)
    truth: list[GroundTruth] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.t)

    @property
    def running(self) -> np.ndarray:
        return self.state == State.RUNNING

    @property
    def powered(self) -> np.ndarray:
        """Steps where auxiliaries run (everything but down/maintenance)."""
        return self.state < State.DOWN

    def defect(
        self, i: int, mode: str, cause: str, signal: str = "", value: float = float("nan"), detail: str = ""
    ) -> None:
        self.truth.append(
            GroundTruth(float(self.t[i]), self.asset, "defect", mode, cause, signal, value, detail)
        )

    def noise(self, sigma: float = 1.0) -> np.ndarray:
        return self.rng.standard_normal(self.n) * sigma


class AssetModel:
    """Base class of simulated equipment.  Subclasses set ``kind`` and implement the hooks."""

    kind: ClassVar[str] = ""
    max_kw: ClassVar[float] = 100.0

    def __init__(self, path: str, description: str = "", **params: Any) -> None:
        self.path = path
        self.description = description
        self.params = params
        self._specs = [*STATE_SIGNALS(), *self.own_signals(), *ENERGY_SIGNALS(self.max_kw)]

    # hooks -----------------------------------------------------------------------------------
    def own_signals(self) -> list[SignalSpec]:
        raise NotImplementedError

    def failure_modes(self) -> list[FailureMode]:
        return []

    def state_params(self) -> StateParams:
        return StateParams()

    def upstream_assets(self) -> tuple[str, ...]:
        """Assets whose rendered values this one reads in the same block (rendered first)."""
        return ()

    def render(self, b: Block, carry: dict[str, Any]) -> dict[str, np.ndarray]:
        """Own signals plus ``power`` (kW) for the block."""
        raise NotImplementedError

    # fixed -----------------------------------------------------------------------------------
    @property
    def signals(self) -> list[SignalSpec]:
        return self._specs

    def render_all(self, b: Block, carry: dict[str, Any]) -> dict[str, np.ndarray]:
        out = self.render(b, carry)
        out["state"] = b.state.astype(np.float64)
        out["down_reason"] = np.where(b.state == State.RUNNING, 0, b.reason).astype(np.float64)
        failure_reasons = {int(m.reason) for m in self.failure_modes() if m.category == "equipment"}
        failure_reasons |= {12}  # electrical fault
        out["alarm"] = ((b.state == State.DOWN) & np.isin(b.reason, list(failure_reasons))).astype(np.float64)
        power = np.maximum(out["power"], 0.0)
        out["power"] = power
        e0 = carry.get("_energy", 0.0)
        energy = e0 + np.cumsum(power) / 3600.0
        carry["_energy"] = float(energy[-1])
        out["energy"] = energy
        return out


def cycle_events(cumrun: np.ndarray, cycle_s: float, prev_cumrun: float) -> tuple[np.ndarray, np.ndarray]:
    """(count, completed) for a process that completes one unit every ``cycle_s`` running seconds."""
    count = np.floor(cumrun / cycle_s)
    prev = np.concatenate(([np.floor(prev_cumrun / cycle_s)], count[:-1]))
    return count, count > prev


def phase(cumrun: np.ndarray, cycle_s: float) -> np.ndarray:
    """Position in the current cycle, 0..1."""
    return np.mod(cumrun, cycle_s) / cycle_s
