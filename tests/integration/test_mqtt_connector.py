"""The MQTT source connector against a real Mosquitto: third-party JSON publishers and a Sparkplug B edge node
(uns.sparkplug.EdgeNode on an aiomqtt client) go through the connector, acquisition, the bus and the historian
writer into a real SQLite historian, and come out exactly (values, timestamps, quality); data before a birth
asks for a rebirth, DDEATH and NDEATH (the will) make signals Bad, and a lost broker records a gap.

Every broker is started by the test and stopped by PID in its teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import aiomqtt
import paho.mqtt.client as paho
import pytest
import yaml
from mqtt_support import make_tls_files, password_file_line, start_mosquitto
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from connectors.mqtt.config import MqttSourceSettings, MqttTag
from connectors.mqtt.connector import MqttConnector
from historian.sqlite_store import SQLiteStore
from shopfloor.app.acquisition import Acquisition, load_plant
from shopfloor.app.pipeline import live_stream
from shopfloor.batch import SampleBatch
from shopfloor.connector import SourceContext
from shopfloor.model import Event, EventKind, Quality, Signal, now_ns
from shopfloor.plugins import load
from shopfloor.service import ServiceRunner
from shopfloor.testing.connector_contract import ConnectorContract
from shopfloor.testing.servers import MosquittoServer, free_port
from uns.sparkplug import DeviceSpec, EdgeConfig, EdgeNode, SparkplugMessage

SOURCE = "line3-mqtt"
LINE = "qijiang/copper/line3"
P1, P2, P3 = f"{LINE}/press-1", f"{LINE}/press-2", f"{LINE}/press-3"
EDGE_A, EDGE_B = "G/line3/press-a", "G/line3/press-b"  # the edge's own naming: devices line3:press-a, -b
Row = tuple[str, str, int, float | None, int, str | None]


@pytest.fixture
def mqtt_registered(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """``connector: mqtt`` resolvable: by the project's own entry point once pyproject.toml declares it,
    until then by an entry point of a throwaway distribution on sys.path (plugins load only by entry point)."""
    if any(ep.name == "mqtt" for ep in entry_points(group="shopfloor.connectors")):
        return
    site = tmp_path_factory.mktemp("plugin-site")
    dist = site / "shopfloor_mqtt_source_test-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: shopfloor-mqtt-source-test\nVersion: 0.0.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[shopfloor.connectors]\nmqtt = connectors.mqtt.connector:MqttConnector\n"
    )
    monkeypatch.syspath_prepend(str(site))
    assert str(site) in sys.path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "mosquitto")
    try:
        yield server
    finally:
        server.stop()


async def until(pred: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Bounded wait for a condition (a bound, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


class Edge:
    """A third-party Sparkplug B edge node: EdgeNode's messages on an MQTT 5 client with its NDEATH as will,
    answering rebirth requests (NCMD) as they come."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.node = EdgeNode(EdgeConfig("G", "E", qos=1))
        self.commands = 0
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        will = self.node.will()
        self.client = aiomqtt.Client(
            "127.0.0.1", self.port, identifier="third-party-edge-E", protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(will.topic, will.payload, will.qos, will.retain), timeout=5,
        )  # fmt: skip
        await self.client.__aenter__()
        await self.client.subscribe("spBv1.0/G/NCMD/E", qos=1)
        self._task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in self.client.messages:
                self.commands += 1
                await self.send(self.node.on_command(m.topic.value, bytes(m.payload)))

    async def send(self, messages: Sequence[SparkplugMessage]) -> None:
        for m in messages:
            await self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)

    async def die(self) -> None:
        """Leave with DISCONNECT reason 4: the broker publishes the will (the NDEATH)."""
        self.client._client.disconnect(
            reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
        )
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.__aexit__(None, None, None), 5)


@contextlib.asynccontextmanager
async def third_party(port: int) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", port, identifier="third-party-json", timeout=5) as client:
        yield client


