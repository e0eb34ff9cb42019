"""OPC UA security against the simulator's real server: SignAndEncrypt with Basic256Sha256 and
Aes128_Sha256_RsaOaep, the trust list, username and X.509 user identities, refusals."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import ua
from opcua_support import (
    CNC,
    NS,
    STEP,
    ListSink,
    all_tags,
    connector,
    expected,
    make_plant,
    trust_connector,
    wait_for,
)

from connectors.opcua.connector import OpcUaConnector
from plant_simulator.clock import SimClock
from plant_simulator.online import OnlinePlant, Publisher
from plant_simulator.opcua_server import (
    OpcUaSecurity,
    SimOpcUaServer,
)
from shopfloor.model import Quality
from shopfloor.testing.servers import free_port


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
    await trust_connector(con, tmp_path / "server-pki" / "trusted")
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
    await trust_connector(con, tmp_path / "server-pki" / "trusted")
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
    await trust_connector(con, tmp_path / "server-pki" / "trusted")
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
    await trust_connector(con, tmp_path / "server-pki" / "trusted")
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
    await trust_connector(con, tmp_path / "server-pki" / "trusted")  # the application, not the user
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


async def test_a_server_that_does_not_trust_the_connector_is_told_which_file_to_copy(
    secured, tmp_path: Path
) -> None:
    """The simulator accepts only client certificates in its trust dir (``--opcua-trust-dir``,
    default ``<opcua-cert-dir>/trusted``); the connector's refusal names its own certificate."""
    con = secure_connector(secured, tmp_path / "state", trust_server(tmp_path))
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: "client_certificate_refused" in con.health().errors)
        msg = con.health().last_error
        cert = con.supervisor.pki.cert
        assert msg.startswith("client_certificate_refused: BadCertificateUntrusted: ")
        assert str(cert) in msg and "--opcua-trust-dir" in msg
        assert sink.rows() == 0 and not con.health().connected
        (refused,) = (tmp_path / "server-pki" / "rejected").iterdir()  # the server kept a copy
        assert refused.read_bytes() == cert.read_bytes()
        (tmp_path / "server-pki" / "trusted").mkdir()  # what the message (and the server's log) say
        shutil.copy(cert, tmp_path / "server-pki" / "trusted")
        await wait_for(lambda: sink.rows() > 0, 30)
    finally:
        await con.stop()
