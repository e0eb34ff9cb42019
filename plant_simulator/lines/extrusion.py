"""Aluminium extrusion press (AA6063 profiles) with its main hydraulic pump.

Ram pressure follows flow stress (Zener-Hollomon: billet temperature, strain rate) plus container friction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plant_simulator import vibration
from plant_simulator.codes import Reason
from plant_simulator.degradation import FailureMode
from plant_simulator.dsp import hold, lag
from plant_simulator.lines.base import AssetModel, Block
from plant_simulator.schedule import StateParams
from plant_simulator.signals import C, F, SignalSpec

# AA6063 hot-working constants (Sheppard): sigma = 1/alpha * asinh((Z/A)^(1/n)), Z = rate * exp(Q/RT)
ALPHA, N_EXP, Q_ACT, A_CONST = 0.04, 5.385, 141_550.0, 5.91e9
D_BILLET = 178.0  # mm
L_BILLET = 700.0  # mm
RATIO = 40.0  # extrusion ratio
A_CONTAINER = math.pi / 4 * D_BILLET**2  # mm^2
A_CYLINDER = 0.4e6  # mm^2 main cylinder
DEAD_S = 25.0  # billet load, upset and shear
V_SET = 8.0  # mm/s ram speed
TEAR_ABOVE = 580.0  # degC profile exit temperature: speed cracking


def flow_stress(temp_c: np.ndarray, rate: np.ndarray) -> np.ndarray:
    z = np.maximum(rate, 1e-4) * np.exp(Q_ACT / (8.314 * (temp_c + 273.15)))
    return np.arcsinh((z / A_CONST) ** (1 / N_EXP)) / ALPHA


def ram_pressure_mpa(temp_c: np.ndarray, ram_v: np.ndarray, remaining_mm: np.ndarray) -> np.ndarray:
    """Pressure on the billet: deformation (a + b ln R) plus container friction over the remaining billet."""
    rate = 6 * ram_v * math.log(RATIO) / D_BILLET
    s = flow_stress(temp_c, rate)
    return s * (0.8 + 1.5 * math.log(RATIO)) + 4 * (s / math.sqrt(3)) * remaining_mm / D_BILLET


class ExtrusionPress(AssetModel):
    kind = "extrusion_press"
    max_kw = 900.0

    def own_signals(self) -> list[SignalSpec]:
        return [
            F(
                "billet_temp",
                "degC",
                0,
                600,
                "billet temperature leaving the induction heater",
                faultable=True,
            ),
            F("container_temp", "degC", 0, 600, "container temperature", faultable=True),
            F("ram_speed", "mm/s", 0, 30, "ram speed"),
            F("ram_position", "mm", 0, 800, "ram stroke position"),
            F("ram_pressure", "bar", 0, 350, "main cylinder pressure"),
            F("extrusion_force", "MN", 0, 25, "extrusion force"),
            F(
                "profile_exit_temp",
                "degC",
                0,
                700,
                "profile temperature at the die exit (pyrometer)",
                faultable=True,
            ),
            F("pump_pressure", "bar", 0, 350, "main pump outlet pressure"),
            F("pump_case_drain_flow", "L/min", 0, 200, "main pump case drain (internal leakage) flow"),
            F("hyd_oil_temp", "degC", 0, 90, "hydraulic oil tank temperature", faultable=True),
            F("pump_vib_rms", "mm/s", 0, 50, "main pump vibration velocity RMS"),
            F("pump_vib_kurtosis", "1", 0, 40, "kurtosis of main pump vibration"),
            F("pump_vib_crest", "1", 0, 20, "crest factor of main pump vibration"),
            F("cycle_time", "s", 0, 600, "duration of the last billet cycle"),
            C("billet_count", "billets", "billets extruded"),
            C("profile_length", "m", "profile length extruded"),
            C("scrap_count", "billets", "billets scrapped for surface tearing"),
        ]

    def failure_modes(self) -> list[FailureMode]:
        p = self.params
        return [
            FailureMode(
                "hydraulic_pump",
                Reason.HYDRAULIC_PUMP,
                onset_days=p.get("pump_onset_days", (10.0, 40.0)),
                progression_days=p.get("pump_progression_days", (5.0, 20.0)),
                shape=1.5,
                repair_hours=(6, 16),
                pm_detect=0.55,
            ),
        ]

    def state_params(self) -> StateParams:
        return StateParams(run_mean_s=3 * 3600)

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        d = b.severity["hydraulic_pump"]
        eta_v = 0.97 - 0.25 * d  # volumetric efficiency of the axial-piston pump
        v_ext = V_SET * np.minimum(1.0, 1.1 * eta_v / 0.97)
        cycle_len = DEAD_S + L_BILLET / v_ext
        prog = c.get("prog", 0.0) + np.cumsum(np.where(b.running, 1.0 / cycle_len, 0.0))
        c_prev = c.get("prog", 0.0)
        c["prog"] = float(prog[-1])
        billets = np.floor(prog)
        prev = np.concatenate(([math.floor(c_prev)], billets[:-1]))
        new_billet = billets > prev
        ph = prog - billets
        dead_frac = DEAD_S / cycle_len
        extruding = b.running & (ph >= dead_frac)
        pos = np.where(extruding, (ph - dead_frac) / (1 - dead_frac) * L_BILLET, 0.0)
        idx = np.flatnonzero(new_billet)
        hot = b.rng.random(len(idx)) < 0.01
        bt_new = 480 + 8 * b.rng.standard_normal(len(idx)) + 45 * hot
        full = np.zeros(b.n)
        full[idx] = bt_new
        billet_temp = hold(new_billet, full, c.get("bt", 480.0))
        c["bt"] = float(billet_temp[-1])
        ram_v = np.where(extruding, v_ext * (1 + 0.01 * b.noise()), 0.0)
        p_mpa = np.where(
            extruding, ram_pressure_mpa(billet_temp, np.maximum(ram_v, 0.1), L_BILLET - pos), 0.0
        )
        force = p_mpa * A_CONTAINER / 1e6
        ram_bar = p_mpa * A_CONTAINER / A_CYLINDER * 10 + np.where(b.powered, 3.0, 0.0)
        exit_temp = np.where(extruding, billet_temp + 0.2 * p_mpa + 2 * b.noise(), 0.0)
        # judge each billet when it completes, on its hottest exit temperature
        maxes = np.maximum.reduceat(exit_temp, np.concatenate(([0], idx)).astype(np.intp))
        maxes[0] = max(maxes[0], c.get("peak", 0.0))
        scrap_step = np.zeros(b.n)
        for j, i in enumerate(idx):
            if maxes[j] > TEAR_ABOVE:
                b.defect(i, "surface_tearing", "billet_overheat", "profile_exit_temp", float(maxes[j]))
                scrap_step[i] = 1
        c["peak"] = float(maxes[-1]) if len(idx) else float(maxes[0])
        scrap = c.get("scrap", 0.0) + np.cumsum(scrap_step)
        c["scrap"] = float(scrap[-1])
        q_lpm = ram_v * A_CYLINDER / 1e6 * 60  # L/min delivered to the cylinder
        pump_p = np.where(b.powered, ram_bar + 5 + np.where(extruding, 0.0, 15.0), 0.0)
        drain = np.where(b.powered, 600 * (0.03 + 0.25 * d) * np.maximum(pump_p, 20) / 250, 0.0)
        drain = drain * (1 + 0.03 * b.noise())
        hyd_kw = pump_p * (q_lpm + drain) / 600
        oil = lag(40 + 0.08 * hyd_kw + 20 * d * b.powered, 2400, c.get("oil", 45.0))
        c["oil"] = float(oil[-1])
        base = np.where(b.powered, 2.0, 0.05)
        rms, kurt, crest, _ = vibration.features(b.rng, base, 0.7 * d * b.powered)
        container = 430 + 2 * b.noise()
        length = c.get("len", 0.0) + np.cumsum(ram_v * RATIO / 1000)
        c["len"] = float(length[-1])
        ct = np.zeros(b.n)
        ct[idx] = cycle_len[idx]
        cycle_time = hold(new_billet, ct, c.get("ct", float(cycle_len[0])))
        c["ct"] = float(cycle_time[-1])
        power = hyd_kw / 0.85 + np.where(b.powered, 25 + 40 + 150, 3.0) + 1.0 * b.noise()
        return {
            "billet_temp": billet_temp,
            "container_temp": container,
            "ram_speed": ram_v,
            "ram_position": pos,
            "ram_pressure": ram_bar,
            "extrusion_force": force,
            "profile_exit_temp": exit_temp,
            "pump_pressure": pump_p,
            "pump_case_drain_flow": drain,
            "hyd_oil_temp": oil + 0.1 * b.noise(),
            "pump_vib_rms": rms,
            "pump_vib_kurtosis": kurt,
            "pump_vib_crest": crest,
            "cycle_time": cycle_time,
            "billet_count": billets,
            "profile_length": np.floor(length),
            "scrap_count": scrap,
            "power": power,
        }