class Recording:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.events: list[Event] = []

    async def on_batch(self, batch: SampleBatch) -> None:
        self.rows += rows_of(batch)

    async def on_events(self, events: Sequence[Event]) -> None:
        self.events += list(events)

    def of(self, asset: str, signal: str) -> list[Row]:
        return [r for r in self.rows if r[:2] == (asset, signal)]


def rows_of(batch: SampleBatch) -> list[Row]:
    out = []
    text = batch.text
    for i in range(len(batch)):
        k = batch.keys[int(batch.series[i])]
        v = float(batch.value[i])
        t = None if text is None else text[i]
        out.append(
            (k.asset, k.signal, int(batch.ts[i]), None if math.isnan(v) else v, int(batch.quality[i]), t)
        )
    return out


def plant_yaml(tmp_path: Path, port: int) -> Path:
    doc: dict[str, Any] = {
        "site": "qijiang",
        "assets": [
            {"path": P1, "signals": [{"name": "temp", "unit": "degC"}, {"name": "force", "unit": "kN"},
                                     {"name": "recipe", "type": "text"}]},
            {"path": P2, "signals": [{"name": "temp", "unit": "degC"}, {"name": "speed", "unit": "1/min"}]},
            {"path": P3, "signals": [{"name": "temp", "unit": "degC"}]},
        ],
        "sources": [
            {
                "name": SOURCE,
                "connector": "mqtt",
                "settings": {"url": f"mqtt://127.0.0.1:{port}", "client_id": "shopfloor-line3", "flush_ms": 20},
                "tags": [
                    {"topic": "factory/line3/press/+/temperature", "asset": P1, "signal": "temp"},
                    {"topic": "factory/line3/press/1/state", "asset": P1, "signal": "force", "value": "$.force",
                     "timestamp": "$.ts", "timestamp_unit": "ms", "quality": "$.q", "scale": 0.001,
                     "quality_map": {"OK": "good", "WARN": "uncertain", "FAIL": "bad"}},
                    {"topic": "factory/line3/press/1/state", "asset": P1, "signal": "recipe",
                     "value": "/recipe", "timestamp": "/ts"},
                    {"sparkplug": {"group": "G", "edge_node": "E", "device": "line3:press-a", "metric": "temp"},
                     "asset": P2, "signal": "temp"},
                    {"sparkplug": {"group": "G", "edge_node": "E", "device": "line3:press-a", "metric": "speed"},
                     "asset": P2, "signal": "speed", "scale": 60},
                    {"sparkplug": {"group": "G", "edge_node": "E", "device": "line3:press-b", "metric": "temp"},
                     "asset": P3, "signal": "temp"},
                ],
            }
        ],
        "historian": {"url": f"sqlite:///{tmp_path / 'h.db'}", "spool": {"dir": str(tmp_path / "spool")},
                      "health_interval_s": 0},
    }  # fmt: skip
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def stored(db: Path) -> list[Row]:
    store = SQLiteStore(db)
    out: list[Row] = []
    try:
        for key in await store.list_series():
            if not key.asset.startswith(LINE):
                continue
            f = await store.query_raw(key.asset, key.signal, 0, 2**62)
            assert f.quality is not None
            text = f.text if f.text is not None else [None] * len(f)
            for t, v, q, s in zip(f.ts.tolist(), f.value.tolist(), f.quality.tolist(), list(text)):
                out.append((key.asset, key.signal, t, None if math.isnan(v) else v, q, s))
    finally:
        await store.close()
    return sorted(out, key=repr)


def batch(rows: Sequence[tuple[str, str, int, float, int]]) -> SampleBatch:
    keys = sorted({(r[0], r[1]) for r in rows})
    return SampleBatch.from_columns(keys, [keys.index((r[0], r[1])) for r in rows], [r[2] for r in rows],
                                    [r[3] for r in rows], [r[4] for r in rows])  # fmt: skip


def test_the_entry_point_loads_the_connector(mqtt_registered: None) -> None:
    cls = load("mqtt")
    assert cls is MqttConnector and cls.spec.name == "mqtt"


