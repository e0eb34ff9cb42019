"""Continuous caster for copper strip, with its mould cooling-water pump and pump cavitation.

A clogging suction strainer lowers suction pressure (NPSH available); below NPSH required the pump cavitates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plant_simulator import vibration
from plant_simulator.codes import Reason
from plant_simulator.degradation import FailureMode
from plant_simulator.dsp import ar1, lag
from plant_simulator.lines.base import AssetModel, Block
from plant_simulator.schedule import StateParams
from plant_simulator.signals import C, F, SignalSpec

Q0 = 60.0  # m3/h design flow
HEAD = 45.0  # m
NPSH_R = 4.0  # m at design flow
P_VAP = 0.056  # bar, water at 35 degC
RHO_G = 1000 * 9.81
KG_PER_M = 0.65 * 0.015 * 8900  # strip 650 x 15 mm


def cavitation(suction_bar_abs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(NPSH available in m, cavitation intensity 0..1); cavitation grows once NPSHa < 1.5 * NPSHr."""
    npsha = (suction_bar_abs - P_VAP) * 1e5 / RHO_G
    return npsha, np.clip((1.5 * NPSH_R - npsha) / NPSH_R, 0.0, 1.0)


class ContinuousCaster(AssetModel):
    kind = "continuous_caster"
    max_kw = 400.0

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("casting_speed", "m/min", 0, 1.5, "strand withdrawal speed"),
            F(
                "strand_temp",
                "degC",
                0,
                1200,
                "strand surface temperature after the mould (pyrometer)",
                faultable=True,
            ),
            F("mould_water_in_temp", "degC", 0, 60, "mould cooling water inlet temperature", faultable=True),
            F(
                "mould_water_out_temp",
                "degC",
                0,
                80,
                "mould cooling water outlet temperature",
                faultable=True,
            ),
            F("cw_flow", "m3/h", 0, 100, "mould cooling water flow"),
            F(
                "cw_suction_pressure",
                "bar",
                0,
                3,
                "cooling-water pump suction pressure (absolute)",
                faultable=True,
            ),
            F("cw_discharge_pressure", "bar", 0, 10, "cooling-water pump discharge pressure (absolute)"),
            F("cw_pump_vib_rms", "mm/s", 0, 50, "cooling-water pump vibration velocity RMS"),
            F("cw_pump_vib_kurtosis", "1", 0, 40, "kurtosis of pump vibration"),
            F(
                "cw_pump_hf_energy",
                "g^2",
                0,
                50,
                "high-frequency (5-20 kHz) acceleration energy, cavitation band",
            ),
            F("withdrawal_force", "kN", 0, 100, "strand withdrawal force"),
            C("cast_length", "m", "strand length cast", scale=10.0),
            C("cast_weight", "kg", "copper cast"),
        ]

    def failure_modes(self) -> list[FailureMode]:
        p = self.params
        return [
            FailureMode(
                "cooling_water_pump_cavitation",
                Reason.PUMP_CAVITATION,
                onset_days=p.get("cavitation_onset_days", (5.0, 25.0)),
                progression_days=p.get("cavitation_progression_days", (4.0, 12.0)),
                shape=1.0,
                repair_hours=(3, 8),
                pm_detect=0.6,
            ),
        ]

    def state_params(self) -> StateParams:
        return StateParams(run_mean_s=10 * 3600)

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        d = b.severity["cooling_water_pump_cavitation"]
        casting = b.running
        pump_on = b.powered
        speed = np.where(casting, 0.38 * (1 + 0.01 * b.noise()), 0.0)
        suction = 1.3 - 0.9 * d**1.5 + 0.01 * b.noise()
        __, cav = cavitation(suction)
        cav = cav * pump_on
        flow = np.where(pump_on, Q0 * (1 - 0.2 * cav) * (1 + 0.01 * b.noise()), 0.0)
        head_bar = HEAD * (1 - 0.1 * cav) * RHO_G / 1e5
        discharge = np.where(pump_on, suction + head_bar + (0.02 + 0.3 * cav) * b.noise(), suction)
        kg_s = speed / 60 * KG_PER_M
        heat_kw = kg_s * 420.0  # latent + sensible heat extracted in the mould
        t_in = 30 + ar1(b.rng, b.n, 0.999, 0.5, c.get("t_in", 0.0))
        c["t_in"] = float(t_in[-1] - 30)
        dT = np.where(flow > 1, heat_kw / (4.18 * np.maximum(flow, 1) / 3.6), 0.0)
        t_out = lag(t_in + dT, 60, c.get("t_out", 33.0))
        c["t_out"] = float(t_out[-1])
        strand = np.where(casting, 780 + 20 * (1 - flow / Q0) * 5 + 3 * b.noise(), 300.0)
        base = np.where(pump_on, 1.5, 0.05)
        rms, kurt, _, _ = vibration.features(b.rng, base, 0.6 * cav, 3.0 * cav)
        hf = np.where(pump_on, 0.02 + 2.0 * cav**1.5, 0.0) * np.exp(0.1 * b.noise())
        length = c.get("len", 0.0) + np.cumsum(speed / 60)
        c["len"] = float(length[-1])
        weight = c.get("wt", 0.0) + np.cumsum(kg_s)
        c["wt"] = float(weight[-1])
        pump_kw = np.where(pump_on, RHO_G * flow / 3600 * HEAD / 0.7 / 1000, 0.0)
        power = pump_kw + np.where(casting, 45.0, np.where(pump_on, 8.0, 0.5)) + 0.2 * b.noise()
        return {
            "casting_speed": speed,
            "strand_temp": strand,
            "mould_water_in_temp": t_in,
            "mould_water_out_temp": t_out + 0.05 * b.noise(),
            "cw_flow": flow,
            "cw_suction_pressure": suction,
            "cw_discharge_pressure": discharge,
            "cw_pump_vib_rms": rms,
            "cw_pump_vib_kurtosis": kurt,
            "cw_pump_hf_energy": hf,
            "withdrawal_force": np.where(casting, 22 + 1.5 * b.noise(), 0.0),
            "cast_length": length,
            "cast_weight": np.floor(weight),
            "power": power,
        }
