"""Robotic MAG welding cell: arc current and voltage, wire feed, shielding gas and porosity.

Arc current follows wire feed; a running-out gas supply lowers gas flow and causes porosity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plant_simulator.codes import Reason
from plant_simulator.degradation import HOUR, FailureMode
from plant_simulator.dsp import hold
from plant_simulator.lines.base import AssetModel, Block, cycle_events, phase
from plant_simulator.signals import C, F, SignalSpec

GAS_NOMINAL = 15.0  # L/min
POROSITY_BELOW = 11.0  # L/min of shielding gas


class WeldingCell(AssetModel):
    kind = "welding_robot"
    max_kw = 40.0

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("weld_current", "A", 0, 400, "welding current"),
            F("weld_voltage", "V", 0, 45, "arc voltage"),
            F("wire_feed", "m/min", 0, 20, "wire feed speed"),
            F("gas_flow", "L/min", 0, 30, "shielding gas flow (Ar/CO2)", faultable=True),
            F("torch_temp", "degC", 0, 150, "water-cooled torch temperature", faultable=True),
            F("cycle_time", "s", 0, 600, "duration of the last cycle"),
            C("part_count", "parts", "housings welded"),
            C("scrap_count", "parts", "housings rejected for weld defects"),
        ]

    def failure_modes(self) -> list[FailureMode]:
        # The gas bundle lasts ~2.7-3.5 running days; the operator changes it after 2.5 days.
        return [
            FailureMode(
                "gas_supply",
                Reason.GAS_SUPPLY_EMPTY,
                category="consumable",
                onset_days=(2.4, 3.0),
                progression_days=(0.3, 0.5),
                shape=1.0,
                repair_hours=(0.3, 1.0),
                pm_detect=None,
                planned_life_s=2.5 * 24 * HOUR,
                replace_minutes=(10, 20),
            ),
        ]

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        cycle = 150.0
        ph = phase(b.cumrun, cycle)
        arc = b.running & (ph < 0.6)
        gas_sev = b.severity["gas_supply"]
        wire = np.where(arc, 9.5 * (1 + 0.01 * b.noise()), 0.0)
        current = np.where(arc, 24.0 * wire + 3.0 * b.noise(), 0.0)
        voltage = np.where(arc, 14.0 + 0.05 * current + 0.3 * b.noise(), 0.0)
        gas_nom = GAS_NOMINAL * (1 - gas_sev)
        gas = np.where(arc, gas_nom + 0.2 * b.noise(), 0.0)
        torch = 25 + np.where(arc, 30.0, 0.0)
        torch = torch + 0.5 * b.noise()
        count, done = cycle_events(b.cumrun, cycle, c.get("cumrun", 0.0))
        c["cumrun"] = float(b.cumrun[-1])
        idx = np.flatnonzero(done)
        porous = gas_nom[idx] < POROSITY_BELOW
        for i in idx[porous]:
            b.defect(i, "weld_porosity", "shielding_gas_low", "gas_flow", gas_nom[i])
        step = np.zeros(b.n)
        step[idx[porous]] = 1
        scrap = c.get("scrap", 0.0) + np.cumsum(step)
        c["scrap"] = float(scrap[-1])
        ct = np.zeros(b.n)
        ct[idx] = cycle + 2.0 * b.rng.standard_normal(len(idx))
        cycle_time = hold(done, ct, c.get("ct", cycle))
        c["ct"] = float(cycle_time[-1])
        power = current * voltage / 1000 / 0.85 + np.where(b.powered, 3.0, 0.2) + 0.05 * b.noise()
        return {
            "weld_current": current,
            "weld_voltage": voltage,
            "wire_feed": wire,
            "gas_flow": gas,
            "torch_temp": torch,
            "cycle_time": cycle_time,
            "part_count": count,
            "scrap_count": scrap,
            "power": power,
        }
