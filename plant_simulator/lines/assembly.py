"""Assembly-and-test station and end-of-line measuring station of the gearbox line.

Both read the bores the CNCs cut: press-fit force follows interference, the CMM measures them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plant_simulator.dsp import hold
from plant_simulator.lines.base import AssetModel, Block, cycle_events, phase
from plant_simulator.lines.cnc import BORE_TARGET, BORE_TOL
from plant_simulator.signals import C, F, SignalSpec


def upstream_bore(b: Block, cncs: tuple[str, ...]) -> np.ndarray:
    bores = [b.upstream[p]["bore_diameter"] for p in cncs if p in b.upstream]
    return np.mean(bores, axis=0) if bores else np.full(b.n, BORE_TARGET)


class AssemblyTestStation(AssetModel):
    kind = "assembly_test"
    max_kw = 20.0

    def upstream_assets(self) -> tuple[str, ...]:
        return tuple(self.params.get("cncs", ()))

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("press_force", "kN", 0, 80, "peak force of the last bearing press-fit"),
            F("test_torque", "N*m", 0, 10, "drag torque in the end-of-line run test"),
            F("test_speed", "rpm", 0, 3000, "run-test input speed"),
            F("leak_rate", "mbar*L/s", 0, 5, "leak test result of the last gearbox"),
            F("cycle_time", "s", 0, 300, "duration of the last cycle"),
            C("part_count", "parts", "gearboxes assembled and tested"),
            C("fail_count", "parts", "gearboxes failing a test"),
        ]

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        cycle = 60.0
        bore = upstream_bore(b, self.upstream_assets()) + 0.003 * b.noise()
        count, done = cycle_events(b.cumrun, cycle, c.get("cumrun", 0.0))
        c["cumrun"] = float(b.cumrun[-1])
        idx = np.flatnonzero(done)
        force_p = 30.0 + 1200.0 * (BORE_TARGET - 0.003 - bore[idx]) + 1.0 * b.rng.standard_normal(len(idx))
        torque_p = 2.0 + 0.02 * (force_p - 30) + 0.1 * b.rng.standard_normal(len(idx))
        leak_p = np.exp(-1.0 + 0.35 * b.rng.standard_normal(len(idx)))
        fail = (force_p < 15) | (force_p > 45) | (leak_p > 1.2)
        for j in np.flatnonzero(fail):
            i = idx[j]
            if force_p[j] > 45:
                b.defect(i, "press_fit_out_of_window", "bore_undersize", "press_force", force_p[j])
            elif force_p[j] < 15:
                b.defect(i, "press_fit_out_of_window", "bore_oversize", "press_force", force_p[j])
            else:
                b.defect(i, "leak", "seal_defect", "leak_rate", leak_p[j])
        out: dict[str, np.ndarray] = {}
        for name, vals, init in (
            ("press_force", force_p, 30.0),
            ("test_torque", torque_p, 2.0),
            ("leak_rate", leak_p, 0.4),
        ):
            full = np.zeros(b.n)
            full[idx] = vals
            out[name] = hold(done, full, c.get(name, init))
            c[name] = float(out[name][-1])
        step = np.zeros(b.n)
        step[idx[fail]] = 1
        fails = c.get("fails", 0.0) + np.cumsum(step)
        c["fails"] = float(fails[-1])
        ph = phase(b.cumrun, cycle)
        testing = b.running & (ph > 0.5)
        out["test_speed"] = np.where(testing, 1500 + 5 * b.noise(), 0.0)
        out["cycle_time"] = np.full(b.n, cycle)
        out["part_count"] = count
        out["fail_count"] = fails
        pressing = b.running & (ph < 0.2)
        out["power"] = np.where(b.powered, 1.5, 0.2) + 4.0 * pressing + 2.5 * testing + 0.05 * b.noise()
        return out


class MeasuringStation(AssetModel):
    kind = "measuring_station"
    max_kw = 5.0

    def upstream_assets(self) -> tuple[str, ...]:
        return tuple(self.params.get("cncs", ()))

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("measured_bore", "mm", 61.9, 62.1, "CMM: bore diameter of the last housing"),
            F("measured_flatness", "um", 0, 100, "CMM: flatness of the joint face"),
            F("room_temp", "degC", 10, 35, "measuring room temperature", faultable=True),
            C("part_count", "parts", "housings measured"),
            C("reject_count", "parts", "housings out of tolerance"),
        ]

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        cycle = 45.0
        day = 2 * np.pi * b.t / 86400
        room = 20.0 + 1.2 * np.sin(day - 2.0) + 0.05 * b.noise()
        bore = upstream_bore(b, self.upstream_assets())
        # the CMM compensates to 20 degC but residual error grows with the deviation
        meas = bore + 0.3 * (room - 20) * 11.5e-6 * 62 + 0.0008 * b.noise()
        count, done = cycle_events(b.cumrun, cycle, c.get("cumrun", 0.0))
        c["cumrun"] = float(b.cumrun[-1])
        held = hold(done, meas, c.get("meas", BORE_TARGET))
        c["meas"] = float(held[-1])
        flat = hold(done, 12 + 3 * b.noise(), c.get("flat", 12.0))
        c["flat"] = float(flat[-1])
        rej = done & (np.abs(meas - BORE_TARGET) > BORE_TOL)
        rejects = c.get("rej", 0.0) + np.cumsum(rej)
        c["rej"] = float(rejects[-1])
        return {
            "measured_bore": held,
            "measured_flatness": np.abs(flat),
            "room_temp": room,
            "part_count": count,
            "reject_count": rejects,
            "power": np.where(b.powered, 2.0, 0.3) + 0.02 * b.noise(),
        }
