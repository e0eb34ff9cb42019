"""The OPC UA connector against the simulator's real asyncua server: values, timestamps, quality,
restart with gap and item checks, a vanished node, security and trust, events, polling, browse."""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from asyncua import ua

from connectors.base import SourceContext
from connectors.opcua import browse
from connectors.opcua.config import OpcUaSettings, OpcUaTag
from connectors.opcua.connector import OpcUaConnector
from plant_simulator.clock import SimClock
from plant_simulator.config_gen import plant_config
from plant_simulator.online import OnlinePlant, Publisher
from plant_simulator.opcua_server import (
    NAMESPACE_URI,
    OpcUaSecurity,
    SimOpcUaServer,
    node_id_string,
    variant_type,
)
from plant_simulator.plant import Plant, default_plant
from plant_simulator.sensor_faults import SensorFault
from shopfloor.batch import SampleBatch
from shopfloor.config.load import validate_document
from shopfloor.config.sources import validate_sources
from shopfloor.config.yaml_source import parse_yaml
from shopfloor.model import Event, EventKind, Quality
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


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Plant, SimOpcUaServer, Publisher]]:
    plant = make_plant()
    srv = SimOpcUaServer({p: plant.signals(p) for p in plant.assets}, "127.0.0.1", free_port())
    await srv.start()
    pub = Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1.0), [srv])
    try:
        await pub.publish_step(STEP)
        yield plant, srv, pub
    finally:
        await srv.stop()


async def test_every_signal_arrives_with_the_simulators_value_and_timestamp(sim, tmp_path: Path) -> None:
    plant, srv, pub = sim
    tags = all_tags(plant)
    con = connector(tags, tmp_path, endpoint=srv.endpoint)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(tags))
        n_first = len(sink.batches)
        await pub.publish_step(STEP + 60)
        await wait_for(
            lambda: any(b.ts.max() == plant.start_ns + (STEP + 60) * NS for b in sink.batches[n_first:])
        )
        await asyncio.sleep(0.6)  # one more publish cycle for stragglers (no assertion on timing)
    finally:
        await con.stop()
    latest = sink.latest()
    assert set(latest) == {(t.asset, t.signal) for t in tags}
    changed = 0
    for (asset, signal), (ts, value, _q) in latest.items():
        step = (ts - plant.start_ns) // NS
        assert step in (STEP, STEP + 60), (asset, signal, step)
        want = expected(plant, asset, signal, STEP + 60)
        if step == STEP:  # no data change reported: the value must not have changed
            assert expected(plant, asset, signal, STEP) == pytest.approx(want, nan_ok=True)
        else:
            changed += 1
        assert value == pytest.approx(want, nan_ok=True), (asset, signal)
    assert changed > 50
    # one batch per publish cycle: the first notification of every item came in a handful of batches
    assert n_first <= 3


async def test_status_codes_become_quality(sim, tmp_path: Path) -> None:
    plant, srv, _ = sim
    con = connector(all_tags(plant, [CNC]), tmp_path, endpoint=srv.endpoint)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(plant.signals(CNC)))
    finally:
        await con.stop()
    latest = sink.latest()
    assert latest[(CNC, "spindle_temp")][2] == Quality.BAD and math.isnan(latest[(CNC, "spindle_temp")][1])
    assert latest[(CNC, "coolant_temp")][2] == Quality.UNCERTAIN
    assert latest[(CNC, "spindle_load")][2] == Quality.GOOD
    assert sum(1 for v in latest.values() if v[2] == Quality.GOOD) == len(latest) - 2


async def restart(
    plant: Plant, srv: SimOpcUaServer, pub: Publisher, drop: str | None = None
) -> SimOpcUaServer:
    """Stop the server and start a new one on the same port (optionally without one node)."""
    await srv.stop()
    await asyncio.sleep(0.3)
    new = SimOpcUaServer({p: plant.signals(p) for p in plant.assets}, srv.host, srv.port)
    await new.start()
    if drop is not None:
        await new.server.delete_nodes([new.server.get_node(ua.NodeId(drop, new.ns))])
    pub.sinks = [new]
    return new


