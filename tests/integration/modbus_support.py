"""The virtual plant served over Modbus TCP for the integration tests, built in one place.

The default plant with two sensor faults on cnc-1 (a dropout and a stuck sensor) around step STEP,
published at STEP, on a free loopback port; stopped when the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from plant_simulator.clock import SimClock
from plant_simulator.modbus_server import SimModbusServer
from plant_simulator.online import OnlinePlant, Publisher
from plant_simulator.plant import Plant, default_plant
from plant_simulator.register_map import AssetMap, build_register_map
from plant_simulator.sensor_faults import SensorFault
from shopfloor.testing.servers import free_port

CNC = "qijiang/machining/gearbox-line/cnc-1"
STEP = 1500


def make_modbus_plant() -> Plant:
    plant = default_plant(seed=21)
    plant.inject_sensor_fault(CNC, SensorFault("dropout", "spindle_temp", STEP - 10, STEP + 10))
    plant.inject_sensor_fault(CNC, SensorFault("stuck", "coolant_temp", STEP - 300, STEP + 10))
    return plant


@contextlib.asynccontextmanager
async def served_modbus_plant(
    plant: Plant | None = None,
) -> AsyncIterator[tuple[Plant, list[AssetMap], SimModbusServer]]:
    plant = plant or make_modbus_plant()
    maps = build_register_map({p: plant.signals(p) for p in plant.assets})
    srv = SimModbusServer(maps, "127.0.0.1", free_port())
    await srv.start()
    try:
        await Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1.0), [srv]).publish_step(STEP)
        yield plant, maps, srv
    finally:
        await srv.stop()
