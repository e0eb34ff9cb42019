"""The event-level timeline of one asset: state segments, component lives, planned maintenance.

Built sequentially from the asset's own random stream, extended on demand, so it never depends
on how callers chunk time; the vectorised renderers read it with searchsorted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from plant_simulator.codes import Reason, State
from plant_simulator.degradation import DAY, HOUR, FailureMode, Lifecycles
from plant_simulator.ground_truth import GroundTruth


@dataclass(frozen=True)
class Stop:
    """A kind of interruption between running stretches."""

    state: State
    reason: Reason
    weight: float
    mean_s: float


@dataclass(frozen=True)
class StateParams:
    run_mean_s: float = 3 * HOUR
    stops: tuple[Stop, ...] = (
        Stop(State.IDLE, Reason.NONE, 3.0, 15 * 60),
        Stop(State.STARVED, Reason.NONE, 2.0, 10 * 60),
        Stop(State.BLOCKED, Reason.NONE, 1.0, 8 * 60),
        Stop(State.SETUP, Reason.PRODUCT_CHANGEOVER, 1.0, 30 * 60),
        Stop(State.DOWN, Reason.MINOR_STOP, 2.0, 3 * 60),
        Stop(State.DOWN, Reason.ELECTRICAL_FAULT, 0.2, 45 * 60),
    )
    pm_interval_days: float = 7.0
    pm_hours: tuple[float, float] = (4.0, 6.0)
    first_pm_days: float = 3.5


@dataclass
class _Component:
    mode: FailureMode
    install_run: float = 0.0
    onset_run: float = 0.0
    fail_run: float = 0.0
    replace_run: float = math.inf
    onset_logged: bool = False


@dataclass
class AssetSchedule:
    """State segments and component lives of one asset, generated up to ``horizon_s``."""

    asset: str
    modes: list[FailureMode]
    params: StateParams
    rng: np.random.Generator
    seg_start: list[int] = field(default_factory=list)
    seg_state: list[int] = field(default_factory=list)
    seg_reason: list[int] = field(default_factory=list)
    lives: dict[str, Lifecycles] = field(default_factory=dict)
    truth: list[GroundTruth] = field(default_factory=list)
    horizon_s: int = 0
    _run: float = 0.0
    _next_pm: float = 0.0
    _comps: list[_Component] = field(default_factory=list)
    _arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self._next_pm = self.params.first_pm_days * DAY * (0.7 + 0.6 * self.rng.random())
        for m in self.modes:
            self.lives[m.name] = Lifecycles()
            c = _Component(m)
            self._comps.append(c)
            self._install(c, 0)

    # -- generation ---------------------------------------------------------------------------
    def _install(self, c: _Component, t: int) -> None:
        onset, fail = c.mode.draw_life(self.rng)
        c.install_run, c.onset_run, c.fail_run = self._run, self._run + onset, self._run + fail
        c.replace_run = self._run + c.mode.planned_life_s if c.mode.planned_life_s else math.inf
        c.onset_logged = onset <= 0
        self.lives[c.mode.name].add(t, self._run, onset, fail)

    def _segment(self, t: int, state: State, reason: Reason) -> None:
        if self.seg_state and self.seg_state[-1] == state and self.seg_reason[-1] == reason:
            return
        self.seg_start.append(t)
        self.seg_state.append(int(state))
        self.seg_reason.append(int(reason))
        self._arrays = None

    def _log(self, t: float, event: str, c: _Component, cause: str = "", detail: str = "") -> None:
        self.truth.append(GroundTruth(float(t), self.asset, event, c.mode.name, cause, detail=detail))

    def _run_for(self, t: int, dur: int) -> int:
        """Run from ``t`` for up to ``dur`` s, stopping early at a failure or planned replacement."""
        end_run = self._run + dur
        first: tuple[float, _Component, str] | None = None
        for c in self._comps:
            if not c.onset_logged and c.onset_run < end_run:
                self._log(t + (c.onset_run - self._run), "onset", c, detail=c.mode.category)
                c.onset_logged = True
            if c.fail_run < end_run and (first is None or c.fail_run < first[0]):
                first = (c.fail_run, c, "failure")
            if (
                c.replace_run < end_run
                and c.replace_run < c.fail_run
                and (first is None or c.replace_run < first[0])
            ):
                first = (c.replace_run, c, "replacement")
        self._segment(t, State.RUNNING, Reason.NONE)
        if first is None:
            self._run = end_run
            return t + dur
        at_run, c, what = first
        ran = max(1, math.ceil(at_run - self._run))
        self._run += ran
        t += ran
        if what == "failure":
            self._log(t, "failure", c, detail=c.mode.category)
            self._segment(t, State.DOWN, c.mode.reason)
            t += int(self.rng.uniform(*c.mode.repair_hours) * HOUR)
            self._log(t, "repair", c, cause="failure")
        else:
            self._segment(t, State.SETUP, c.mode.reason if c.mode.category != "tool" else Reason.TOOL_CHANGE)
            t += int(self.rng.uniform(*c.mode.replace_minutes) * 60)
            self._log(t, "replacement", c, cause="planned")
        self._install(c, t)
        return t

    def _planned_maintenance(self, t: int) -> int:
        self._segment(t, State.PLANNED_MAINTENANCE, Reason.PLANNED_MAINTENANCE)
        t += int(self.rng.uniform(*self.params.pm_hours) * HOUR)
        for c in self._comps:
            sev = float(c.mode.severity(self._run, c.onset_run, c.fail_run))
            if c.mode.pm_detect is not None and sev >= c.mode.pm_detect:
                self._log(t, "maintenance", c, cause="planned_maintenance", detail=f"severity={sev:.2f}")
                self._install(c, t)
            elif c.mode.category == "consumable" and c.mode.planned_life_s is not None:
                pass  # consumables are changed on their own schedule
        self._next_pm = t + self.params.pm_interval_days * DAY
        return t

    def extend(self, horizon_s: int) -> None:
        """Generate segments until at least ``horizon_s`` (plus the segment in progress)."""
        p = self.params
        weights = np.array([s.weight for s in p.stops])
        weights = weights / weights.sum()
        t = self.horizon_s
        while t <= horizon_s:
            if t >= self._next_pm:
                t = self._planned_maintenance(t)
                continue
            dur = max(60, int(self.rng.exponential(p.run_mean_s)))
            dur = min(dur, max(1, math.ceil(self._next_pm - t)))
            t = self._run_for(t, dur)
            if t >= self._next_pm:
                continue
            stop = p.stops[int(self.rng.choice(len(p.stops), p=weights))]
            self._segment(t, stop.state, stop.reason)
            t += max(5, int(self.rng.exponential(stop.mean_s)))
        self.horizon_s = t

    # -- reading ------------------------------------------------------------------------------
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (
                np.asarray(self.seg_start, dtype=np.int64),
                np.asarray(self.seg_state, dtype=np.int8),
                np.asarray(self.seg_reason, dtype=np.int16),
            )
        return self._arrays

    def states(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(state, reason) at integer times ``t`` (must be inside the generated horizon)."""
        starts, states, reasons = self.arrays()
        i = np.searchsorted(starts, t, side="right") - 1
        return states[i], reasons[i]