async def test_json_and_sparkplug_through_acquisition_into_sqlite(
    mqtt_registered: None, broker: MosquittoServer, tmp_path: Path
) -> None:
    t0_ms = now_ns() // 1_000_000 - 60_000  # a minute ago, in whole milliseconds
    ns = 1_000_000
    edge = Edge(broker.port)
    await edge.connect()
    try:
        # the edge was born before the connector came up: the connector has never seen its birth
        await edge.send(edge.node.birth([
            DeviceSpec(EDGE_A, (Signal("temp"), Signal("speed"), Signal("other"))),
            DeviceSpec(EDGE_B, (Signal("temp"),)),
        ]))  # fmt: skip
        cfg, sources = load_plant(plant_yaml(tmp_path, broker.port))
        writer, bus = live_stream(cfg)
        rec = Recording()
        bus.subscribe("test", rec)
        acquisition = Acquisition(cfg, sources, bus, state_dir=tmp_path / "state", health_interval_s=0)
        runner = ServiceRunner([writer, bus, acquisition], status_every_s=0, handle_signals=False)
        await runner.start_all()
        try:
            await until(lambda: acquisition.health()[SOURCE].connected, "the connector's subscription")

            # Sparkplug: data before a birth is dropped and a rebirth requested; the rebirth carries it
            await edge.send(edge.node.data(batch([(EDGE_A, "temp", (t0_ms + 10) * ns, 20.5, 0),
                                                  (EDGE_A, "speed", (t0_ms + 10) * ns, 3.0, 0)])))  # fmt: skip
            await until(lambda: len(rec.of(P2, "speed")) == 1, "the rebirth's values")
            assert edge.commands == 1
            await edge.send(edge.node.data(batch([
                (EDGE_A, "temp", (t0_ms + 20) * ns + 123, 21.0, 0),  # sub-millisecond: shopfloor.ns
                (EDGE_A, "temp", (t0_ms + 21) * ns, 21.5, 1),
                (EDGE_A, "temp", (t0_ms + 22) * ns, math.nan, 2),
                (EDGE_A, "speed", (t0_ms + 20) * ns, 4.0, 0),
                (EDGE_A, "other", (t0_ms + 20) * ns, 9.0, 0),  # the edge's, mapped to nothing
                (EDGE_B, "temp", (t0_ms + 20) * ns, 31.0, 0),
            ])))  # fmt: skip
            await until(lambda: len(rec.of(P3, "temp")) == 1 and len(rec.of(P2, "temp")) == 4, "batch 2")

            # JSON: a bare number (receive time), objects with value/timestamp/quality paths, refusals
            before_json = now_ns()
            async with third_party(broker.port) as c:
                await c.publish("factory/line3/press/1/temperature", b"812.5", qos=1)
                for i, (force, q, recipe) in enumerate(
                    [(125000, "OK", "R-7"), (126500, "WARN", "R-7"), (1, "FAIL", "R-8"), (2, "???", "R-9")]
                ):
                    body = f'{{"force": {force}, "ts": {t0_ms + 100 + i}, "q": "{q}", "recipe": "{recipe}"}}'
                    await c.publish("factory/line3/press/1/state", body.encode(), qos=1)
                await c.publish("factory/line3/press/1/state", b"not json", qos=1)
                await c.publish("factory/line3/press/2/temperature", b'"hot"', qos=1)
                await c.publish("factory/line3/press/2/temperature", b"799.25", qos=1)
            await until(lambda: len(rec.of(P1, "temp")) == 2 and len(rec.of(P1, "recipe")) == 4, "the JSON")
            after_json = now_ns()

            # deaths: DDEATH of press-a, then the node's will (NDEATH) for press-b
            before_ddeath = now_ns()
            await edge.send(edge.node.device_death(EDGE_A))
            await until(lambda: len(rec.of(P2, "speed")) == 3, "the DDEATH's Bad rows")
            before_ndeath = now_ns()
            await edge.die()
            await until(lambda: len(rec.of(P3, "temp")) == 2, "the NDEATH's Bad row")
            after = now_ns()
            health = acquisition.health()[SOURCE]
        finally:
            await runner.stop_all()
    finally:
        await edge.close()

    got = await stored(tmp_path / "h.db")
    # rows stamped by the connector (receive time, deaths): in their bounds, then compared exactly
    by_receipt = [r for r in got if r[:2] == (P1, "temp")]
    assert [r[3:] for r in by_receipt] == [(812.5, 0, None), (799.25, 0, None)]
    assert all(before_json <= r[2] <= after_json for r in by_receipt) and by_receipt[0][2] < by_receipt[1][2]
    deaths = [r for r in got if r[2] >= before_ddeath]  # t0 is a minute before
    assert sorted((r[0], r[1]) for r in deaths) == [(P2, "speed"), (P2, "temp"), (P3, "temp")]
    for r in deaths:
        assert r[3:] == (None, Quality.BAD, None), r
        assert (before_ndeath if r[0] == P3 else before_ddeath) <= r[2] <= after, r
    ms = ns
    expect = sorted(
        [
            *by_receipt,
            *deaths,
            (P2, "temp", (t0_ms + 10) * ms, 20.5, 0, None),  # from the rebirth (DBIRTH repeats last values)
            (P2, "speed", (t0_ms + 10) * ms, 180.0, 0, None),  # scaled x60
            (P2, "temp", (t0_ms + 20) * ms + 123, 21.0, 0, None),
            (P2, "temp", (t0_ms + 21) * ms, 21.5, 1, None),
            (P2, "temp", (t0_ms + 22) * ms, None, 2, None),
            (P2, "speed", (t0_ms + 20) * ms, 240.0, 0, None),
            (P3, "temp", (t0_ms + 20) * ms, 31.0, 0, None),
            (P1, "force", (t0_ms + 100) * ms, 125.0, 0, None),
            (P1, "force", (t0_ms + 101) * ms, 126.5, 1, None),
            (P1, "force", (t0_ms + 102) * ms, None, 2, None),  # FAIL: Bad, no value
            (P1, "recipe", (t0_ms + 100) * ms, None, 0, "R-7"),
            (P1, "recipe", (t0_ms + 101) * ms, None, 0, "R-7"),
            (P1, "recipe", (t0_ms + 102) * ms, None, 0, "R-8"),
            (P1, "recipe", (t0_ms + 103) * ms, None, 0, "R-9"),  # its quality '???' refused force only
        ],
        key=repr,
    )
    assert got == expect
    assert health.errors.get("refused.quality") == 1 and health.errors.get("refused.json") == 1
    assert health.errors.get("refused.value") == 1 and health.errors.get("refused.node-not-born") == 1
    assert [e.kind for e in rec.events] == []  # no broker outage: no gap


