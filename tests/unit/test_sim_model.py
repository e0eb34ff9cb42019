"""Simulator model: determinism, exact filters, physics couplings, ground truth and sensor faults."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plant_simulator.codes import State, Status
from plant_simulator.dsp import hold, lag
from plant_simulator.ground_truth import to_table
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.lines.rolling import RollingMill
from plant_simulator.plant import Plant, default_plant
from plant_simulator.sensor_faults import SensorFault

CNC = "qijiang/machining/gearbox-line/cnc-1"
HOT = "qijiang/copper/hot-rolling/mill-1"


def test_same_seed_gives_identical_data_and_truth() -> None:
    a, b = default_plant(seed=7), default_plant(seed=7)
    for k in range(3):
        ba, bb = a.block(k), b.block(k)
        for p in ba.values:
            np.testing.assert_array_equal(ba.values[p], bb.values[p])
            np.testing.assert_array_equal(ba.status[p], bb.status[p])
    assert a.truth() == b.truth()


def test_different_seed_gives_different_data() -> None:
    a, b = default_plant(seed=1), default_plant(seed=2)
    assert not np.array_equal(a.block(0).values[CNC], b.block(0).values[CNC])


def test_asset_data_does_not_depend_on_the_other_assets() -> None:
    alone = Plant([CncMachiningCentre(CNC)], seed=5)
    full = default_plant(seed=5)
    np.testing.assert_array_equal(alone.block(1).values[CNC], full.block(1).values[CNC])


def test_lag_is_the_exact_first_order_recursion() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    for tau in (3.0, 200.0, 5000.0):
        a = math.exp(-1 / tau)
        y, ref = 1.5, np.empty_like(x)
        for i, v in enumerate(x):
            y = a * y + (1 - a) * v
            ref[i] = y
        np.testing.assert_allclose(lag(x, tau, 1.5), ref, rtol=1e-9, atol=1e-9)


def test_hold_keeps_the_last_event_value() -> None:
    ev = np.array([False, True, False, False, True, False])
    vals = np.arange(6.0) * 10
    assert hold(ev, vals, -1.0).tolist() == [-1, 10, 10, 10, 40, 40]


def test_states_cover_the_state_machine_and_counters_are_monotonic() -> None:
    p = default_plant(seed=3)
    states: set[int] = set()
    last = None
    for k in range(24 * 4):
        v = p.block(k).values[CNC]
        states |= set(np.unique(v[0]).astype(int).tolist())
        parts = v[p.signal_index(CNC, "part_count")]
        assert np.all(np.diff(parts) >= 0)
        if last is not None:
            assert parts[0] >= last
        last = parts[-1]
    assert {State.RUNNING, State.IDLE, State.STARVED, State.DOWN, State.PLANNED_MAINTENANCE} <= states


def test_spindle_load_rises_with_tool_wear() -> None:
    p = Plant([CncMachiningCentre(CNC)], seed=11, sensor_fault_interval_days=0)
    loads, used = [], []
    for k in range(24 * 2):
        v = p.block(k).values[CNC]
        cutting = v[p.signal_index(CNC, "feed_rate")] > 0
        loads.append(v[p.signal_index(CNC, "spindle_load")][cutting])
        used.append(v[p.signal_index(CNC, "tool_life_used")][cutting])
    load, use = np.concatenate(loads), np.concatenate(used)
    fresh, worn = load[use < 20], load[use > 80]
    assert fresh.size > 1000 and worn.size > 1000
    assert worn.mean() > fresh.mean() + 5 * math.sqrt(fresh.var() / fresh.size + worn.var() / worn.size)


def test_hot_mill_force_rises_when_the_strip_is_colder() -> None:
    p = Plant([RollingMill(HOT, hot=True)], seed=4, sensor_fault_interval_days=0)
    v = np.hstack([p.block(k).values[HOT] for k in range(6)])
    temp = v[p.signal_index(HOT, "strip_temp")]
    force = v[p.signal_index(HOT, "roll_force")]
    rolling = temp > 0
    r = np.corrcoef(temp[rolling], force[rolling])[0, 1]
    assert r < -0.5


def test_sensor_faults_set_status_and_values() -> None:
    p = Plant([CncMachiningCentre(CNC)], seed=2, sensor_fault_interval_days=0)
    p.inject_sensor_fault(CNC, SensorFault("dropout", "spindle_temp", 100, 400))
    p.inject_sensor_fault(CNC, SensorFault("stuck", "coolant_temp", 1000, 2000))
    p.inject_sensor_fault(CNC, SensorFault("drift", "spindle_temp", 2000, 3600, rate=0.01))
    b = p.block(0)
    st = b.status[CNC]
    v = b.values[CNC]
    i_sp, i_co = p.signal_index(CNC, "spindle_temp"), p.signal_index(CNC, "coolant_temp")
    assert np.isnan(v[i_sp, 100:400]).all() and (st[i_sp, 100:400] == Status.BAD_SENSOR_FAILURE).all()
    assert (st[i_sp, :100] == Status.GOOD).all()
    assert np.unique(v[i_co, 1000:2000]).size == 1
    assert (st[i_co, 1060:2000] == Status.UNCERTAIN_LAST_USABLE).all()
    assert (st[i_sp, 3000:3600] == Status.UNCERTAIN_NOT_ACCURATE).all()  # 10+ K drift > 1 % of 120 K range
    kinds = [(r.event, r.mode, r.signal) for r in p.truth()]
    assert ("sensor_fault_start", "dropout", "spindle_temp") in kinds
    assert ("sensor_fault_end", "stuck", "coolant_temp") in kinds


def test_ground_truth_table_has_true_utc_times() -> None:
    p = default_plant(seed=1)
    for k in range(24):
        p.block(k)
    recs = p.truth()
    assert any(r.event == "defect" for r in recs)
    t = to_table(recs, p.start_ns)
    assert t.num_rows == len(recs)
    ts = t.column("ts").cast("int64").to_numpy()
    assert np.all(np.diff(ts) >= 0)
    assert ts[0] >= p.start_ns and ts[-1] < p.start_ns + 86400 * 10**9


def test_past_blocks_cannot_be_recomputed_silently() -> None:
    p = Plant([CncMachiningCentre(CNC)], seed=1)
    p.block(2)
    with pytest.raises(ValueError):
        p.block(0)
