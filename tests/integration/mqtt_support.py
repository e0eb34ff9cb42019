"""Shared pieces of the MQTT tests: a real Mosquitto started for one test (skipped, or failed under
SHOPFLOOR_REQUIRE_SERVERS=1, when Debian's mosquitto is missing), a subscriber that records every
message it receives over a persistent session, reconnecting on its own while the broker is away, and
the broker's credentials: a password file line and a throwaway CA with server and client certificates.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import ipaddress
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from shopfloor.testing.servers import MosquittoServer, ServerUnavailable, require_servers


def start_mosquitto(workdir: Path, *, persistence: bool = False, extra: str = "") -> MosquittoServer:
    """A started broker of the caller's own; stop it (by PID) in teardown."""
    try:
        MosquittoServer.find()
    except ServerUnavailable as exc:
        if require_servers():
            pytest.fail(f"SHOPFLOOR_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(str(exc))
    server = MosquittoServer(workdir, persistence=persistence, extra=extra)
    server.start()
    return server


def wait_for_file(path: Path, newer_than: float, timeout_s: float = 10.0) -> None:
    """Until ``path`` exists with a modification time after ``newer_than`` (the broker saved its
    sessions); bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if path.stat().st_mtime > newer_than:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{path} was not written within {timeout_s} s")


class Recorder:
    """Subscribes to ``topic_filter`` at QoS 1 with a persistent session (MQTT 3.1.1, clean session off)
    and records (topic, payload) in arrival order; after a disconnect it connects again with the same
    identifier, so the broker delivers what it queued for the session meanwhile."""

    def __init__(self, port: int, topic_filter: str, client_id: str = "shopfloor-test-recorder") -> None:
        self.port = port
        self.topic_filter = topic_filter
        self.client_id = client_id
        self.messages: list[tuple[str, bytes]] = []
        self.connects = 0
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-recorder")
        await asyncio.wait_for(self.subscribed.wait(), timeout_s)

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier=self.client_id,
                    clean_session=False,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    timeout=5,
                    keepalive=10,
                ) as client:
                    self.connects += 1
                    await client.subscribe(self.topic_filter, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        self.messages.append((m.topic.value, bytes(m.payload)))  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async def wait_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Poll ``done`` until it holds or ``timeout_s`` passed; whether it held."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not done():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def password_file_line(user: str, password: str) -> str:
    """A Mosquitto 2 ``password_file`` line (PBKDF2-SHA512, what ``mosquitto_passwd`` writes), made here
    so the password never goes through a command line."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


def make_tls_files(directory: Path, client_name: str) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate named ``client_name``
    (PEM files in ``directory``): ca, server_cert, server_key, client_cert, client_key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
             ca: bool, usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:  # fmt: skip
        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            b = b.add_extension(san, critical=False)
        return b.sign(signer, hashes.SHA256())

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    files = {
        "ca": cert("shopfloor test CA", ca_key, "shopfloor test CA", ca_key, True),
        "server_cert": cert("127.0.0.1", server_key, "shopfloor test CA", ca_key, False, ExtendedKeyUsageOID.SERVER_AUTH),
        "client_cert": cert(client_name, client_key, "shopfloor test CA", ca_key, False, ExtendedKeyUsageOID.CLIENT_AUTH),
    }  # fmt: skip
    out: dict[str, Path] = {}
    for label, c in files.items():
        out[label] = directory / f"{label}.pem"
        out[label].write_bytes(c.public_bytes(serialization.Encoding.PEM))
    for label, k in (("server_key", server_key), ("client_key", client_key)):
        out[label] = directory / f"{label}.pem"
        out[label].write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return out