def connector(port: int, tags: list[dict[str, Any]], **settings: Any) -> MqttConnector:
    s = MqttSourceSettings.model_validate({"url": f"mqtt://127.0.0.1:{port}", "flush_ms": 20, **settings})
    signals = {(t["asset"], t["signal"]): Signal(t["signal"]) for t in tags}
    ctx = SourceContext(SOURCE, s, [MqttTag.model_validate(t) for t in tags], signals=signals)
    return MqttConnector(ctx)


class ListSink:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.events: list[Event] = []

    def emit(self, batch: SampleBatch) -> None:
        self.rows += rows_of(batch)

    def emit_events(self, events: Sequence[Event]) -> None:
        self.events += list(events)


async def test_a_lost_broker_makes_sparkplug_signals_bad_and_records_a_gap(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    tags: list[dict[str, Any]] = [
        {"topic": "plant/+/t", "asset": P1, "signal": "temp"},
        {"sparkplug": {"group": "G", "edge_node": "E", "device": "line3:press-a", "metric": "temp"},
         "asset": P2, "signal": "temp"},
    ]  # fmt: skip
    c = connector(broker.port, tags, retry={"initial_ms": 50, "max_ms": 200})
    sink = ListSink()
    await c.start(sink)
    edge = Edge(broker.port)
    try:
        await until(lambda: c.health().connected, "connected")
        await edge.connect()
        await edge.send(edge.node.birth([DeviceSpec(EDGE_A, (Signal("temp"),))]))
        t = now_ns() // 1_000_000 * 1_000_000
        await edge.send(edge.node.data(batch([(EDGE_A, "temp", t, 5.0, 0)])))
        await until(lambda: len(sink.rows) == 1, "the Sparkplug sample")
        await edge.close()
        lost = now_ns()
        broker.kill()
        await until(lambda: not c.health().connected, "the connection loss")
        await until(lambda: len(sink.rows) == 2, "the Bad row of a lost broker")
        broker.restart()
        await until(lambda: c.health().connected and len(sink.events) == 2, "the reconnect and its gaps")
        async with third_party(broker.port) as p:
            await p.publish("plant/x/t", b"1.5", qos=1)
        await until(lambda: len(sink.rows) == 3, "JSON after the reconnect")
    finally:
        await edge.close()
        await c.stop()
    assert sink.rows[0] == (P2, "temp", t, 5.0, 0, None)
    bad = sink.rows[1]
    assert bad[:2] == (P2, "temp") and bad[2] >= lost and bad[3:] == (None, 2, None)
    assert sink.rows[2][:2] == (P1, "temp") and sink.rows[2][3:] == (1.5, 0, None)
    assert sorted(e.asset for e in sink.events) == [P1, P2]  # one GAP per asset of the source
    for gap in sink.events:
        assert gap.kind is EventKind.GAP and gap.key == SOURCE and gap.code == "connection_lost"
        assert gap.ts_ns >= lost and gap.data["restored_at_ns"] > gap.ts_ns
    assert c.health().gaps == 1 and c.health().reconnects == 1


async def test_a_persistent_session_keeps_what_was_published_while_away_and_acked_never_comes_back(
    broker: MosquittoServer,
) -> None:
    tags: list[dict[str, Any]] = [
        {"topic": "plant/+/t", "asset": P1, "signal": "temp", "value": "v", "timestamp": "ts"}
    ]
    t0 = now_ns() // 1_000_000 - 10_000
    settings = {"client_id": "line3-persistent", "session_expiry_s": 300}
    first, sink = connector(broker.port, tags, **settings), ListSink()
    await first.start(sink)
    try:
        await until(lambda: first.health().connected, "connected")
        async with third_party(broker.port) as p:
            await p.publish("plant/a/t", f'{{"v": 1, "ts": {t0}}}'.encode(), qos=1)
            await until(lambda: len(sink.rows) == 1 and first.describe()["acked"] == 1, "received and acked")
    finally:
        await first.stop()
    async with third_party(broker.port) as p:  # while no connector runs: kept in its session
        for i in range(1, 4):
            await p.publish("plant/a/t", f'{{"v": {i + 1}, "ts": {t0 + i}}}'.encode(), qos=1)
    second = connector(broker.port, tags, **settings)
    await second.start(sink)
    try:
        await until(lambda: len(sink.rows) == 4 and second.describe()["acked"] == 3, "the session's messages")
    finally:
        await second.stop()
    assert [r[2:5] for r in sink.rows] == [((t0 + i) * 1_000_000, float(i + 1), 0) for i in range(4)]
    assert sink.events == [] and second.describe()["received"] == 3  # the acknowledged one did not come again


CHILD = """
import asyncio, sys
from connectors.mqtt.config import MqttSourceSettings, MqttTag
from connectors.mqtt.connector import MqttConnector
from shopfloor.connector import SourceContext

class Sink:
    def emit(self, batch): print("emitted", len(batch), flush=True)
    def emit_events(self, events): pass

async def main():
    s = MqttSourceSettings(url=sys.argv[1], client_id="line3-killed", session_expiry_s=300, flush_ms=60000)
    tag = MqttTag(asset=sys.argv[2], signal="temp", topic="plant/+/t", value="v", timestamp="ts")
    c = MqttConnector(SourceContext("line3-mqtt", s, [tag]))
    await c.start(Sink())
    seen = -1
    for _ in range(3000):  # bounded: the test kills it long before
        if c.health().connected and seen < 0:
            print("subscribed", flush=True)
            seen = 0
        if c.received != seen and seen >= 0:
            seen = c.received
            print("received", seen, c.acked, flush=True)
        await asyncio.sleep(0.01)

asyncio.run(main())
"""


async def test_messages_a_killed_connector_had_not_emitted_come_again_from_its_session(
    broker: MosquittoServer,
) -> None:
    """SIGKILL after receiving, before emitting (flush_ms 60 s): nothing was acknowledged, so the broker
    sends it all again to the next connector with the same client id."""
    root = Path(__file__).resolve().parents[2]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, broker.url, P1, cwd=root, stdout=asyncio.subprocess.PIPE
    )
    t0 = now_ns() // 1_000_000 - 10_000
    try:
        assert proc.stdout is not None
        lines: list[str] = []

        async def line() -> str:
            text = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()  # type: ignore[union-attr]
            lines.append(text)
            return text

        assert await line() == "subscribed", lines
        async with third_party(broker.port) as p:
            for i in range(3):
                await p.publish("plant/a/t", f'{{"v": {i}, "ts": {t0 + i}}}'.encode(), qos=1)
        while await line() != "received 3 0":  # received, none acknowledged
            assert lines[-1].startswith("received"), lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # by PID: this test's own child
        await asyncio.wait_for(proc.wait(), 10)
    assert "emitted" not in " ".join(lines)
    again = connector(broker.port, [{"topic": "plant/+/t", "asset": P1, "signal": "temp", "value": "v",
                                     "timestamp": "ts"}], client_id="line3-killed", session_expiry_s=300)  # fmt: skip
    sink = ListSink()
    await again.start(sink)
    try:
        await until(lambda: len(sink.rows) == 3 and again.describe()["acked"] == 3, "the redelivery")
    finally:
        await again.stop()
    assert [r[2:5] for r in sink.rows] == [((t0 + i) * 1_000_000, float(i), 0) for i in range(3)]


