"""Sensor faults that are not equipment failures: thermocouple drift, stuck value, dropout, spikes.

Scheduled per asset from their own random stream and applied to rendered values and statuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plant_simulator.codes import Status
from plant_simulator.degradation import DAY, HOUR
from plant_simulator.ground_truth import GroundTruth

KINDS = ("drift", "stuck", "dropout", "spikes")
#: Relative frequency and duration range (seconds) of each kind.
KIND_WEIGHTS = (0.3, 0.25, 0.25, 0.2)
KIND_DURATION = {
    "drift": (1 * DAY, 4 * DAY),
    "stuck": (10 * 60, 6 * HOUR),
    "dropout": (60, 2 * HOUR),
    "spikes": (10 * 60, 3 * HOUR),
}
DRIFT_FLAG_FRACTION = 0.01  # drift beyond 1 % of the range fails the device's plausibility check
STUCK_DETECT_S = 60  # the device flags a frozen value after this long


@dataclass(frozen=True)
class SensorFault:
    kind: str
    signal: str
    start: int
    end: int
    rate: float = 0.0  # drift: units per second (signed); spikes: amplitude (signed)


@dataclass
class SensorFaultSchedule:
    """Random sensor faults on an asset's faultable signals; ``mean_interval_days=0`` disables them."""

    asset: str
    signals: list[tuple[str, float, float]]  # (name, low, high)
    rng: np.random.Generator
    mean_interval_days: float = 10.0
    faults: list[SensorFault] = field(default_factory=list)
    truth: list[GroundTruth] = field(default_factory=list)
    horizon_s: int = 0
    _next: float = -1.0

    def add(self, fault: SensorFault) -> None:
        """Inject a fault (tests and demos); it is logged in the ground truth like a random one."""
        self.faults.append(fault)
        self.faults.sort(key=lambda f: f.start)
        self._log(fault)

    def _log(self, f: SensorFault) -> None:
        detail = f"rate={f.rate:.6g}" if f.kind in ("drift", "spikes") else ""
        self.truth.append(
            GroundTruth(f.start, self.asset, "sensor_fault_start", f.kind, signal=f.signal, detail=detail)
        )
        self.truth.append(GroundTruth(f.end, self.asset, "sensor_fault_end", f.kind, signal=f.signal))

    def extend(self, horizon_s: int) -> None:
        if not self.signals or self.mean_interval_days <= 0:
            self.horizon_s = max(self.horizon_s, horizon_s)
            return
        if self._next < 0:
            self._next = self.rng.exponential(self.mean_interval_days * DAY)
        while self._next <= horizon_s:
            kind = KINDS[int(self.rng.choice(len(KINDS), p=KIND_WEIGHTS))]
            name, low, high = self.signals[int(self.rng.integers(len(self.signals)))]
            dur = self.rng.uniform(*KIND_DURATION[kind])
            span = high - low
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            if kind == "drift":
                rate = sign * self.rng.uniform(0.0002, 0.001) * span / HOUR
            elif kind == "spikes":
                rate = sign * self.rng.uniform(0.1, 0.3) * span
            else:
                rate = 0.0
            start = int(self._next)
            f = SensorFault(kind, name, start, start + int(dur), rate)
            self.faults.append(f)
            self._log(f)
            self._next += dur + self.rng.exponential(self.mean_interval_days * DAY)
        self.horizon_s = max(self.horizon_s, horizon_s)

    def active(self, t0: int, t1: int) -> list[SensorFault]:
        return [f for f in self.faults if f.start < t1 and f.end > t0]

    def drift_offset(self, signal: str, t: np.ndarray) -> np.ndarray:
        """The drift error on ``signal`` at times ``t`` (zero where no drift fault)."""
        out = np.zeros(len(t))
        for f in self.active(int(t[0]), int(t[-1]) + 1):
            if f.kind == "drift" and f.signal == signal:
                m = (t >= f.start) & (t < f.end)
                out[m] += (t[m] - f.start) * f.rate
        return out


def apply(
    faults: list[SensorFault],
    t: np.ndarray,
    values: dict[str, np.ndarray],
    status: dict[str, np.ndarray],
    ranges: dict[str, tuple[float, float]],
    stuck_carry: dict[tuple[str, int], float],
    rng: np.random.Generator,
) -> None:
    """Corrupt ``values`` in place and set ``status`` for the faults active in this block.

    Drift shifts the value (flagged UNCERTAIN_NOT_ACCURATE beyond 1 % of the range); stuck
    freezes it at its value when the fault began (UNCERTAIN_LAST_USABLE after 60 s); dropout
    gives NaN and BAD_SENSOR_FAILURE; spikes add single-sample outliers that the device does
    not flag (GOOD), as real EMI spikes are.
    """
    for f in faults:
        if f.signal not in values:
            continue
        v, st = values[f.signal], status[f.signal]
        m = (t >= f.start) & (t < f.end)
        if not m.any():
            continue
        low, high = ranges[f.signal]
        if f.kind == "drift":
            off = (t[m] - f.start) * f.rate
            v[m] += off
            flag = np.abs(off) > DRIFT_FLAG_FRACTION * (high - low)
            st[np.flatnonzero(m)[flag]] = Status.UNCERTAIN_NOT_ACCURATE
        elif f.kind == "stuck":
            key = (f.signal, f.start)
            if key not in stuck_carry:
                first = int(np.flatnonzero(m)[0])
                stuck_carry[key] = float(v[first])
            v[m] = stuck_carry[key]
            flagged = m & (t >= f.start + STUCK_DETECT_S)
            st[flagged] = np.maximum(st[flagged], Status.UNCERTAIN_LAST_USABLE)
        elif f.kind == "dropout":
            v[m] = np.nan
            st[m] = Status.BAD_SENSOR_FAILURE
        elif f.kind == "spikes":
            idx = np.flatnonzero(m)
            hit = idx[rng.random(len(idx)) < 1 / 120]
            v[hit] += f.rate * (0.5 + rng.random(len(hit)))
