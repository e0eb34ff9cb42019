"""Induction melting furnace, holding furnace and bell-type annealing furnace for copper.

Metal temperature follows power through a first-order thermal lag (C dT/dt = eta*P - h*(T - Ta)).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from plant_simulator.codes import Reason, State
from plant_simulator.dsp import ar1, hold, lag
from plant_simulator.lines.base import AssetModel, Block, cycle_events, phase
from plant_simulator.schedule import StateParams, Stop
from plant_simulator.signals import C, F, SignalSpec

T_AMB = 25.0


def lag_with_resets(x: np.ndarray, tau: float, y0: float, resets: np.ndarray, reset_to: float) -> np.ndarray:
    """First-order lag whose state jumps to ``reset_to`` at the steps in ``resets``."""
    out = np.empty(len(x))
    bounds = [0, *[int(r) for r in resets if r > 0], len(x)]
    y = y0
    for s, e in itertools.pairwise(bounds):
        if e <= s:
            continue
        if s > 0 or (len(resets) and resets[0] == 0):
            y = reset_to
        out[s:e] = lag(x[s:e], tau, y)
        y = float(out[e - 1])
    return out


FURNACE_STOPS = (
    Stop(State.IDLE, Reason.NONE, 3.0, 20 * 60),
    Stop(State.STARVED, Reason.NONE, 2.0, 15 * 60),
    Stop(State.BLOCKED, Reason.NONE, 1.0, 20 * 60),
    Stop(State.DOWN, Reason.ELECTRICAL_FAULT, 0.3, 60 * 60),
)


class MeltingFurnace(AssetModel):
    """Coreless induction furnace, 5 t copper heats: charge, melt at full power, superheat, tap."""

    kind = "induction_furnace"
    max_kw = 2200.0
    CYCLE = 2.5 * 3600
    H = 0.98  # kW/K losses
    ETA = 0.7
    TAU = 3000.0  # s = C / h

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("melt_temp", "degC", 0, 1400, "bath temperature (immersion thermocouple)", faultable=True),
            F(
                "coil_water_temp",
                "degC",
                0,
                80,
                "induction coil cooling-water return temperature",
                faultable=True,
            ),
            F("frequency", "Hz", 0, 500, "inverter output frequency"),
            F("charge_weight", "t", 0, 8, "weight of the current heat"),
            F("energy_per_tonne", "kWh/t", 0, 1000, "energy of the last tapped heat per tonne"),
            C("heat_count", "heats", "heats tapped"),
            C("tapped_weight", "t", "copper tapped to the holding furnace", scale=100.0),
        ]

    def state_params(self) -> StateParams:
        return StateParams(run_mean_s=8 * 3600, stops=FURNACE_STOPS)

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        ph = phase(b.cumrun, self.CYCLE)
        run = b.running
        p_set = np.select([ph < 0.15, ph < 0.75, ph < 0.9], [400.0, 1800.0, 600.0], 200.0)
        power = np.where(run, p_set, np.where(b.powered, 150.0, 0.0)) * (1 + 0.01 * b.noise())
        t_eq = T_AMB + self.ETA * power / self.H
        heats, tapped = cycle_events(b.cumrun, self.CYCLE, c.get("cumrun", 0.0))
        c["cumrun"] = float(b.cumrun[-1])
        # a new cold charge (mixed with the liquid heel) at the start of every heat
        temp = lag_with_resets(t_eq, self.TAU, c.get("temp", 900.0), np.flatnonzero(tapped), 650.0)
        c["temp"] = float(temp[-1])
        idx = np.flatnonzero(tapped)
        wt = 5.0 + 0.15 * b.rng.standard_normal(len(idx))
        full = np.zeros(b.n)
        full[idx] = wt
        charge = hold(tapped, full, c.get("charge", 5.0))
        c["charge"] = float(charge[-1])
        energy_in_heat = c.get("heat_kwh", 0.0) + np.cumsum(power) / 3600
        per_t = np.zeros(b.n)
        prev = 0.0
        for j, i in enumerate(idx):
            heat_kwh = energy_in_heat[i] - prev
            per_t[i] = heat_kwh / wt[j]
            prev = energy_in_heat[i]
        c["heat_kwh"] = float(energy_in_heat[-1] - prev)
        ept = hold(tapped, per_t, c.get("ept", 0.0))
        c["ept"] = float(ept[-1])
        tapped_w = c.get("tapped_w", 0.0) + np.cumsum(np.where(tapped, charge, 0.0))
        c["tapped_w"] = float(tapped_w[-1])
        coil_water = lag(28 + 0.012 * power, 300, c.get("cw", 28.0))
        c["cw"] = float(coil_water[-1])
        freq = np.where(power > 180, 250 + 10 * np.clip(temp, 0, 1300) / 1300, 0.0)
        return {
            "melt_temp": temp + 1.5 * b.noise(),
            "coil_water_temp": coil_water + 0.1 * b.noise(),
            "frequency": freq,
            "charge_weight": charge,
            "energy_per_tonne": ept,
            "heat_count": heats,
            "tapped_weight": tapped_w,
            "power": power,
        }


class HoldingFurnace(AssetModel):
    """Holding furnace keeping copper at 1150 degC for the caster; power from the energy balance."""

    kind = "holding_furnace"
    max_kw = 500.0
    H = 0.2
    ETA = 0.8
    C = 0.2 * 2400  # kJ/K -> tau 2400 s open loop

    def upstream_assets(self) -> tuple[str, ...]:
        m = self.params.get("melter")
        return (m,) if m else ()

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("metal_temp", "degC", 0, 1400, "metal temperature (sheathed thermocouple)", faultable=True),
            F("setpoint", "degC", 0, 1400, "metal temperature setpoint"),
            F("metal_level", "t", 0, 14, "metal in the furnace (load cells)"),
            F("roof_temp", "degC", 0, 1400, "roof temperature", faultable=True),
        ]

    def state_params(self) -> StateParams:
        return StateParams(run_mean_s=12 * 3600, stops=FURNACE_STOPS)

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        sp = np.where(b.powered, 1150.0, 900.0)
        dist = ar1(b.rng, b.n, 0.995, 4.0, c.get("dist", 0.0))
        c["dist"] = float(dist[-1])
        temp = lag(sp + dist, 600, c.get("temp", 1150.0))
        c["temp"] = float(temp[-1])
        dTdt = np.diff(temp, prepend=c.get("prev_temp", temp[0]))
        c["prev_temp"] = float(temp[-1])
        power = np.clip((self.C * dTdt + self.H * (temp - T_AMB)) / self.ETA, 0, self.max_kw)
        melter = b.upstream.get(self.params.get("melter", ""))
        inflow = np.zeros(b.n)
        if melter is not None:
            taps = np.diff(
                melter["tapped_weight"], prepend=c.get("melter_tapped", melter["tapped_weight"][0])
            )
            c["melter_tapped"] = float(melter["tapped_weight"][-1])
            inflow = taps
        outflow = np.where(b.running, 5.0 / 9000.0, 0.0)
        level = np.clip(c.get("level", 8.0) + np.cumsum(inflow - outflow), 1.0, 13.0)
        c["level"] = float(level[-1])
        return {
            "metal_temp": temp + 1.0 * b.noise(),
            "setpoint": sp,
            "metal_level": level + 0.02 * b.noise(),
            "roof_temp": temp + 60 + 2 * b.noise(),
            "power": power + 1.0 * b.noise(),
        }


class AnnealingFurnace(AssetModel):
    """Bell-type annealing of copper coils: ramp, soak at 550 degC, cool, under protective gas.

    The controller holds the *measured* zone temperature on the setpoint, so a drifting
    thermocouple makes the real temperature wrong while the reading looks perfect: coils come
    out under- or over-annealed (a process defect whose cause is a sensor fault).
    """

    kind = "annealing_furnace"
    max_kw = 600.0
    CYCLE = 10 * 3600
    SOAK = 550.0

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("zone_temp", "degC", 0, 800, "charge temperature (control thermocouple)", faultable=True),
            F("setpoint", "degC", 0, 800, "programmed temperature"),
            F("h2_content", "%", 0, 10, "hydrogen in the protective gas"),
            F("dew_point", "degC", -70, 20, "protective-gas dew point", faultable=True),
            C("batch_count", "batches", "annealing batches completed"),
        ]

    def state_params(self) -> StateParams:
        return StateParams(run_mean_s=16 * 3600, stops=FURNACE_STOPS)

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        ph = phase(b.cumrun, self.CYCLE)
        ramp = np.clip(ph / 0.3, 0, 1)
        sp = np.where(
            ph < 0.3,
            40 + (self.SOAK - 40) * ramp,
            np.where(ph < 0.75, self.SOAK, self.SOAK - (self.SOAK - 150) * (ph - 0.75) / 0.25),
        )
        sp = np.where(b.running, sp, 150.0)
        measured = lag(sp, 900, c.get("temp", 150.0))
        c["temp"] = float(measured[-1])
        actual = measured - b.drift("zone_temp")
        dTdt = np.diff(measured, prepend=c.get("prev", measured[0]))
        c["prev"] = float(measured[-1])
        power = np.clip((1500 * dTdt + 0.6 * (actual - T_AMB)) / 0.85, 0, self.max_kw)
        batches, done = cycle_events(b.cumrun, self.CYCLE, c.get("cumrun", 0.0))
        c["cumrun"] = float(b.cumrun[-1])
        soak = b.running & (ph >= 0.4) & (ph < 0.75)
        # accumulate the soak error of the batch in progress; judge it when the batch completes
        s_err, s_n = c.get("soak_err", 0.0), c.get("soak_n", 0.0)
        err = np.where(soak, actual - self.SOAK, 0.0)
        cum_err = s_err + np.cumsum(err)
        cum_n = s_n + np.cumsum(soak)
        last_err, last_n = 0.0, 0.0
        for i in np.flatnonzero(done):
            mean_err = (cum_err[i] - last_err) / max(cum_n[i] - last_n, 1)
            last_err, last_n = cum_err[i], cum_n[i]
            if mean_err < -20:
                b.defect(i, "under_annealed", "thermocouple_drift", "zone_temp", mean_err)
            elif mean_err > 20:
                b.defect(i, "over_annealed", "thermocouple_drift", "zone_temp", mean_err)
        c["soak_err"], c["soak_n"] = float(cum_err[-1] - last_err), float(cum_n[-1] - last_n)
        return {
            "zone_temp": measured + 0.8 * b.noise(),
            "setpoint": sp,
            "h2_content": 5 + 0.1 * b.noise(),
            "dew_point": -45 + 0.5 * b.noise(),
            "batch_count": batches,
            "power": power + np.where(b.powered, 15.0, 0.0),
        }