async def test_password_and_client_certificate_and_no_secret_in_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    password = "line3 reads, 9 horses"
    (tmp_path / "passwords").write_text(password_file_line("line3", password))
    tls = make_tls_files(tmp_path / "pki", client_name="line3-cert")
    tls_port = free_port()
    extra = (
        f"password_file {tmp_path / 'passwords'}\nlistener {tls_port} 127.0.0.1\ncafile {tls['ca']}\n"
        f"certfile {tls['server_cert']}\nkeyfile {tls['server_key']}\nrequire_certificate true\n"
        "use_identity_as_username true\n"
    )
    server = start_mosquitto(tmp_path / "mosquitto", extra=extra)
    monkeypatch.setenv("SHOPFLOOR_TEST_SOURCE_PASSWORD", password)
    (tmp_path / "wrong").write_text("not it\n")
    caplog.set_level(logging.DEBUG)
    tags: list[dict[str, Any]] = [{"topic": "plant/+/t", "asset": P1, "signal": "temp"}]
    tls_settings = {
        "ca_file": str(tls["ca"]),
        "cert_file": str(tls["client_cert"]),
        "key_file": str(tls["client_key"]),
    }
    sinks = [ListSink(), ListSink(), ListSink()]
    conns = [
        connector(server.port, tags, username="line3", password_env="SHOPFLOOR_TEST_SOURCE_PASSWORD",
                  client_id="by-password"),
        connector(tls_port, tags, url=f"mqtts://127.0.0.1:{tls_port}", tls=tls_settings, client_id="by-cert"),
        connector(server.port, tags, username="line3", password_file=str(tmp_path / "wrong"),
                  retry={"initial_ms": 50, "max_ms": 100}, client_id="wrong-password"),
    ]  # fmt: skip
    try:
        for c, s in zip(conns, sinks):
            await c.start(s)
        await until(lambda: conns[0].health().connected and conns[1].health().connected, "both connected")
        await until(lambda: conns[2].health().errors.get("connect", 0) >= 2, "the refusal, retried")
        async with third_party(server.port) as p:
            await p.publish("plant/a/t", b"7.25", qos=1)
        await until(lambda: len(sinks[0].rows) == 1 and len(sinks[1].rows) == 1, "the sample on both")
    finally:
        for c in conns:
            await c.stop()
        server.stop()
    assert [r[3] for r in sinks[0].rows + sinks[1].rows] == [7.25, 7.25] and sinks[2].rows == []
    assert not conns[2].health().connected
    assert re.search(r"Not authori[sz]ed|Bad user name or password", conns[2].health().last_error)
    log_text = server.log_tail(100_000)
    assert "u'line3'" in log_text and "u'line3-cert'" in log_text  # by password, by certificate
    assert password not in caplog.text and "not it" not in caplog.text


