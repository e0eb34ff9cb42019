"""Shared pieces of the OPC UA connector tests: the simulated plant, a recording sink, tag
builders, the expected model value and a fixture serving the plant over real OPC UA."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from asyncua import ua

from connectors.opcua.config import OpcUaSettings, OpcUaTag
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.security import ensure_client_certificate
from plant_simulator.clock import SimClock
from plant_simulator.online import OnlinePlant, Publisher
from plant_simulator.opcua_server import (
    NAMESPACE_URI,
    SimOpcUaServer,
    node_id_string,
    variant_type,
)
from plant_simulator.plant import Plant, default_plant
from plant_simulator.sensor_faults import SensorFault
from shopfloor.batch import SampleBatch
from shopfloor.connector import SourceContext
from shopfloor.model import Event
from shopfloor.testing.servers import free_port

CNC = "qijiang/machining/gearbox-line/cnc-1"
MILL = "qijiang/copper/hot-rolling/mill-1"
STEP = 2000
NS = 1_000_000_000


def make_plant() -> Plant:
    plant = default_plant(seed=5)
    plant.inject_sensor_fault(CNC, SensorFault("dropout", "spindle_temp", STEP - 5, STEP + 200))
    plant.inject_sensor_fault(CNC, SensorFault("stuck", "coolant_temp", STEP - 500, STEP + 200))
    return plant


class ListSink:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []
        self.events: list[Event] = []

    def emit(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def emit_events(self, events: list[Event]) -> None:
        self.events.extend(events)

    def rows(self) -> int:
        return sum(len(b) for b in self.batches)

    def latest(self, since: int = 0) -> dict[tuple[str, str], tuple[int, float, int]]:
        """(asset, signal) -> (ts, value, quality) of the newest sample, from batch ``since`` on."""
        out: dict[tuple[str, str], tuple[int, float, int]] = {}
        for b in self.batches[since:]:
            for s in b.to_samples():
                key = (s.asset, s.signal)
                if key not in out or s.ts_ns >= out[key][0]:
                    out[key] = (s.ts_ns, s.value, int(s.quality))
        return out


def all_tags(plant: Plant, assets: list[str] | None = None) -> list[OpcUaTag]:
    return [
        OpcUaTag(
            asset=a,
            signal=s.name,
            node_id=f"nsu={NAMESPACE_URI};s={node_id_string(a, s.name)}",
            namespace_uri=NAMESPACE_URI,
        )
        for a in assets or plant.assets
        for s in plant.signals(a)
    ]


def expected(plant: Plant, asset: str, signal: str, step: int) -> float:
    """The value the simulator serves, converted as its OPC UA variable type does."""
    spec = next(s for s in plant.signals(asset) if s.name == signal)
    v = float(plant.block(0).values[asset][plant.signal_index(asset, signal), step])
    vt = variant_type(spec)
    if vt == ua.VariantType.Double:
        return v
    if vt == ua.VariantType.Boolean:
        return float(v > 0.5)
    return float(int(v)) if v == v else 0.0


async def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def connector(tags: list[OpcUaTag], state: Path, **settings: object) -> OpcUaConnector:
    base: dict[str, object] = {
        "namespace_uri": NAMESPACE_URI,
        "security_policy": "None",
        "security_mode": "None",
        "reconnect_initial_s": 0.2,
        "reconnect_max_s": 1.0,
    }
    s = OpcUaSettings.model_validate(base | settings)
    return OpcUaConnector(SourceContext("sim-opcua", s, tags, state_dir=state))


async def trust_connector(con: OpcUaConnector, server_trust_dir: Path) -> Path:
    """Trust ``con``'s client certificate on a secured simulator: the step an operator does by hand.

    The connector creates its certificate on its first connect (logging the path); here it is created
    ahead and copied into the server's trust directory (``--opcua-trust-dir``, default
    ``<opcua-cert-dir>/trusted``). Returns the copy.
    """
    cert, _key = await ensure_client_certificate(con.supervisor.pki, logging.getLogger("tests.opcua"))
    server_trust_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(cert, server_trust_dir / f"{con.ctx.name}.der"))


@contextlib.asynccontextmanager
async def served_plant(plant: Plant) -> AsyncIterator[tuple[Plant, SimOpcUaServer, Publisher]]:
    """``plant`` served over OPC UA on a free loopback port, published at step STEP; stopped after."""
    srv = SimOpcUaServer({p: plant.signals(p) for p in plant.assets}, "127.0.0.1", free_port())
    await srv.start()
    pub = Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1.0), [srv])
    try:
        await pub.publish_step(STEP)
        yield plant, srv, pub
    finally:
        await srv.stop()
