"""Builds simulator asset models from a plant config's asset list, by ``kind``.

Lets ``--config`` simulate a subset or a re-arranged copy of the demo plant.
"""

from __future__ import annotations

from typing import Any

from plant_simulator.lines.assembly import AssemblyTestStation, MeasuringStation
from plant_simulator.lines.base import AssetModel
from plant_simulator.lines.caster import ContinuousCaster
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.lines.extrusion import ExtrusionPress
from plant_simulator.lines.furnace import AnnealingFurnace, HoldingFurnace, MeltingFurnace
from plant_simulator.lines.rolling import RollingMill
from plant_simulator.lines.slitting import SlittingLine
from plant_simulator.lines.welding import WeldingCell

SIMPLE = {
    c.kind: c
    for c in (
        CncMachiningCentre,
        WeldingCell,
        ContinuousCaster,
        ExtrusionPress,
        MeltingFurnace,
        AnnealingFurnace,
        SlittingLine,
    )
}


def assets_from_config(cfg: Any) -> list[AssetModel]:
    out: list[AssetModel] = []
    by_line: dict[str, list[Any]] = {}
    for a in cfg.assets:
        by_line.setdefault(a.path.rsplit("/", 1)[0], []).append(a)
    for a in cfg.assets:
        line = by_line[a.path.rsplit("/", 1)[0]]
        if a.kind in SIMPLE:
            out.append(SIMPLE[a.kind](a.path, a.description))
        elif a.kind in ("hot_rolling_mill", "cold_rolling_mill"):
            out.append(RollingMill(a.path, a.description, hot=a.kind == "hot_rolling_mill"))
        elif a.kind in ("assembly_test", "measuring_station"):
            cncs = tuple(x.path for x in line if x.kind == "cnc")
            cls = AssemblyTestStation if a.kind == "assembly_test" else MeasuringStation
            out.append(cls(a.path, a.description, cncs=cncs))
        elif a.kind == "holding_furnace":
            melters = [x.path for x in line if x.kind == "induction_furnace"]
            out.append(HoldingFurnace(a.path, a.description, **({"melter": melters[0]} if melters else {})))
    return out
