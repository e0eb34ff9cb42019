"""Failure modes and their degradation: random onset and rate, failure at full severity, reset on repair.

A component's severity is ``((age - onset) / (failure - onset)) ** shape`` in running time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from plant_simulator.codes import Reason

DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True)
class FailureMode:
    """How one component of an asset wears out.

    Onset and progression are drawn per component life, in *running* time (wear happens only
    while the asset runs).  ``life_weibull`` (shape, scale in running seconds) replaces the
    onset/progression draw for tools whose wear starts at installation.  ``planned_life_s``
    schedules a replacement (tool change, consumable change) at that age; if the component
    fails first, that is a failure.  ``pm_detect`` is the severity above which planned
    maintenance finds and replaces the component (None: maintenance does not look at it).
    """

    name: str
    reason: Reason
    category: str = "equipment"  # equipment | tool | consumable
    onset_days: tuple[float, float] = (5.0, 30.0)
    progression_days: tuple[float, float] = (3.0, 14.0)
    shape: float = 2.0
    repair_hours: tuple[float, float] = (4.0, 12.0)
    pm_detect: float | None = 0.5
    life_weibull: tuple[float, float] | None = None
    planned_life_s: float | None = None
    replace_minutes: tuple[float, float] = (5.0, 15.0)

    def draw_life(self, rng: np.random.Generator) -> tuple[float, float]:
        """(onset, failure) ages in running seconds for a new component."""
        if self.life_weibull is not None:
            k, scale = self.life_weibull
            return 0.0, float(scale * rng.weibull(k))
        onset = rng.uniform(*self.onset_days) * DAY
        prog = rng.uniform(*self.progression_days) * DAY
        return float(onset), float(onset + prog)

    def severity(
        self, age: np.ndarray | float, onset: np.ndarray | float, fail: np.ndarray | float
    ) -> np.ndarray:
        span = np.maximum(np.asarray(fail) - np.asarray(onset), 1.0)
        x = np.clip((np.asarray(age) - onset) / span, 0.0, 1.0)
        return x**self.shape


@dataclass
class Lifecycles:
    """All lives of one component, in install order (parallel lists; times in seconds)."""

    install_t: list[float] = field(default_factory=list)  # calendar time of installation
    install_run: list[float] = field(default_factory=list)  # running seconds at installation
    onset_run: list[float] = field(default_factory=list)  # running seconds at onset (absolute)
    fail_run: list[float] = field(default_factory=list)  # running seconds at failure (absolute)

    def add(self, t: float, run: float, onset_age: float, fail_age: float) -> None:
        self.install_t.append(t)
        self.install_run.append(run)
        self.onset_run.append(run + onset_age)
        self.fail_run.append(run + fail_age)

    def evaluate(self, mode: FailureMode, t: np.ndarray, cumrun: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(severity, age in running seconds) at each step."""
        inst = np.asarray(self.install_t)
        i = np.searchsorted(inst, t, side="right") - 1
        i = np.clip(i, 0, len(inst) - 1)
        install_run = np.asarray(self.install_run)[i]
        onset = np.asarray(self.onset_run)[i]
        fail = np.asarray(self.fail_run)[i]
        return mode.severity(cumrun, onset, fail), cumrun - install_run


def tool_life_scale(mean_s: float, k: float) -> float:
    """Weibull scale giving the requested mean life."""
    return mean_s / math.gamma(1 + 1 / k)
