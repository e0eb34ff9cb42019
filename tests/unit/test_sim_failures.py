"""Each failure mode is measurably visible in its signals before the failure (vs a healthy baseline).

Onsets are accelerated through the asset parameters so a failure happens within a few simulated days;
the check is a Welch t statistic between the healthy first hours and the hours before the failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from plant_simulator.codes import State
from plant_simulator.lines.base import AssetModel
from plant_simulator.lines.caster import ContinuousCaster
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.lines.extrusion import ExtrusionPress
from plant_simulator.lines.rolling import RollingMill
from plant_simulator.plant import Plant

FAST = {"onset": (0.3, 0.6), "progression": (0.8, 1.2)}
PATH = "qijiang/test/line/asset-1"


def welch_t(a: np.ndarray, b: np.ndarray) -> float:
    return float((b.mean() - a.mean()) / math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))


def run_to_failure(make: Callable[[], AssetModel], mode: str, max_days: int = 6, seeds: int = 6):
    """(values, status, failure step, first onset step, plant) of the first seed whose asset fails."""
    for seed in range(seeds):
        p = Plant([make()], seed=seed, sensor_fault_interval_days=0)
        blocks = []
        for k in range(24 * max_days):
            blocks.append(p.block(k).values[PATH])
            fails = [r for r in p.truth() if r.event == "failure" and r.mode == mode]
            if fails:
                onset = [r for r in p.truth() if r.event == "onset" and r.mode == mode]
                v = np.hstack(blocks)
                return v, int(fails[0].t_s), int(onset[0].t_s) if onset else 0, p
    pytest.fail(f"no {mode} failure within {max_days} days for {seeds} seeds")


def compare(
    p: Plant,
    v: np.ndarray,
    fail: int,
    healthy_end: int,
    signal: str,
    before_s: int,
    mask_signal: str | None = None,
) -> float:
    x = v[p.signal_index(PATH, signal)]
    running = v[0] == State.RUNNING
    if mask_signal is not None:
        running &= v[p.signal_index(PATH, mask_signal)] > 0
    base = x[:healthy_end][running[:healthy_end]]
    late = x[fail - before_s : fail][running[fail - before_s : fail]]
    assert base.size > 300 and late.size > 300
    return welch_t(base, late)


def test_spindle_bearing_wear_shows_in_vibration_before_failure() -> None:
    v, fail, onset, p = run_to_failure(
        lambda: CncMachiningCentre(
            PATH,
            bearing_onset_days=FAST["onset"],
            bearing_progression_days=FAST["progression"],
            tool_mean_life_h=1000.0,
        ),
        "spindle_bearing",
    )
    assert compare(p, v, fail, onset, "vib_bpfo_energy", 6 * 3600, "spindle_speed") > 10
    assert compare(p, v, fail, onset, "vib_rms", 6 * 3600, "spindle_speed") > 10
    assert compare(p, v, fail, onset, "spindle_temp", 6 * 3600) > 5


def test_tool_wear_raises_spindle_load_before_breakage() -> None:
    v, fail, _, p = run_to_failure(lambda: CncMachiningCentre(PATH, tool_mean_life_h=6.0), "tool_wear")
    trail = p.assets[PATH].schedule.truth
    installs = [
        int(r.t_s)
        for r in trail
        if r.mode == "tool_wear" and r.event in ("replacement", "repair") and r.t_s < fail
    ]
    start = installs[-1] if installs else 0
    x = v[p.signal_index(PATH, "spindle_load")]
    cutting = (v[0] == State.RUNNING) & (v[p.signal_index(PATH, "feed_rate")] > 0)
    fresh = x[start : start + 3600][cutting[start : start + 3600]]
    worn = x[fail - 1800 : fail][cutting[fail - 1800 : fail]]
    assert welch_t(fresh, worn) > 10


def test_main_drive_bearing_shows_before_failure() -> None:
    v, fail, onset, p = run_to_failure(
        lambda: RollingMill(
            PATH, hot=False, bearing_onset_days=FAST["onset"], bearing_progression_days=FAST["progression"]
        ),
        "main_drive_bearing",
    )
    assert compare(p, v, fail, onset, "drive_vib_bpfo_energy", 6 * 3600, "strip_speed") > 10
    assert compare(p, v, fail, onset, "drive_bearing_temp", 6 * 3600) > 5


def test_hydraulic_pump_wear_shows_in_case_drain_before_failure() -> None:
    v, fail, onset, p = run_to_failure(
        lambda: ExtrusionPress(
            PATH, pump_onset_days=FAST["onset"], pump_progression_days=FAST["progression"]
        ),
        "hydraulic_pump",
    )
    assert compare(p, v, fail, onset, "pump_case_drain_flow", 6 * 3600, "ram_speed") > 10
    assert compare(p, v, fail, onset, "pump_vib_kurtosis", 6 * 3600) > 5


def test_pump_cavitation_shows_in_suction_pressure_and_hf_energy() -> None:
    v, fail, onset, p = run_to_failure(
        lambda: ContinuousCaster(
            PATH, cavitation_onset_days=FAST["onset"], cavitation_progression_days=FAST["progression"]
        ),
        "cooling_water_pump_cavitation",
    )
    assert compare(p, v, fail, onset, "cw_suction_pressure", 6 * 3600) < -10  # falls
    assert compare(p, v, fail, onset, "cw_pump_hf_energy", 3 * 3600) > 10
