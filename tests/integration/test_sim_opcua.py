"""An asyncua client browses the simulator's address space, reads, subscribes and sees sensor-fault status."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import Client, ua
from opcua_support import served_plant

from plant_simulator.online import Publisher
from plant_simulator.opcua_server import NAMESPACE_URI, OpcUaSecurity, SimOpcUaServer
from plant_simulator.plant import Plant, default_plant
from plant_simulator.sensor_faults import SensorFault
from shopfloor.testing.servers import free_port

CNC = "qijiang/machining/gearbox-line/cnc-1"
MILL = "qijiang/copper/hot-rolling/mill-1"
STEP = 2000


def make_plant() -> Plant:
    plant = default_plant(seed=5)
    plant.inject_sensor_fault(CNC, SensorFault("dropout", "spindle_temp", STEP - 5, STEP + 50))
    plant.inject_sensor_fault(CNC, SensorFault("stuck", "coolant_temp", STEP - 500, STEP + 50))
    return plant


@pytest.fixture
async def served() -> AsyncIterator[tuple[Plant, SimOpcUaServer, Publisher]]:
    async with served_plant(make_plant()) as served:
        yield served


async def test_browse_read_and_units(served) -> None:
    plant, srv, _ = served
    async with Client(srv.endpoint, timeout=10) as c:
        ns = await c.get_namespace_index(NAMESPACE_URI)
        site = await c.nodes.objects.get_child([f"{ns}:qijiang"])
        areas = {(await n.read_browse_name()).Name for n in await site.get_children()}
        assert areas == {"machining", "copper", "aluminium"}
        mill = await site.get_child([f"{ns}:copper", f"{ns}:hot-rolling", f"{ns}:mill-1"])
        names = {(await n.read_browse_name()).Name for n in await mill.get_children()}
        assert {s.name for s in plant.signals(MILL)} <= names
        force = await mill.get_child([f"{ns}:roll_force"])
        dv = await force.read_data_value()
        i = plant.signal_index(MILL, "roll_force")
        assert dv.Value.Value == pytest.approx(plant.block(0).values[MILL][i, STEP])
        assert dv.SourceTimestamp == datetime.fromtimestamp(plant.start_ns // 10**9 + STEP, UTC)
        eu = await (await force.get_child(["0:EngineeringUnits"])).read_value()
        rng = await (await force.get_child(["0:EURange"])).read_value()
        assert eu.DisplayName.Text == "kN" and eu.UnitId == 4338743  # UNECE B47
        assert (rng.Low, rng.High) == (0.0, 6000.0)


async def test_sensor_faults_give_bad_and_uncertain_status(served) -> None:
    _, srv, _ = served
    async with Client(srv.endpoint, timeout=10) as c:
        ns = await c.get_namespace_index(NAMESPACE_URI)
        bad = await c.get_node(ua.NodeId(f"{CNC}/spindle_temp", ns)).read_data_value(
            raise_on_bad_status=False
        )
        unc = await c.get_node(ua.NodeId(f"{CNC}/coolant_temp", ns)).read_data_value(
            raise_on_bad_status=False
        )
        good = await c.get_node(ua.NodeId(f"{CNC}/spindle_load", ns)).read_data_value()
        assert bad.StatusCode.value == ua.StatusCodes.BadSensorFailure
        assert unc.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
        assert good.StatusCode.is_good()


async def test_subscription_receives_new_simulated_values(served) -> None:
    plant, srv, pub = served
    got: asyncio.Queue = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node, val, data) -> None:
            got.put_nowait(data.monitored_item.Value)

    async with Client(srv.endpoint, timeout=10) as c:
        ns = await c.get_namespace_index(NAMESPACE_URI)
        node = c.get_node(ua.NodeId(f"{CNC}/energy", ns))
        sub = await c.create_subscription(50, Handler())
        await sub.subscribe_data_change(node)
        first = await asyncio.wait_for(got.get(), 10)
        await pub.publish_step(STEP + 60)
        second = await asyncio.wait_for(got.get(), 10)
        while second.SourceTimestamp == first.SourceTimestamp:
            second = await asyncio.wait_for(got.get(), 10)
        assert (second.SourceTimestamp - first.SourceTimestamp).total_seconds() == 60
        i = plant.signal_index(CNC, "energy")
        assert second.Value.Value == pytest.approx(plant.block(0).values[CNC][i, STEP + 60])
        await sub.delete()


async def test_secured_server_refuses_none_and_accepts_user_with_encryption(tmp_path: Path) -> None:
    plant = make_plant()
    sec = OpcUaSecurity(("SignAndEncrypt",), tmp_path / "pki", "operator", "s3cret-pw")
    srv = SimOpcUaServer({CNC: plant.signals(CNC)}, "127.0.0.1", free_port(), sec)
    await srv.start()
    try:
        eps = await Client(srv.endpoint, timeout=10).connect_and_get_server_endpoints()
        assert {e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in eps} == {"Basic256Sha256"}
        plain = Client(srv.endpoint, timeout=5)
        plain.set_user("operator")
        plain.set_password("s3cret-pw")
        with pytest.raises(Exception):  # noqa: B017  (no None endpoint: refused)
            await plain.connect()
        await plain.disconnect()
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        ck, cc = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
        await setup_self_signed_certificate(
            ck,
            cc,
            "urn:shopfloor:test-client",
            "localhost",
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": "test-client"},
        )
        (tmp_path / "pki" / "trusted").mkdir()
        shutil.copy(cc, tmp_path / "pki" / "trusted")  # the server accepts only clients it trusts
        wrong = Client(srv.endpoint, timeout=5)
        wrong.application_uri = "urn:shopfloor:test-client"
        await wrong.set_security_string(
            f"Basic256Sha256,SignAndEncrypt,{cc},{ck},{tmp_path / 'pki' / 'server-cert.der'}"
        )
        wrong.set_user("operator")
        wrong.set_password("wrong")
        with pytest.raises(Exception):  # noqa: B017
            await wrong.connect()
        await wrong.disconnect()
        good = Client(srv.endpoint, timeout=5)
        good.application_uri = "urn:shopfloor:test-client"
        await good.set_security_string(
            f"Basic256Sha256,SignAndEncrypt,{cc},{ck},{tmp_path / 'pki' / 'server-cert.der'}"
        )
        good.set_user("operator")
        good.set_password("s3cret-pw")
        async with good:
            ns = await good.get_namespace_index(NAMESPACE_URI)
            assert await good.get_node(ua.NodeId(f"{CNC}/state", ns)).read_browse_name()
    finally:
        await srv.stop()


async def test_policies_and_x509_users_are_offered_only_when_asked(tmp_path: Path) -> None:
    plant = make_plant()
    user = tmp_path / "user-cert.der"
    from asyncua.crypto import cert_gen
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, "user", {}, [x509.UniformResourceIdentifier("urn:test:user")], [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    user.write_bytes(cert.public_bytes(Encoding.DER))
    sec = OpcUaSecurity(
        ("Sign", "SignAndEncrypt"),
        tmp_path / "pki",
        policies=("Basic256Sha256", "Aes128_Sha256_RsaOaep"),
        user_certificates=(user,),
    )
    srv = SimOpcUaServer({CNC: plant.signals(CNC)}, "127.0.0.1", free_port(), sec)
    await srv.start()
    try:
        eps = await Client(srv.endpoint, timeout=10).connect_and_get_server_endpoints()
    finally:
        await srv.stop()
    offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode.name) for e in eps}
    assert offered == {
        (p, m) for p in ("Basic256Sha256", "Aes128_Sha256_RsaOaep") for m in ("Sign", "SignAndEncrypt")
    }
    for e in eps:  # only X.509 user identities, signed with the endpoint's own policy
        assert [(t.TokenType, t.SecurityPolicyUri) for t in e.UserIdentityTokens] == [
            (ua.UserTokenType.Certificate, e.SecurityPolicyUri)
        ]
    with pytest.raises(ValueError, match="unknown OPC UA security policy"):
        OpcUaSecurity(("Sign",), tmp_path / "pki", policies=("Basic128Rsa15",)).policy_types()
    with pytest.raises(ValueError, match="needs a Sign or SignAndEncrypt endpoint"):
        await SimOpcUaServer({}, "127.0.0.1", free_port(), OpcUaSecurity(user_certificates=(user,))).start()


# -- before the first value: no placeholder that looks like data ---------------------------------
async def test_a_variable_is_waiting_for_initial_data_until_its_first_value() -> None:
    plant = make_plant()
    srv = SimOpcUaServer({CNC: plant.signals(CNC)}, "127.0.0.1", free_port())
    await srv.start()  # listening, nothing published yet
    try:
        async with Client(srv.endpoint, timeout=10) as c:
            ns = await c.get_namespace_index(NAMESPACE_URI)
            node = c.get_node(ua.NodeId(f"{CNC}/spindle_load", ns))
            dv = await node.read_data_value(raise_on_bad_status=False)
            assert dv.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
            assert dv.SourceTimestamp is None and dv.Value.Value is None
            assert await node.read_data_type_as_variant_type() == ua.VariantType.Double  # type kept
    finally:
        await srv.stop()


# -- security: the key is private, only trusted client certificates are accepted ------------------
async def make_client_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}-key.pem", directory / f"{name}-cert.der"
    await setup_self_signed_certificate(
        key,
        cert,
        f"urn:shopfloor:{name}",
        "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": name},
    )
    return cert, key


async def secure_client(srv: SimOpcUaServer, cert: Path, key: Path, name: str, server_pki: Path) -> Client:
    c = Client(srv.endpoint, timeout=5)
    c.application_uri = f"urn:shopfloor:{name}"
    await c.set_security_string(
        f"Basic256Sha256,SignAndEncrypt,{cert},{key},{server_pki / 'server-cert.der'}"
    )
    return c


async def test_server_private_key_is_600_in_a_700_directory(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir(mode=0o755)  # an existing, too open directory is closed too
    pki.chmod(0o755)
    srv = SimOpcUaServer({}, "127.0.0.1", free_port(), OpcUaSecurity(("SignAndEncrypt",), pki))
    await srv.start()
    await srv.stop()
    assert (pki / "server-key.pem").stat().st_mode & 0o777 == 0o600
    assert pki.stat().st_mode & 0o777 == 0o700


async def test_untrusted_client_certificate_is_refused_until_copied_into_the_trust_dir(
    tmp_path: Path, caplog
) -> None:
    plant = make_plant()
    pki, trust = tmp_path / "pki", tmp_path / "clients-trusted"
    sec = OpcUaSecurity(("SignAndEncrypt",), pki, trust_dir=trust)
    srv = SimOpcUaServer({CNC: plant.signals(CNC)}, "127.0.0.1", free_port(), sec)
    await srv.start()
    cert, key = await make_client_certificate(tmp_path / "client", "stranger")
    try:
        refused = await secure_client(srv, cert, key, "stranger", pki)
        with pytest.raises(ua.UaStatusCodeError) as err:
            await refused.connect()
        await refused.disconnect()
        assert err.value.code == ua.StatusCodes.BadCertificateUntrusted
        (saved,) = (pki / "rejected").iterdir()
        assert saved.read_bytes() == cert.read_bytes()
        assert f"cp {saved} {trust}/" in caplog.text  # the server says how to trust it
        # trusting it (the copy the log names) admits the same client, without a server restart
        trust.mkdir()
        shutil.copy(saved, trust)
        accepted = await secure_client(srv, cert, key, "stranger", pki)
        async with accepted:
            ns = await accepted.get_namespace_index(NAMESPACE_URI)
            assert await accepted.get_node(ua.NodeId(f"{CNC}/state", ns)).read_browse_name()
    finally:
        await srv.stop()


async def test_a_channel_with_an_untrusted_certificate_reads_nothing_even_if_create_session_omits_it(
    tmp_path: Path,
) -> None:
    """asyncua checks CreateSession's ClientCertificate only when the client sends one; the server
    also checks each secure channel's own certificate, so leaving it out does not get a client in."""
    plant = make_plant()
    pki = tmp_path / "pki"
    srv = SimOpcUaServer(
        {CNC: plant.signals(CNC)}, "127.0.0.1", free_port(), OpcUaSecurity(("SignAndEncrypt",), pki)
    )
    await srv.start()
    cert, key = await make_client_certificate(tmp_path / "client", "sneaky")
    try:
        c = await secure_client(srv, cert, key, "sneaky", pki)
        original = c.uaclient.create_session

        async def without_certificate(params: ua.CreateSessionParameters) -> ua.CreateSessionResult:
            params.ClientCertificate = None
            return await original(params)

        c.uaclient.create_session = without_certificate  # type: ignore[method-assign]
        try:
            await c.connect()
            ns_read = c.get_node(ua.NodeId(ua.ObjectIds.Server_NamespaceArray)).read_value()
            with pytest.raises(ua.UaStatusCodeError) as err:
                await ns_read
            assert err.value.code == ua.StatusCodes.BadCertificateUntrusted
        except ua.UaStatusCodeError as exc:  # refused already while connecting: just as good
            assert exc.code in (
                ua.StatusCodes.BadCertificateUntrusted,
                ua.StatusCodes.BadSecurityChecksFailed,
            )
        finally:
            await c.disconnect()
    finally:
        await srv.stop()
