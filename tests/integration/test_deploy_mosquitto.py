"""Debian's Mosquitto started with the shipped site broker config (deploy/mosquitto/mosquitto.conf and
shopfloor.acl, only ports, paths and the user adapted): its listeners, authentication and ACL.

The edge and ingest settings come from the shipped configs (deploy/config/*.yaml), pointed at this broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from mqtt_support import make_tls_files, password_file_line

from historian.errors import StoreUnavailable
from historian.sqlite_store import SQLiteStore
from shopfloor.batch import SampleBatch
from shopfloor.config import load_plant_config
from shopfloor.config.ingest import IngestConfig
from shopfloor.config.publish import PublishConfig
from shopfloor.model import now_ns
from shopfloor.testing.servers import MosquittoServer, ServerUnavailable, free_port, require_servers
from uns.ingest import Ingest
from uns.json_payload import decode_samples
from uns.publisher import MqttPublisher
from uns.topics import TopicTree

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
ACL = DEPLOY / "mosquitto" / "shopfloor.acl"
EDGE = load_plant_config(DEPLOY / "config" / "line-hot-rolling.yaml")
SITE_CFG = load_plant_config(DEPLOY / "config" / "site.yaml")
PASSWORDS = {"edge-hot-rolling": "hot rolling edge secret 1", "shopfloor-ingest": "ingest secret 2"}
OWN_LINE = "qijiang/copper/hot-rolling/mill-1"
OTHER_LINE = "qijiang/copper/cold-rolling/mill-1"


def adapt(text: str, *, ports: dict[int, int], root: Path, user: str) -> str:
    """The shipped config with its ports, file paths and user replaced (every replacement must match
    exactly once, so a changed config fails here rather than being tested half-adapted)."""
    replacements = [
        ("user mosquitto", f"user {user}"),
        ("pid_file /run/mosquitto/mosquitto.pid", f"pid_file {root / 'mosquitto.pid'}"),
        ("persistence_location /var/lib/mosquitto/", f"persistence_location {root / 'data'}/"),
        ("listener 8883\n", f"listener {ports[8883]} 127.0.0.1\n"),
        ("listener 8884\n", f"listener {ports[8884]} 127.0.0.1\n"),
        ("listener 1883 127.0.0.1\n", f"listener {ports[1883]} 127.0.0.1\n"),
    ]
    for old, new in replacements:
        assert text.count(old) == 1, f"{CONF} no longer holds {old!r} once"
        text = text.replace(old, new)
    text = text.replace("/etc/mosquitto/", f"{root}/")
    left = re.findall(r"^\S+ (/(?:etc|var|run)/\S*)", text, re.MULTILINE)
    assert not left, f"paths not adapted: {left}"
    return text


class DeployedMosquitto(MosquittoServer):
    """Mosquitto run from the adapted shipped config; ``port`` is its loopback plain listener."""

    def __init__(self, workdir: Path, conf: str, port: int) -> None:
        super().__init__(workdir)
        self.port = port
        self.conf = conf

    def command(self) -> list[str]:
        path = self.workdir / "mosquitto.conf"
        path.write_text(self.conf)
        return [self.find(), "-c", str(path)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DeployedMosquitto, dict[str, Any]]]:
    try:
        MosquittoServer.find()
    except ServerUnavailable as exc:  # skipped, or failed under SHOPFLOOR_REQUIRE_SERVERS=1
        if require_servers():
            pytest.fail(f"SHOPFLOOR_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("deployed-mosquitto")
    (root / "data").mkdir()
    pki = make_tls_files(root / "pki", client_name="edge-hot-rolling")
    (root / "certs").mkdir()
    shutil.copy(pki["ca"], root / "certs" / "ca.pem")
    shutil.copy(pki["server_cert"], root / "certs" / "broker.pem")
    shutil.copy(pki["server_key"], root / "certs" / "broker.key")
    (root / "shopfloor.passwd").write_text("".join(password_file_line(u, p) for u, p in PASSWORDS.items()))
    shutil.copy(ACL, root / "shopfloor.acl")  # the ACL exactly as shipped
    ports = {1883: free_port(), 8883: free_port(), 8884: free_port()}
    conf = adapt(CONF.read_text(), ports=ports, root=root, user=pwd.getpwuid(os.geteuid()).pw_name)
    server = DeployedMosquitto(root, conf, ports[1883])
    server.start()
    try:
        yield server, {"ports": ports, "pki": pki}
    finally:
        server.stop()


def edge_publisher(port: int, ca: Path, *, certificate: dict[str, Path] | None = None) -> MqttPublisher:
    """The shipped edge's publish: section, pointed at the test broker."""
    assert EDGE.publish is not None
    data = EDGE.publish.model_dump(mode="json", exclude_unset=True)
    data.update(url=f"mqtts://127.0.0.1:{port}", timeout_s=5.0)
    data["tls"] = {"ca_file": str(ca)}
    if certificate is not None:  # certificate listener: the CN is the user, no password
        data.pop("username")
        data.pop("password_env")
        data["tls"] |= {
            "cert_file": str(certificate["client_cert"]),
            "key_file": str(certificate["client_key"]),
        }
    return MqttPublisher(PublishConfig.model_validate(data), site=EDGE.site)


