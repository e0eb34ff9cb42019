"""The default Qijiang demo plant: a gearbox machining line and a copper/aluminium works.

Asset paths follow ISA-95 (site/area/line/asset); the order here is the unit-id order on Modbus.
"""

from __future__ import annotations

from plant_simulator.lines.assembly import AssemblyTestStation, MeasuringStation
from plant_simulator.lines.base import AssetModel
from plant_simulator.lines.caster import ContinuousCaster
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.lines.extrusion import ExtrusionPress
from plant_simulator.lines.furnace import AnnealingFurnace, HoldingFurnace, MeltingFurnace
from plant_simulator.lines.rolling import RollingMill
from plant_simulator.lines.slitting import SlittingLine
from plant_simulator.lines.welding import WeldingCell

GEARBOX = "qijiang/machining/gearbox-line"
CNCS = tuple(f"{GEARBOX}/cnc-{i}" for i in (1, 2, 3))


def qijiang_assets() -> list[AssetModel]:
    return [
        CncMachiningCentre(CNCS[0], "CNC machining centre 1: gearbox housing bearing bores (数控加工中心)"),
        CncMachiningCentre(
            CNCS[1], "CNC machining centre 2: gearbox housing bearing bores (数控加工中心)", cycle_s=92.0
        ),
        CncMachiningCentre(
            CNCS[2], "CNC machining centre 3: gearbox housing bearing bores (数控加工中心)", cycle_s=98.0
        ),
        WeldingCell(f"{GEARBOX}/weld-cell-1", "Robotic MAG welding cell for housings (机器人焊接工作站)"),
        AssemblyTestStation(
            f"{GEARBOX}/assembly-test-1", "Bearing press-fit, run and leak test (装配测试工位)", cncs=CNCS
        ),
        MeasuringStation(f"{GEARBOX}/measuring-1", "End-of-line CMM measuring station (检测工位)", cncs=CNCS),
        MeltingFurnace("qijiang/copper/casting/melting-furnace-1", "5 t induction melting furnace (熔炼炉)"),
        HoldingFurnace(
            "qijiang/copper/casting/holding-furnace-1",
            "Holding furnace at 1150 degC (保温炉)",
            melter="qijiang/copper/casting/melting-furnace-1",
        ),
        ContinuousCaster("qijiang/copper/casting/caster-1", "Horizontal continuous strip caster (连铸机)"),
        RollingMill("qijiang/copper/hot-rolling/mill-1", "Hot rolling mill, 12 -> 8 mm (热轧机)", hot=True),
        RollingMill(
            "qijiang/copper/cold-rolling/mill-1", "Cold rolling mill, 2.0 -> 1.2 mm (冷轧机)", hot=False
        ),
        AnnealingFurnace("qijiang/copper/annealing/furnace-1", "Bell-type annealing furnace (退火炉)"),
        SlittingLine("qijiang/copper/finishing/slitter-1", "Slitting line with surface inspection (分切线)"),
        ExtrusionPress("qijiang/aluminium/extrusion/press-1", "20 MN aluminium extrusion press (挤压机)"),
    ]
