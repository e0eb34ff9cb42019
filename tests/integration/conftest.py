"""Fixtures of the integration tests that several modules share: the plant served over OPC UA
(``sim``) and over Modbus TCP (``modbus_plant``), one definition each.

Helpers for building connectors and expected values live in ``opcua_support`` and ``modbus_support``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from modbus_support import served_modbus_plant
from opcua_support import make_plant, served_plant

from plant_simulator.modbus_server import SimModbusServer
from plant_simulator.online import Publisher
from plant_simulator.opcua_server import SimOpcUaServer
from plant_simulator.plant import Plant
from plant_simulator.register_map import AssetMap


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Plant, SimOpcUaServer, Publisher]]:
    """The default plant (with two sensor faults) served over OPC UA, published at step STEP."""
    async with served_plant(make_plant()) as served:
        yield served


@pytest.fixture
async def modbus_plant() -> AsyncIterator[tuple[Plant, list[AssetMap], SimModbusServer]]:
    """The default plant (with two sensor faults) served over Modbus TCP, published at step STEP."""
    async with served_modbus_plant() as served:
        yield served