async def test_server_restart_restores_every_item_and_records_the_gap(sim, tmp_path: Path) -> None:
    plant, srv, pub = sim
    tags = all_tags(plant)
    con = connector(tags, tmp_path, endpoint=srv.endpoint)
    sink = ListSink()
    await con.start(sink)
    new = None
    try:
        await wait_for(lambda: len(sink.latest()) == len(tags))
        new = await restart(plant, srv, pub)
        await wait_for(lambda: not con.health().connected, 10)
        await pub.publish_step(STEP + 120)
        n_before = len(sink.batches)
        await wait_for(lambda: con.supervisor.sessions == 2, 20)
        await wait_for(lambda: len(sink.latest(n_before)) == len(tags))
    finally:
        await con.stop()
        if new is not None:
            await new.stop()
    h = con.health()
    assert h.reconnects == 1 and h.gaps == 1
    restore = con.describe()["last_restore"]
    assert restore["restored"] == restore["expected"] == len(tags) and restore["failed"] == {}
    gaps = [e for e in sink.events if e.kind is EventKind.GAP]
    assert sorted(e.asset for e in gaps) == sorted(plant.assets)
    for e in gaps:  # marked at the last sample before the loss, never backfilled
        assert e.ts_ns == plant.start_ns + STEP * NS
        assert e.data["restored_at_ns"] > e.data["lost_at_ns"]
    after = sink.latest(n_before)
    assert {(ts - plant.start_ns) // NS for ts, _, _ in after.values()} == {STEP + 120}
    for (asset, signal), (_, value, _) in after.items():
        assert value == pytest.approx(expected(plant, asset, signal, STEP + 120), nan_ok=True)


async def test_node_missing_after_restart_is_listed_and_the_others_continue(sim, tmp_path: Path) -> None:
    plant, srv, pub = sim
    tags = all_tags(plant, [CNC, MILL])
    gone = f"nsu={NAMESPACE_URI};s={MILL}/roll_force"
    con = connector(tags, tmp_path, endpoint=srv.endpoint, item_retry_s=0)
    sink = ListSink()
    await con.start(sink)
    new = None
    try:
        await wait_for(lambda: len(sink.latest()) == len(tags))
        new = await restart(plant, srv, pub, drop=f"{MILL}/roll_force")
        await pub.publish_step(STEP + 120)
        n_before = len(sink.batches)
        await wait_for(lambda: con.supervisor.sessions == 2, 20)
        await wait_for(lambda: len(sink.latest(n_before)) == len(tags) - 1)
        await pub.publish_step(STEP + 180)
        await wait_for(lambda: any(b.ts.max() == plant.start_ns + (STEP + 180) * NS for b in sink.batches))
    finally:
        await con.stop()
        if new is not None:
            await new.stop()
    assert con.failed_items == {gone: "BadNodeIdUnknown"}
    h = con.health()
    assert h.failed_items == {gone: "BadNodeIdUnknown"}
    assert h.errors.get("item_failed") == 1
    restore = con.describe()["last_restore"]
    assert (restore["restored"], restore["expected"]) == (len(tags) - 1, len(tags))
    assert (MILL, "roll_force") not in sink.latest(n_before)
    flagged = [e for e in sink.events if e.kind is EventKind.SYSTEM and e.code == "BadNodeIdUnknown"]
    assert [(e.asset, e.data["node_id"]) for e in flagged] == [(MILL, gone)]


async def test_poll_mode_reads_values(sim, tmp_path: Path) -> None:
    plant, srv, _ = sim
    tags = all_tags(plant, [MILL])
    con = connector(tags, tmp_path, endpoint=srv.endpoint, mode="poll", poll_interval_ms=200)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.batches) >= 2)
    finally:
        await con.stop()
    assert all(len(b) == len(tags) for b in sink.batches)  # one batch per read cycle
    for (asset, signal), (ts, value, _) in sink.latest().items():
        assert ts == plant.start_ns + STEP * NS
        assert value == pytest.approx(expected(plant, asset, signal, STEP), nan_ok=True)


