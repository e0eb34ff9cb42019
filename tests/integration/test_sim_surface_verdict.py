"""The simulated slitting line serves its latest coil image's verdict over OPC UA, as a line camera's PLC does."""

from __future__ import annotations

from asyncua import Client
from opcua_support import STEP, served_plant

from plant_simulator.lines.slitting import SlittingLine
from plant_simulator.opcua_server import NAMESPACE_URI
from plant_simulator.plant import Plant

SLITTER = "works/copper/finishing/slitter-1"


def plant_with_a_defect_at_step() -> Plant:
    """The first seed whose latest coil before STEP had a defect (a pass would prove less)."""
    for seed in range(200):
        plant = Plant([SlittingLine(SLITTER, "")], seed=seed, sensor_fault_interval_days=0)
        if plant.block(0).values[SLITTER][plant.signal_index(SLITTER, "surface_verdict"), STEP] == 1:
            return Plant([SlittingLine(SLITTER, "")], seed=seed, sensor_fault_interval_days=0)
    raise AssertionError("no seed below 200 has a defective coil before the published step")


async def test_the_latest_verdict_and_class_are_read_over_opcua() -> None:
    async with served_plant(plant_with_a_defect_at_step()) as (plant, srv, _):
        values = plant.block(0).values[SLITTER]
        async with Client(srv.endpoint, timeout=10) as c:
            ns = await c.get_namespace_index(NAMESPACE_URI)
            slitter = await c.nodes.objects.get_child(
                [f"{ns}:works", f"{ns}:copper", f"{ns}:finishing", f"{ns}:slitter-1"]
            )
            got = {}
            for name in ("surface_verdict", "surface_class"):
                dv = await (await slitter.get_child([f"{ns}:{name}"])).read_data_value()
                assert dv.StatusCode.is_good()
                got[name] = dv.Value.Value
    assert got["surface_verdict"] == 1
    assert got["surface_class"] == values[plant.signal_index(SLITTER, "surface_class"), STEP]
    assert got["surface_class"] in (1, 2, 3)
