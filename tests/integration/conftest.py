"""Fixtures of the integration tests that several modules share: the plant served over OPC UA
(``sim``) and over Modbus TCP (``modbus_plant``), one definition each.

Helpers for building connectors and expected values live in ``opcua_support`` and ``modbus_support``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modbus_support import served_modbus_plant
from opcua_support import make_plant, served_plant

from historian.base import Store
from historian.factory import open_store
from plant_simulator.modbus_server import SimModbusServer
from plant_simulator.online import Publisher
from plant_simulator.opcua_server import SimOpcUaServer
from plant_simulator.plant import Plant
from plant_simulator.register_map import AssetMap
from shopfloor.config.schema import HistorianConfig
from shopfloor.testing.servers import InfluxDB1Server


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


@pytest.fixture(params=["sqlite", "influxdb-v1"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: an SQLite file of this test's own, or a fresh database on the
    session's real influxd."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'h.db'}"
    server: InfluxDB1Server = request.getfixturevalue("influxd")
    return f"influxdb-v1+{server.base_url}/{request.getfixturevalue('influx_db')}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The store at ``store_url``, opened; closed in teardown."""
    s = open_store(HistorianConfig(url=store_url))
    await s.open()
    yield s
    await s.close()