async def test_state_change_events_are_subscribed(sim, tmp_path: Path) -> None:
    plant, srv, pub = sim
    states = {a: plant.block(0).values[a][plant.signal_index(a, "state")] for a in plant.assets}
    step, asset = next(
        (s, a) for s in range(STEP + 1, STEP + 3000) for a in plant.assets if states[a][s] != states[a][STEP]
    )
    con = connector(
        all_tags(plant, [asset]),
        tmp_path,
        endpoint=srv.endpoint,
        events=[{"node_id": f"nsu={NAMESPACE_URI};s={asset}", "kind": "state_change"}],
    )
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(plant.signals(asset)))
        await pub.publish_step(step)
        await wait_for(lambda: any(e.kind is EventKind.STATE_CHANGE for e in sink.events))
    finally:
        await con.stop()
    (ev,) = [e for e in sink.events if e.kind is EventKind.STATE_CHANGE]
    assert ev.asset == asset and ev.ts_ns == plant.start_ns + step * NS
    assert f"-> {int(states[asset][step])}" in ev.message


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SimOpcUaServer]:
    plant = make_plant()
    monkeypatch.setenv("TEST_OPCUA_PW", "s3cret-pw")
    sec = OpcUaSecurity(("SignAndEncrypt",), tmp_path / "server-pki", "operator", "s3cret-pw")
    srv = SimOpcUaServer({CNC: plant.signals(CNC)}, "127.0.0.1", free_port(), sec)
    await srv.start()
    await Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1.0), [srv]).publish_step(STEP)
    try:
        yield srv
    finally:
        await srv.stop()


def secure_connector(srv: SimOpcUaServer, state: Path, trust: Path) -> OpcUaConnector:
    plant = make_plant()
    return connector(
        all_tags(plant, [CNC]),
        state,
        endpoint=srv.endpoint,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        trust_dir=str(trust),
        identity="username",
        username="operator",
        password_env="TEST_OPCUA_PW",
    )


async def test_sign_and_encrypt_with_trusted_server_and_username_login(
    secured, tmp_path: Path, caplog
) -> None:
    trust = tmp_path / "trusted"
    trust.mkdir()
    shutil.copy(tmp_path / "server-pki" / "server-cert.der", trust / "simulator.der")
    con = secure_connector(secured, tmp_path / "state", trust)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: sink.rows() >= len(make_plant().signals(CNC)))
    finally:
        await con.stop()
    assert con.health().errors == {}
    # the client certificate was generated once into the source's state dir and is kept
    own = tmp_path / "state" / "sim-opcua" / "pki" / "own"
    assert (own / "client-cert.der").is_file() and (own / "client-key.pem").stat().st_mode & 0o077 == 0
    assert "s3cret-pw" not in caplog.text


async def test_untrusted_server_is_refused_with_the_copy_command(secured, tmp_path: Path) -> None:
    trust = tmp_path / "trusted"
    con = secure_connector(secured, tmp_path / "state", trust)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: "untrusted_server_certificate" in con.health().errors)
        assert sink.rows() == 0 and not con.health().connected
        msg = con.health().last_error
        rejected = tmp_path / "state" / "sim-opcua" / "pki" / "rejected"
        (saved,) = rejected.iterdir()
        assert f"cp {saved} {trust}/" in msg
        assert saved.read_bytes() == (tmp_path / "server-pki" / "server-cert.der").read_bytes()
        # doing what the message says makes the next attempt succeed, without a restart
        trust.mkdir()
        shutil.copy(saved, trust)
        await wait_for(lambda: sink.rows() > 0, 20)
    finally:
        await con.stop()


