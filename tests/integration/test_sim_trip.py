"""A forced trip through the simulator's OPC UA method: the asset goes down with its alarm on, then recovers.

This is how a test or a demo user makes a fault happen now, on a plant served over real protocols.
"""

from __future__ import annotations

import pytest
from asyncua import Client, ua

from plant_simulator.clock import SimClock
from plant_simulator.codes import Reason, State
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.online import OnlinePlant, Publisher
from plant_simulator.opcua_server import NAMESPACE_URI, SimOpcUaServer
from plant_simulator.plant import Plant
from shopfloor.testing.servers import free_port

CNC = "works/machining/line-1/cnc-1"


async def test_trip_forces_down_and_alarm_for_its_duration_over_opcua() -> None:
    plant = Plant([CncMachiningCentre(CNC, "")], seed=1, sensor_fault_interval_days=0)
    online = OnlinePlant(plant)
    clock = SimClock(plant.start_ns, 1.0)
    step = {"now": 100}

    def trip(path: str, seconds: float) -> None:
        online.trip(path, step["now"] + int(seconds))

    srv = SimOpcUaServer({p: plant.signals(p) for p in plant.assets}, "127.0.0.1", free_port(), on_trip=trip)
    pub = Publisher(online, clock, [srv])
    await srv.start()
    try:
        await pub.publish_step(100)
        async with Client(srv.endpoint, timeout=10) as c:
            ns = await c.get_namespace_index(NAMESPACE_URI)
            obj = await c.nodes.objects.get_child([f"{ns}:{p}" for p in CNC.split("/")])

            async def read(name: str) -> object:
                return await (await obj.get_child([f"{ns}:{name}"])).read_value()

            with pytest.raises(ua.UaStatusCodeError):  # out of range: nothing changes
                await obj.call_method(f"{ns}:Trip", ua.Variant(0.0, ua.VariantType.Double))
            assert await obj.call_method(f"{ns}:Trip", ua.Variant(60.0, ua.VariantType.Double)) is True
            await pub.publish_step(101)
            assert await read("state") == State.DOWN
            assert await read("down_reason") == Reason.ELECTRICAL_FAULT
            assert await read("alarm") is True
            await pub.publish_step(161)  # the trip lasted 60 simulated seconds
            i = plant.signal_index(CNC, "state")
            assert await read("state") == int(plant.block(0).values[CNC][i, 161])
    finally:
        await srv.stop()