async def test_the_sparkplug_host_state_is_online_while_connected_and_offline_after(
    broker: MosquittoServer,
) -> None:
    tags: list[dict[str, Any]] = [
        {"sparkplug": {"group": "G", "edge_node": "E", "metric": "uptime"}, "asset": P1, "signal": "temp"}
    ]
    c = connector(broker.port, tags, sparkplug_host_id="shopfloor-line3")

    async def state() -> dict[str, Any]:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="state-reader", timeout=5) as r:
            await r.subscribe("spBv1.0/STATE/shopfloor-line3", qos=1)
            async with asyncio.timeout(5):
                async for m in r.messages:
                    assert m.retain
                    return dict(json.loads(bytes(m.payload)))
        raise AssertionError("no retained STATE")

    await c.start(ListSink())
    try:
        await until(lambda: c.health().connected, "connected")
        online = await state()
    finally:
        await c.stop()
    offline = await state()
    assert online["online"] is True and offline["online"] is False
    assert offline["timestamp"] == online["timestamp"]  # Sparkplug 3.0: the death repeats the birth's time


CONTRACT = """
site: demo
assets:
  - path: demo/area/line/press-1
    signals: [{name: temp, unit: degC}]
sources:
  - name: devices
    connector: mqtt
    settings: {url: "mqtt://127.0.0.1:{port}", flush_ms: 20}
    tags:
      - {asset: demo/area/line/press-1, signal: temp, topic: devices/press-1, value: $.v, timestamp: $.ts}
"""