def make_user_identity(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed X.509 user certificate (DER) and its private key (PEM, mode 600) in ``directory``."""
    from asyncua.crypto import cert_gen
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    directory.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        name,
        {"organizationName": "Shopfloor tests"},
        [x509.UniformResourceIdentifier(f"urn:shopfloor:test-user:{name}")],
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    cert_path, key_path = directory / f"{name}-cert.der", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.touch(mode=0o600)
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


async def start_secured(security: OpcUaSecurity) -> SimOpcUaServer:
    plant = make_plant()
    srv = SimOpcUaServer({CNC: plant.signals(CNC)}, "127.0.0.1", free_port(), security)
    await srv.start()
    try:
        await Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1.0), [srv]).publish_step(STEP)
    except BaseException:
        await srv.stop()
        raise
    return srv


def trust_server(tmp_path: Path) -> Path:
    trust = tmp_path / "trusted"
    trust.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "server-pki" / "server-cert.der", trust / "simulator.der")
    return trust


async def test_aes128_sha256_rsaoaep_sign_and_encrypt_delivers_the_simulators_values(tmp_path: Path) -> None:
    from asyncua.crypto.security_policies import SecurityPolicyAes128Sha256RsaOaep

    plant = make_plant()
    srv = await start_secured(
        OpcUaSecurity(("Sign", "SignAndEncrypt"), tmp_path / "server-pki", policies=("Aes128Sha256RsaOaep",))
    )
    con = connector(
        all_tags(plant, [CNC]),
        tmp_path / "state",
        endpoint=srv.endpoint,
        security_policy="Aes128_Sha256_RsaOaep",
        security_mode="SignAndEncrypt",
        trust_dir=str(trust_server(tmp_path)),
    )
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(plant.signals(CNC)))
        session = con.supervisor.session
        assert session is not None
        policy = session.client.security_policy
        assert isinstance(policy, SecurityPolicyAes128Sha256RsaOaep)
        assert policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
    finally:
        await con.stop()
        await srv.stop()
    assert con.health().errors == {}
    for (asset, signal), (ts, value, _q) in sink.latest().items():
        assert ts == plant.start_ns + STEP * NS
        assert value == pytest.approx(expected(plant, asset, signal, STEP), nan_ok=True), signal
    assert sink.latest()[(CNC, "spindle_load")][2] == Quality.GOOD


@pytest.fixture
async def x509_server(tmp_path: Path) -> AsyncIterator[SimOpcUaServer]:
    """A Basic256Sha256 SignAndEncrypt server that accepts only the X.509 user ``tmp_path/users/trusted``."""
    cert, _key = make_user_identity(tmp_path / "users", "trusted")
    srv = await start_secured(
        OpcUaSecurity(("SignAndEncrypt",), tmp_path / "server-pki", user_certificates=(cert,))
    )
    try:
        yield srv
    finally:
        await srv.stop()


def x509_connector(srv: SimOpcUaServer, tmp_path: Path, user: str) -> OpcUaConnector:
    return connector(
        all_tags(make_plant(), [CNC]),
        tmp_path / "state",
        endpoint=srv.endpoint,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        trust_dir=str(trust_server(tmp_path)),
        identity="certificate",
        user_certificate=str(tmp_path / "users" / f"{user}-cert.der"),
        user_private_key=str(tmp_path / "users" / f"{user}-key.pem"),
    )


async def test_x509_user_identity_trusted_by_the_server_is_accepted(
    x509_server, tmp_path: Path, caplog
) -> None:
    plant = make_plant()
    con = x509_connector(x509_server, tmp_path, "trusted")
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(plant.signals(CNC)))
    finally:
        await con.stop()
    assert con.health().errors == {}
    for (asset, signal), (_ts, value, _q) in sink.latest().items():
        assert value == pytest.approx(expected(plant, asset, signal, STEP), nan_ok=True), signal
    key_pem = (tmp_path / "users" / "trusted-key.pem").read_text()
    assert key_pem.splitlines()[1] not in caplog.text


async def test_x509_user_identity_not_trusted_by_the_server_is_refused(
    x509_server, tmp_path: Path, caplog
) -> None:
    make_user_identity(tmp_path / "users", "stranger")
    con = x509_connector(x509_server, tmp_path, "stranger")
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: "auth_refused" in con.health().errors)
        h = con.health()
        assert not h.connected and con.supervisor.sessions == 0
        assert "BadUserAccessDenied" in h.last_error
        assert "stranger-cert.der" in h.last_error  # names the identity the server refused
    finally:
        await con.stop()
    assert sink.rows() == 0 and not any(q == Quality.GOOD for _, _, q in sink.latest().values())
    key_pem = (tmp_path / "users" / "stranger-key.pem").read_text()
    assert key_pem.splitlines()[1] not in caplog.text


async def test_identity_the_endpoint_does_not_offer_is_refused_before_connecting(
    x509_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OPCUA_PW", "s3cret-pw")
    con = connector(
        all_tags(make_plant(), [CNC]),
        tmp_path / "state",
        endpoint=x509_server.endpoint,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        trust_dir=str(trust_server(tmp_path)),
        identity="username",
        username="operator",
        password_env="TEST_OPCUA_PW",
    )
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: "no_matching_endpoint" in con.health().errors)
        assert "does not accept identity 'username' (it accepts: certificate)" in con.health().last_error
        assert sink.rows() == 0 and not con.health().connected
    finally:
        await con.stop()


async def test_browse_prints_a_snippet_that_validates_as_a_source(sim, tmp_path: Path) -> None:
    plant, srv, _ = sim
    parser = argparse.ArgumentParser()
    browse.add_arguments(parser)
    args = parser.parse_args(
        [srv.endpoint, "--pattern", "qijiang/copper/**", "--state-dir", str(tmp_path), "--name", "sim"]
    )
    out = io.StringIO()
    assert await browse.browse(args, out) == 0
    text = out.getvalue()
    assert f"{MILL.rsplit('/', 1)[-1]}  (Object)" in text  # the tree
    snippet = text[text.index(browse.SNIPPET_MARK) :]
    doc = parse_yaml(snippet, "snippet.yaml")
    cfg = validate_document(doc)
    (source,) = validate_sources(cfg, doc).values()
    _cls, settings, tags = source
    assert settings.endpoint == srv.endpoint and settings.namespace_uri == NAMESPACE_URI
    # the same tags the simulator's own generated config names for the copper area
    generated = plant_config(plant)
    (gen,) = [s for s in generated["sources"] if s["connector"] == "opcua"]
    want = {
        (t["asset"], t["signal"], t["node_id"])
        for t in gen["tags"]
        if t["asset"].startswith("qijiang/copper/")
    }
    assert {(t.asset, t.signal, t.node_id) for t in tags} == want


def test_sink_batches_share_one_key_table(tmp_path: Path) -> None:
    plant = make_plant()
    con = connector(all_tags(plant, [CNC]), tmp_path, endpoint="opc.tcp://127.0.0.1:1")
    sink = ListSink()
    con._sink = sink
    from datetime import UTC, datetime

    dv = ua.DataValue(
        ua.Variant(1.5),
        ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    note = ua.DataChangeNotification(
        MonitoredItems=[ua.MonitoredItemNotification(ClientHandle=3, Value=dv)] * 2
    )
    result = ua.PublishResult(NotificationMessage=ua.NotificationMessage(NotificationData=[note]))
    con._on_data(result)
    con._on_data(result)
    a, b = sink.batches
    assert a.keys is b.keys and len(a) == 2
    assert a.ts.tolist() == [1767225600 * NS] * 2 and a.quality.tolist() == [Quality.UNCERTAIN] * 2
    assert np.array_equal(a.series, [3, 3])


@pytest.mark.influxdb
async def test_default_plant_lands_in_influxdb_with_values_and_source_timestamps(
    sim, influxd, influx_db: str, tmp_path: Path
) -> None:
    from historian.influx_v1 import InfluxV1Store
    from historian.url import parse_url
    from historian.writer import HistorianWriter
    from shopfloor.config.schema import HistorianConfig

    plant, srv, pub = sim
    tags = all_tags(plant)
    cfg = HistorianConfig.model_validate(
        {
            "url": f"influxdb-v1+http://127.0.0.1:{influxd.port}/{influx_db}",
            "spool": {"dir": str(tmp_path / "spool")},
            "health_interval_s": 0,
        }
    )

    def store() -> InfluxV1Store:
        return InfluxV1Store(parse_url(cfg.url), None, None, cfg.timeout_s, True)

    writer = HistorianWriter(store(), cfg)
    await writer.start()

    class WriterSink(ListSink):
        def emit(self, batch: SampleBatch) -> None:
            super().emit(batch)
            writer.submit(batch)

        def emit_events(self, events: list[Event]) -> None:
            super().emit_events(events)
            writer.submit_events(events)

    sink = WriterSink()
    con = connector(tags, tmp_path, endpoint=srv.endpoint)
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(tags))
        await pub.publish_step(STEP + 60)
        await wait_for(lambda: any(b.ts.max() == plant.start_ns + (STEP + 60) * NS for b in sink.batches))
    finally:
        await con.stop()
    assert await writer.flush(30)
    stats = writer.stats()
    await writer.stop()
    assert stats.written == sink.rows() and stats.balanced
    reader = store()
    try:
        stored = {(s.asset, s.signal): s for s in await reader.latest()}
    finally:
        await reader.close()
    latest = sink.latest()
    # a NaN (Bad, no reading) is stored as a quality-only line; latest() returns it as Bad, no value
    no_reading = {k for k, (_, v, q) in latest.items() if math.isnan(v)}
    assert no_reading == {(CNC, "spindle_temp")} and latest[(CNC, "spindle_temp")][2] == Quality.BAD
    assert set(stored) == {(t.asset, t.signal) for t in tags}
    bad = stored[(CNC, "spindle_temp")]
    assert (
        bad.quality == Quality.BAD and math.isnan(bad.value) and bad.ts_ns == latest[(CNC, "spindle_temp")][0]
    )
    for key, (ts, value, quality) in latest.items():
        if key in no_reading:
            continue
        s = stored[key]
        assert (s.ts_ns, int(s.quality)) == (ts, quality), key
        assert s.value == pytest.approx(value, nan_ok=True), key
        assert s.value == pytest.approx(expected(plant, *key, STEP + 60), nan_ok=True), key
