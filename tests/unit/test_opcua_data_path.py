"""OPC UA connector without a server: what a DataValue becomes, error texts, the reconnect backoff."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import ua
from pydantic import ValidationError

from connectors.opcua.config import NodeRef, OpcUaSettings, OpcUaTag
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.security import Pki, endpoint_text
from connectors.opcua.session import OpcUaSession
from connectors.opcua.status_map import override_table
from connectors.opcua.supervisor import Supervisor
from shopfloor.backoff import Backoff
from shopfloor.batch import SampleBatch
from shopfloor.connector import SourceContext
from shopfloor.model import Event, Quality

URI = "urn:shopfloor:plant-simulator"
SIM_TIME = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
WALL = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)


class Sink:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def emit(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def emit_events(self, events: list[Event]) -> None:
        pass


def settings(**kw: object) -> OpcUaSettings:
    base: dict[str, object] = {
        "endpoint": "opc.tcp://127.0.0.1:1",
        "security_policy": "None",
        "security_mode": "None",
        "namespace_uri": URI,
    }
    return OpcUaSettings.model_validate(base | kw)


def connector(tmp_path: Path, **kw: object) -> tuple[OpcUaConnector, Sink]:
    tags = [OpcUaTag(asset="a/b", signal=f"s{i}", node_id=f"nsu={URI};s=a/b/s{i}") for i in range(4)]
    con = OpcUaConnector(SourceContext("plc", settings(**kw), tags, state_dir=tmp_path))
    sink = Sink()
    con._sink = sink
    return con, sink


def dv(
    value: object, code: int = 0, source: datetime | None = SIM_TIME, server: datetime | None = WALL
) -> ua.DataValue:
    variant = (
        ua.Variant(None, ua.VariantType.Null) if value is None else ua.Variant(value, ua.VariantType.Double)
    )
    return ua.DataValue(variant, ua.StatusCode(code), SourceTimestamp=source, ServerTimestamp=server)


def samples(sink: Sink) -> list[tuple[str, float, int, Quality]]:
    return [(s.signal, s.value, s.ts_ns, s.quality) for b in sink.batches for s in b.to_samples()]


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000


# -- item: a placeholder or an undated value never becomes Good data -------------------------------
def test_waiting_for_initial_data_and_missing_source_timestamps_are_bad(tmp_path: Path) -> None:
    con, sink = connector(tmp_path)
    con._on_values(
        con.items,
        [
            dv(12.5),  # a real value: good, at its source time
            dv(0.0, ua.StatusCodes.BadWaitingForInitialData, source=None),  # the placeholder
            dv(0.0, source=None),  # Good, but when was it measured?
            dv(3.0, source=datetime(1970, 1, 1, tzinfo=UTC)),  # an epoch source timestamp is none either
        ],
    )
    got = {name: (value, ts, q) for name, value, ts, q in samples(sink)}
    assert got["s0"] == (12.5, ns(SIM_TIME), Quality.GOOD)
    value, ts, q = got["s1"]
    assert q == Quality.BAD and math.isnan(value) and ts == ns(WALL)
    assert got["s2"][2] == Quality.BAD and got["s2"][1] == ns(WALL)
    assert got["s3"][2] == Quality.BAD and got["s3"][0] == 3.0


def test_the_placeholder_cannot_be_overridden_into_data(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="never a measurement"):
        settings(status_overrides={"BadWaitingForInitialData": "good"})
    with pytest.raises(ValueError, match="never a measurement"):
        override_table({"BadWaitingForInitialData": "uncertain"})
    # a server that never sends source timestamps can be accepted explicitly, at the server timestamp
    con, sink = connector(tmp_path, status_overrides={"BadInvalidTimestamp": "good"})
    con._on_values(con.items[:1], [dv(1.0, source=None)])
    ((_name, value, ts, q),) = samples(sink)
    assert (value, ts, q) == (1.0, ns(WALL), Quality.GOOD)


# -- item: error texts a user can read ---------------------------------------------------------------
def test_a_missing_namespace_lists_the_namespaces_the_server_has(tmp_path: Path) -> None:
    s = settings()
    session = OpcUaSession(s, Pki.for_source(s, "plc", tmp_path), logging.getLogger("test"))
    session.namespaces = ["http://opcfoundation.org/UA/", "urn:freeopcua:python:server", URI]
    with pytest.raises(KeyError) as err:
        session.resolve(NodeRef("urn:shopfloor:plant-simulater", "s", "x"))
    text = err.value.args[0]
    assert "(it has 3: 'http://opcfoundation.org/UA/', 'urn:freeopcua:python:server', " in text
    assert f"did you mean '{URI}'?" in text


def test_endpoints_are_named_as_security_policy_and_mode_are_written() -> None:
    none = ua.EndpointDescription(
        SecurityPolicyUri="http://opcfoundation.org/UA/SecurityPolicy#None",
        SecurityMode=ua.MessageSecurityMode.None_,
    )
    aes = ua.EndpointDescription(
        SecurityPolicyUri="http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep",
        SecurityMode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    assert endpoint_text(none) == "None/None"
    assert endpoint_text(aes) == "Aes128_Sha256_RsaOaep/SignAndEncrypt"


# -- the reconnect backoff is the kernel's -----------------------------------------------------------
async def test_reconnect_waits_come_from_the_kernel_backoff(tmp_path: Path) -> None:
    from shopfloor.health import HealthTracker

    s = settings(reconnect_initial_s=1.0, reconnect_max_s=8.0, connect_timeout_s=2.0)
    log = logging.getLogger("test.supervisor")
    from connectors.opcua.supervisor import Callbacks

    sup = Supervisor(
        "plc",
        s,
        [],
        [],
        tmp_path,
        HealthTracker("plc", log),
        log,
        Callbacks(lambda r: None, lambda r: None, lambda i, v: None, lambda e: None, dict),
    )
    assert isinstance(sup.backoff, Backoff)
    sup.backoff.rng = random.Random(7)
    expected = Backoff(1.0, 8.0, rng=random.Random(7))
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            sup._stop.set()

    sup._sleep = record  # type: ignore[method-assign]
    await asyncio.wait_for(sup.run(), 60)  # nothing listens on port 1: every attempt fails
    assert waits == [expected.next() for _ in range(6)]
    for wait, base in zip(waits, [1, 2, 4, 8, 8, 8], strict=True):
        assert base / 2 <= wait <= base  # equal jitter: never above the step, never below half