def one_sample(asset: str, signal: str, value: float) -> SampleBatch:
    return SampleBatch.from_columns([(asset, signal)], [0], [now_ns()], [value])


@pytest.fixture
def edge_password(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EDGE.publish is not None and EDGE.publish.password_env
    monkeypatch.setenv(EDGE.publish.password_env, PASSWORDS["edge-hot-rolling"])


def test_the_shipped_conf_starts_and_announces_its_in_flight_window(
    broker: tuple[DeployedMosquitto, dict[str, Any]],
) -> None:
    server, info = broker
    got: dict[str, Any] = {}
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.username_pw_set("edge-hot-rolling", PASSWORDS["edge-hot-rolling"])
    client.tls_set(ca_certs=str(info["pki"]["ca"]))
    client.on_connect = lambda c, u, flags, rc, props: got.update(rc=rc, props=props)
    client.connect("127.0.0.1", info["ports"][8883], keepalive=10)
    for _ in range(100):  # bounded: at most 100 x 0.1 s
        client.loop(timeout=0.1)
        if "rc" in got:
            break
    client.disconnect()
    assert "rc" in got, f"no CONNACK: {server.log_tail()}"
    assert not got["rc"].is_failure
    # max_inflight_messages 1000 (Mosquitto's default 20 would cap the publisher's window at 20)
    assert got["props"].ReceiveMaximum == 1000


async def test_an_edge_publishes_its_line_and_ingest_reads_it_through_its_share_group(
    broker: tuple[DeployedMosquitto, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, edge_password: None
) -> None:
    _, info = broker
    ingest = SITE_CFG.ingest
    assert ingest is not None and ingest.username and ingest.password_env
    monkeypatch.setenv(ingest.password_env, PASSWORDS["shopfloor-ingest"])
    tls = ssl.create_default_context(cafile=str(info["pki"]["ca"]))
    async with aiomqtt.Client(
        "127.0.0.1",
        info["ports"][8883],
        username=ingest.username,
        password=os.environ[ingest.password_env],
        identifier="test-ingest-1",
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls,
        timeout=10,
    ) as sub:
        await sub.subscribe(ingest.subscription(), qos=1)  # $share/shopfloor-ingest/uns/v1/#
        pub = edge_publisher(info["ports"][8883], info["pki"]["ca"])
        try:
            await pub.send(pub.encode_samples(one_sample(OWN_LINE, "roll_force", 4321.5)))
        finally:
            await pub.close()
        message = await asyncio.wait_for(anext(aiter(sub.messages)), 10)
    assert message.topic.value == f"uns/v1/{OWN_LINE}/roll_force"
    batch = decode_samples(message.topic.value, bytes(message.payload), TopicTree("uns/v1"))
    assert batch.value.tolist() == [4321.5]


async def test_the_real_ingest_with_the_shipped_site_config_stores_the_edges_data_and_stays_connected(
    broker: tuple[DeployedMosquitto, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    edge_password: None,
    tmp_path: Path,
) -> None:
    """The shipped ACL must let the ingest do all it does (share-group read, and as a Sparkplug host its
    STATE and rebirth requests): Mosquitto 2.0 drops a connection whose publish the ACL refuses."""
    _, info = broker
    assert SITE_CFG.ingest is not None and SITE_CFG.ingest.password_env
    monkeypatch.setenv(SITE_CFG.ingest.password_env, PASSWORDS["shopfloor-ingest"])
    data = SITE_CFG.ingest.model_dump(mode="json", exclude_unset=True)
    data.update(url=f"mqtts://127.0.0.1:{info['ports'][8883]}", tls={"ca_file": str(info["pki"]["ca"])},
                dir=str(tmp_path / "ingest"), client_id="test-ingest-real", health_interval_s=0)  # fmt: skip
    db = tmp_path / "central.db"
    ing = Ingest(IngestConfig.model_validate(data), SQLiteStore(db))
    await ing.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while ing.stats().connections == 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        pub = edge_publisher(info["ports"][8883], info["pki"]["ca"])
        try:
            await pub.send(pub.encode_samples(one_sample(OWN_LINE, "roll_force", 1234.5)))
        finally:
            await pub.close()
        while ing.stats().written < 1 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a refused STATE publish would have cost the connection by now
        s = ing.stats()
    finally:
        await ing.stop()
    assert s.written == 1 and s.acked == s.received, s
    assert s.connections == 1 and s.connected, f"the ingest lost its connection: {s.last_error}"
    reader = SQLiteStore(db, create=False)
    await reader.open()
    try:
        frame = await reader.query_raw(OWN_LINE, "roll_force", 0, 2**62)
    finally:
        await reader.close()
    assert frame.value.tolist() == [1234.5]
    # as a Sparkplug host it said it was online, and at its clean stop that it is offline (retained)
    tls = ssl.create_default_context(cafile=str(info["pki"]["ca"]))
    async with aiomqtt.Client(
        "127.0.0.1", info["ports"][8883], username=SITE_CFG.ingest.username,
        password=PASSWORDS["shopfloor-ingest"], identifier="state-reader", protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls, timeout=10,
    ) as sub:  # fmt: skip
        await sub.subscribe("spBv1.0/STATE/test-ingest-real", qos=1)
        message = await asyncio.wait_for(anext(aiter(sub.messages)), 10)
    assert message.retain and json.loads(bytes(message.payload))["online"] is False


async def test_the_acl_refuses_an_edge_writing_another_line(
    broker: tuple[DeployedMosquitto, dict[str, Any]], edge_password: None
) -> None:
    _, info = broker
    pub = edge_publisher(info["ports"][8883], info["pki"]["ca"])
    try:
        with pytest.raises(StoreUnavailable, match="Not authorized"):
            await pub.send(pub.encode_samples(one_sample(OTHER_LINE, "coil_count", 1.0)))
    finally:
        await pub.close()
    # and the same edge may still write its own line and its site's _system tree
    pub = edge_publisher(info["ports"][8883], info["pki"]["ca"])
    try:
        await pub.send(pub.encode_samples(one_sample(OWN_LINE, "coil_count", 2.0)))
        await pub.send(
            pub.encode_samples(
                one_sample("qijiang/_system/shopfloor/mqtt-publisher/edge-hot-rolling", "written", 1.0)
            )
        )
    finally:
        await pub.close()


async def test_no_listener_lets_an_anonymous_client_in(
    broker: tuple[DeployedMosquitto, dict[str, Any]],
) -> None:
    _, info = broker
    tls = ssl.create_default_context(cafile=str(info["pki"]["ca"]))
    for port, context in ((info["ports"][1883], None), (info["ports"][8883], tls)):
        with pytest.raises(aiomqtt.MqttError, match=r"Not authorized|Bad user"):
            async with aiomqtt.Client(
                "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, tls_context=context, timeout=10
            ):
                pass


async def test_the_certificate_listener_takes_the_cn_as_the_acl_user(
    broker: tuple[DeployedMosquitto, dict[str, Any]], edge_password: None
) -> None:
    _, info = broker
    pki = info["pki"]  # its client certificate's CN is edge-hot-rolling
    pub = edge_publisher(info["ports"][8884], pki["ca"], certificate=pki)
    try:
        await pub.send(pub.encode_samples(one_sample(OWN_LINE, "exit_thickness", 8.01)))
        with pytest.raises(StoreUnavailable, match="Not authorized"):
            await pub.send(pub.encode_samples(one_sample(OTHER_LINE, "energy", 1.0)))
    finally:
        await pub.close()
    no_cert = edge_publisher(info["ports"][8884], pki["ca"])  # a password, but no certificate
    try:
        assert not await no_cert.ping()
    finally:
        await no_cert.close()
