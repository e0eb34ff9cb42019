"""Slitting line with surface inspection: knife wear and burr, guide-roll fouling and surface defects.

The camera counts scratches, holes and inclusions per coil and serves the latest coil image's verdict
(pass/defect and its main class); each detected defect is logged with its cause.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plant_simulator.codes import Reason
from plant_simulator.degradation import DAY, FailureMode
from plant_simulator.dsp import hold
from plant_simulator.lines.base import AssetModel, Block, cycle_events, phase
from plant_simulator.signals import C, F, I, SignalSpec

BURR_LIMIT = 25.0  # um
DEFECTS = ("scratch", "hole", "inclusion")
#: ``surface_class`` codes of the latest coil image: 0 no defect, then 1 + the index in DEFECTS.
SURFACE_CLASS_CODES = {"none": 0, **{name: i + 1 for i, name in enumerate(DEFECTS)}}


class SlittingLine(AssetModel):
    kind = "slitting_line"
    max_kw = 300.0
    COIL_M = 1560.0
    SPEED = 150.0  # m/min
    CHANGE_S = 300.0

    def own_signals(self) -> list[SignalSpec]:
        return [
            F("line_speed", "m/min", 0, 400, "line speed"),
            F("strip_tension", "kN", 0, 50, "recoiler tension"),
            F("burr_height", "um", 0, 80, "edge burr height (edge camera)"),
            F("recoiler_diameter", "mm", 0, 2000, "recoil diameter"),
            C("scratch_count", "defects", "scratches detected by surface inspection"),
            C("hole_count", "defects", "holes detected by surface inspection"),
            C("inclusion_count", "defects", "inclusions detected by surface inspection"),
            I("surface_verdict", "", 0, 1, "latest coil image's verdict: 0 pass, 1 defect"),
            I(
                "surface_class",
                "",
                0,
                3,
                "latest coil image's main defect: 0 none, 1 scratch, 2 hole, 3 inclusion",
            ),
            C("coil_count", "coils", "coils slit"),
            C("slit_length", "m", "strip length slit"),
        ]

    def failure_modes(self) -> list[FailureMode]:
        return [
            FailureMode(
                "slitter_knife",
                Reason.TOOL_BREAKAGE,
                category="tool",
                shape=1.5,
                life_weibull=(3.0, 7 * DAY),
                planned_life_s=5 * DAY,
                repair_hours=(1, 2),
                pm_detect=None,
                replace_minutes=(30, 60),
            ),
            FailureMode(
                "guide_roll_fouling",
                Reason.MATERIAL_JAM,
                category="consumable",
                onset_days=(1.0, 4.0),
                progression_days=(1.0, 2.0),
                shape=1.0,
                repair_hours=(0.5, 1.5),
                pm_detect=0.05,
            ),
        ]

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        cyc = self.COIL_M / self.SPEED * 60 + self.CHANGE_S
        ph = phase(b.cumrun, cyc)
        slitting = b.running & (ph >= self.CHANGE_S / cyc)
        speed = np.where(slitting, self.SPEED * (1 + 0.005 * b.noise()), 0.0)
        knife = b.severity["slitter_knife"]
        foul = b.severity["guide_roll_fouling"]
        burr = 5 + 30 * knife**1.5 + 0.8 * b.noise()
        coils, done = cycle_events(b.cumrun, cyc, c.get("cumrun", 0.0))
        c["cumrun"] = float(b.cumrun[-1])
        idx = np.flatnonzero(done)
        burr_held = hold(done, burr, c.get("burr", 5.0))
        c["burr"] = float(burr_held[-1])
        out: dict[str, np.ndarray] = {}
        per_coil = np.zeros((len(DEFECTS), len(idx)))
        lam = {"scratch": 0.05 + 1.5 * foul, "hole": np.full(b.n, 0.01), "inclusion": np.full(b.n, 0.03)}
        for name in DEFECTS:
            k = b.rng.poisson(lam[name][idx]) if len(idx) else np.zeros(0, int)
            per_coil[DEFECTS.index(name)] = k
            step = np.zeros(b.n)
            step[idx] = k
            for i, cnt in zip(idx, k, strict=True):
                for _ in range(int(cnt)):
                    if name == "scratch":
                        cause = "guide_roll_fouling" if foul[i] > 0.2 else "handling"
                    else:
                        cause = "cast_porosity" if name == "hole" else "cast_inclusion"
                    b.defect(i, f"surface_{name}", cause, f"{name}_count")
            tot = c.get(name, 0.0) + np.cumsum(step)
            c[name] = float(tot[-1])
            out[f"{name}_count"] = tot
        # the camera's verdict on each coil's image, held until the next coil: the most numerous class
        verdict = np.zeros(b.n)
        main = np.zeros(b.n)
        verdict[idx] = per_coil.sum(axis=0) > 0
        main[idx] = np.where(verdict[idx] > 0, per_coil.argmax(axis=0) + 1, 0)
        out["surface_verdict"] = hold(done, verdict, c.get("verdict", 0.0))
        out["surface_class"] = hold(done, main, c.get("class", 0.0))
        c["verdict"] = float(out["surface_verdict"][-1])
        c["class"] = float(out["surface_class"][-1])
        for i in idx:
            if burr[i] > BURR_LIMIT:
                b.defect(i, "edge_burr", "knife_wear", "burr_height", float(burr[i]))
        length = c.get("len", 0.0) + np.cumsum(speed / 60)
        c["len"] = float(length[-1])
        done_m = np.clip((ph - self.CHANGE_S / cyc) / (1 - self.CHANGE_S / cyc), 0, 1) * self.COIL_M
        diameter = np.sqrt(508**2 + 4 * done_m * 1.2 * 600 / np.pi / 600 * 1000 / 1000)
        out.update(
            {
                "line_speed": speed,
                "strip_tension": np.where(slitting, 12 + 0.3 * b.noise(), 0.0),
                "burr_height": burr_held,
                "recoiler_diameter": np.where(slitting, diameter, 508.0),
                "coil_count": coils,
                "slit_length": np.floor(length),
                "power": np.where(b.powered, 20.0, 1.0) + 0.9 * speed + 0.3 * b.noise(),
            }
        )
        return out