class TestMqttContract(ConnectorContract):
    """Shopfloor's connector contract; the device is a retained JSON message on a real Mosquitto."""

    connector_name = "mqtt"
    source_yaml = CONTRACT
    bad_settings: ClassVar = [
        ({"url": "mqtt://edge:secret@127.0.0.1"}, "url"),
        ({"session_expiry_s": -1}, "session_expiry_s"),
        ({"tls": {"ca_file": "/ca.pem"}}, "settings"),
    ]

    @pytest.fixture(autouse=True)
    def _registered(self, mqtt_registered: None) -> None:
        """The contract loads the connector by its name."""

    def setup_device(self, tmp_path: Path) -> None:
        self.server = start_mosquitto(tmp_path / "mosquitto")
        body = f'{{"v": 21.5, "ts": {now_ns() // 1_000_000}}}'.encode()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="contract-device")
        client.connect("127.0.0.1", self.server.port)
        client.loop_start()
        try:
            client.publish("devices/press-1", body, qos=1, retain=True).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

    def teardown_device(self) -> None:
        self.server.stop()

    def _yaml(self, tmp_path: Path) -> str:
        server = getattr(self, "server", None)  # no broker for the config-only checks
        return super()._yaml(tmp_path).replace("{port}", str(server.port if server else 1883))
