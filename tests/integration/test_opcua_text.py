"""OPC UA String variables (a third-party-style server of its own: string NodeIds under its own
namespace URI) are stored as text when the signal is declared `type: text`, end to end through the
connector, the bus, the writer and SQLite; mapped to a numeric signal they are Bad with a hint, never
a silent NaN; `opcua browse` writes them into its snippet as text signals."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from asyncua import Server, ua

from connectors.opcua import browse
from connectors.opcua.config import OpcUaSettings, OpcUaTag
from connectors.opcua.connector import OpcUaConnector
from historian.sqlite_store import SQLiteStore
from historian.writer import HistorianWriter
from shopfloor.bus import Bus
from shopfloor.config.schema import HistorianConfig
from shopfloor.connector import SourceContext
from shopfloor.model import Quality, Signal, SignalType
from shopfloor.testing.servers import free_port

URI = "urn:example:third-party-press"
ASSET = "plant/press/line/press-1"
ALARMS = ["Hydraulic oil temperature high", "润滑油压力低", "OK"]


@pytest.fixture
async def press() -> AsyncIterator[tuple[str, Server, ua.NodeId]]:
    port = free_port()
    srv = Server()
    await srv.init()
    srv.set_endpoint(f"opc.tcp://127.0.0.1:{port}/press")
    srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await srv.register_namespace(URI)
    obj = await srv.nodes.objects.add_object(ua.NodeId("Press1", idx), "Press1")
    alarm = await obj.add_variable(
        ua.NodeId("Press1.AlarmText", idx), "AlarmText", ALARMS[0], ua.VariantType.String
    )
    await obj.add_variable(ua.NodeId("Press1.Pressure", idx), "Pressure", 212.5, ua.VariantType.Double)
    await srv.start()
    try:
        yield f"opc.tcp://127.0.0.1:{port}/press", srv, alarm.nodeid
    finally:
        await srv.stop()


def connector(endpoint: str, state: Path, alarm_type: SignalType) -> OpcUaConnector:
    settings = OpcUaSettings.model_validate(
        {"endpoint": endpoint, "namespace_uri": URI, "security_policy": "None", "security_mode": "None"}
    )
    tags = [
        OpcUaTag(asset=ASSET, signal="alarm_text", node_id=f"nsu={URI};s=Press1.AlarmText"),
        OpcUaTag(asset=ASSET, signal="pressure", node_id=f"nsu={URI};s=Press1.Pressure"),
    ]
    signals = {
        (ASSET, "alarm_text"): Signal("alarm_text", type=alarm_type),
        (ASSET, "pressure"): Signal("pressure", "bar"),
    }
    return OpcUaConnector(SourceContext("press", settings, tags, signals=signals, state_dir=state))


async def until(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_a_string_variable_is_stored_as_text(
    press: tuple[str, Server, ua.NodeId], tmp_path: Path
) -> None:
    endpoint, srv, alarm = press
    cfg = HistorianConfig.model_validate(
        {
            "url": f"sqlite:///{tmp_path}/h.db",
            "spool": {"dir": str(tmp_path / "spool")},
            "health_interval_s": 0,
        }
    )
    writer = HistorianWriter(SQLiteStore(tmp_path / "h.db"), cfg)
    await writer.start()
    bus = Bus()
    bus.attach("historian", writer.submit, writer.submit_events)
    con = connector(endpoint, tmp_path / "state", SignalType.TEXT)
    await con.start(bus)
    try:
        await until(lambda: con.health().samples >= 2)
        for text in ALARMS[1:]:
            now = datetime.now(UTC)  # a careful server stamps its values
            await srv.write_attribute_value(
                alarm,
                ua.DataValue(
                    ua.Variant(text, ua.VariantType.String), SourceTimestamp=now, ServerTimestamp=now
                ),
            )
            await asyncio.sleep(0.6)  # more than one publishing interval: each change is its own value
        await until(lambda: con.health().samples >= 4)
    finally:
        await con.stop()
    assert await writer.flush(20)
    await writer.stop()
    store = SQLiteStore(tmp_path / "h.db")
    frame = await store.query_raw(ASSET, "alarm_text", 0, 2**62)
    latest = {s.signal: s for s in await store.latest(ASSET)}
    await store.close()
    assert frame.text is not None and frame.text.tolist() == ALARMS  # every change, as text
    assert frame.quality is not None and set(frame.quality.tolist()) == {Quality.GOOD}
    assert latest["alarm_text"].value == "OK" and latest["pressure"].value == 212.5
    assert "unsupported_type" not in con.health().errors


async def test_a_string_mapped_to_a_number_is_bad_and_says_how_to_keep_it(
    press: tuple[str, Server, ua.NodeId], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint, _, _ = press
    con = connector(endpoint, tmp_path / "state", SignalType.FLOAT)
    got = []

    class Sink:
        def emit(self, batch):  # type: ignore[no-untyped-def]
            got.extend(batch.to_samples())

        def emit_events(self, events):  # type: ignore[no-untyped-def]
            pass

    await con.start(Sink())
    try:
        await until(lambda: any(s.signal == "alarm_text" for s in got))
    finally:
        await con.stop()
    (sample,) = [s for s in got if s.signal == "alarm_text"][:1]
    assert sample.quality == Quality.BAD and sample.value != sample.value  # NaN, Bad
    assert con.health().errors["unsupported_type"] >= 1
    assert "declare the signal with `type: text`" in con.health().last_error


async def test_browse_writes_string_variables_as_text_signals(press: tuple[str, Server, ua.NodeId]) -> None:
    endpoint, _, _ = press
    parser = __import__("argparse").ArgumentParser()
    browse.add_arguments(parser)
    args = parser.parse_args(
        [
            endpoint,
            "--security-policy",
            "None",
            "--security-mode",
            "None",
            "--format",
            "yaml",
            "--pattern",
            "**Press1**",
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    assert await browse.browse(args, out, err) == 0
    snippet = yaml.safe_load(out.getvalue().split(browse.SNIPPET_MARK, 1)[1])
    signals = {s["name"]: s for a in snippet["assets"] for s in a["signals"]}
    assert signals["AlarmText"]["type"] == "text" and signals["Pressure"]["type"] == "float"
