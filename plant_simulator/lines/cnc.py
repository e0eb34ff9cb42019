"""CNC machining centre boring gearbox housings: cutting power, tool wear, spindle bearing, bore size.

Spindle load follows material removal and tool wear; the bore drifts with wear and thermal growth.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plant_simulator import vibration
from plant_simulator.codes import Reason, State
from plant_simulator.degradation import HOUR, FailureMode, tool_life_scale
from plant_simulator.dsp import hold, lag, rising
from plant_simulator.lines.base import AssetModel, Block, cycle_events, phase
from plant_simulator.schedule import StateParams
from plant_simulator.signals import C, F, SignalSpec

BORE_TARGET = 62.015  # mm, bearing seat for a 62 mm bearing outer ring
BORE_NEW_TOOL = 62.021  # a fresh tool is set to cut in the upper half of the tolerance
BORE_TOL = 0.015  # mm either side
TOOL_PLANNED_LIFE_S = 12 * HOUR  # tool-life management changes the boring bar after 12 h of cutting
TOOL_WEIBULL_K = 4.0


class CncMachiningCentre(AssetModel):
    kind = "cnc"
    max_kw = 30.0

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("spindle_speed", "rpm", 0, 6000, "spindle speed"),
            F("feed_rate", "mm/min", 0, 3000, "programmed feed while cutting"),
            F("spindle_load", "%", 0, 150, "spindle load as % of rated power (15 kW)"),
            F("spindle_temp", "degC", 0, 120, "spindle front bearing temperature (PT100)", faultable=True),
            F("coolant_temp", "degC", 0, 60, "coolant tank temperature", faultable=True),
            F("bore_diameter", "mm", 61.9, 62.1, "in-process probe: bore diameter of the last part"),
            F("surface_roughness", "um", 0, 6, "Ra of the last part's bore"),
            F("tool_life_used", "%", 0, 150, "tool-life management: cutting time used of the planned life"),
            F("cycle_time", "s", 0, 300, "duration of the last cycle"),
            C("part_count", "parts", "parts completed"),
            C("scrap_count", "parts", "parts scrapped (out of tolerance or broken tool)"),
            F("vib_rms", "mm/s", 0, 50, "spindle housing vibration velocity RMS"),
            F("vib_kurtosis", "1", 0, 40, "kurtosis of spindle vibration"),
            F("vib_crest", "1", 0, 20, "crest factor of spindle vibration"),
            F("vib_bpfo_energy", "(mm/s)^2", 0, 500, "envelope energy in the outer-race defect band (BPFO)"),
        ]

    def failure_modes(self) -> list[FailureMode]:
        p = self.params
        return [
            FailureMode(
                "tool_wear",
                Reason.TOOL_BREAKAGE,
                category="tool",
                shape=1.5,
                life_weibull=(
                    TOOL_WEIBULL_K,
                    tool_life_scale(p.get("tool_mean_life_h", 16.0) * HOUR, TOOL_WEIBULL_K),
                ),
                planned_life_s=TOOL_PLANNED_LIFE_S,
                repair_hours=(0.5, 1.5),
                pm_detect=None,
                replace_minutes=(3, 8),
            ),
            FailureMode(
                "spindle_bearing",
                Reason.SPINDLE_BEARING,
                onset_days=p.get("bearing_onset_days", (10.0, 40.0)),
                progression_days=p.get("bearing_progression_days", (4.0, 14.0)),
                shape=2.0,
                repair_hours=(8, 24),
                pm_detect=0.45,
            ),
        ]

    def state_params(self) -> StateParams:
        return StateParams(run_mean_s=2 * HOUR)

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        cycle = self.params.get("cycle_s", 95.0)
        run = b.running
        ph = phase(b.cumrun, cycle)
        cutting = run & (ph < 0.7)
        rapid = run & (ph >= 0.8)
        wear = b.severity["tool_wear"]
        brg = b.severity["spindle_bearing"]
        speed = np.where(cutting, 2400.0, np.where(rapid, 800.0, 0.0)) * (1 + 0.002 * b.noise())
        feed = np.where(cutting, 1200.0 * (1 + 0.01 * b.noise()), 0.0)
        mrr = 4.0 * 25.0 * feed / 60.0  # ap * ae * vf, mm^3/s
        kc = 1500.0 * (1 + 0.8 * wear)  # specific cutting force of grey iron, rising with flank wear
        p_cut = mrr * kc * 1e-6  # kW
        spinning = speed > 1
        p_spindle = p_cut / 0.9 + 1.2 * speed / 2400 + 0.8 * brg * spinning
        load = 100 * p_spindle / 15.0 + 0.5 * b.noise()
        aux = np.where(b.powered, 2.5, 0.3)
        power = p_spindle + aux + 0.5 * cutting + 0.05 * b.noise()
        spindle_temp = lag(22 + 2.2 * p_spindle + 12 * brg * spinning, 1200, c.get("spindle_temp", 22.0))
        c["spindle_temp"] = float(spindle_temp[-1])
        coolant = lag(21 + 0.35 * power, 1800, c.get("coolant_temp", 21.0))
        c["coolant_temp"] = float(coolant[-1])

        count, done = cycle_events(b.cumrun, cycle, c.get("cumrun", 0.0))
        idx = np.flatnonzero(done)
        wear_term = -0.022 * wear[idx]
        thermal_term = 0.0009 * (spindle_temp[idx] - 30.0)
        bore_parts = BORE_NEW_TOOL + wear_term + thermal_term + 0.0015 * b.rng.standard_normal(len(idx))
        ra_parts = 0.8 + 1.2 * wear[idx] ** 2 + 0.05 * b.rng.standard_normal(len(idx))
        bad = (np.abs(bore_parts - BORE_TARGET) > BORE_TOL) | (ra_parts > 1.8)
        for j in np.flatnonzero(bad):
            i = idx[j]
            if ra_parts[j] > 1.8 and abs(bore_parts[j] - BORE_TARGET) <= BORE_TOL:
                b.defect(i, "surface_roughness", "tool_wear", "surface_roughness", ra_parts[j])
            else:
                cause = "tool_wear" if abs(wear_term[j]) >= abs(thermal_term[j]) else "thermal_growth"
                b.defect(i, "bore_out_of_tolerance", cause, "bore_diameter", bore_parts[j])
        full_bore = np.zeros(b.n)
        full_bore[idx] = bore_parts
        full_ra = np.zeros(b.n)
        full_ra[idx] = ra_parts
        bore = hold(done, full_bore, c.get("bore", BORE_TARGET))
        ra = hold(done, full_ra, c.get("ra", 0.8))
        c["bore"], c["ra"] = float(bore[-1]), float(ra[-1])
        ct = np.zeros(b.n)
        ct[idx] = cycle * (1 + 0.01 * b.rng.standard_normal(len(idx)))
        cycle_time = hold(done, ct, c.get("cycle_time", cycle))
        c["cycle_time"] = float(cycle_time[-1])

        broke = b.reason == Reason.TOOL_BREAKAGE
        brk = rising((b.state == State.DOWN) & broke, c.get("broke", False))
        c["broke"] = bool(((b.state == State.DOWN) & broke)[-1])
        for i in brk:
            b.defect(i, "scrap", "tool_breakage", "scrap_count")
        scrap_step = np.zeros(b.n)
        scrap_step[idx[bad]] = 1
        scrap_step[brk] += 1
        scrap = c.get("scrap", 0.0) + np.cumsum(scrap_step)
        c["scrap"] = float(scrap[-1])
        c["cumrun"] = float(b.cumrun[-1])

        base = np.where(spinning, 0.4 + 1.1 * speed / 2400, 0.05)
        chatter = 0.6 * cutting * (1 + 2 * wear**2)
        rms, kurt, crest, band = vibration.features(b.rng, base, brg * spinning, chatter)
        return {
            "spindle_speed": speed,
            "feed_rate": feed,
            "spindle_load": np.maximum(load, 0),
            "spindle_temp": spindle_temp + 0.1 * b.noise(),
            "coolant_temp": coolant + 0.05 * b.noise(),
            "bore_diameter": bore,
            "surface_roughness": ra,
            "tool_life_used": 100 * b.age["tool_wear"] / TOOL_PLANNED_LIFE_S,
            "cycle_time": cycle_time,
            "part_count": count,
            "scrap_count": scrap,
            "vib_rms": rms,
            "vib_kurtosis": kurt,
            "vib_crest": crest,
            "vib_bpfo_energy": band,
            "power": power,
        }
