"""Fixtures of the integration tests that several modules share: the plant served over OPC UA.

Helpers for building connectors and expected values live in ``opcua_support``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opcua_support import make_plant, served_plant

from plant_simulator.online import Publisher
from plant_simulator.opcua_server import SimOpcUaServer
from plant_simulator.plant import Plant


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Plant, SimOpcUaServer, Publisher]]:
    """The default plant (with two sensor faults) served over OPC UA, published at step STEP."""
    async with served_plant(make_plant()) as served:
        yield served
