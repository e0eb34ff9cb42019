"""Fixtures of the integration tests that several modules share: the plant served over OPC UA.

Helpers for building connectors and expected values live in ``opcua_support``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opcua_support import STEP, make_plant

from plant_simulator.clock import SimClock
from plant_simulator.online import OnlinePlant, Publisher
from plant_simulator.opcua_server import SimOpcUaServer
from plant_simulator.plant import Plant
from shopfloor.testing.servers import free_port


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Plant, SimOpcUaServer, Publisher]]:
    """The default plant (with two sensor faults) served over OPC UA, published at step STEP."""
    plant = make_plant()
    srv = SimOpcUaServer({p: plant.signals(p) for p in plant.assets}, "127.0.0.1", free_port())
    await srv.start()
    pub = Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1.0), [srv])
    try:
        await pub.publish_step(STEP)
        yield plant, srv, pub
    finally:
        await srv.stop()
