"""OPC UA server of the virtual plant (asyncua): site/area/line folders, an object per asset.

Variables carry EngineeringUnits, EURange, SourceTimestamp = simulation time, sensor-fault StatusCodes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

from plant_simulator.codes import STATUS_OPCUA, Status
from plant_simulator.online import Column
from plant_simulator.signals import SignalSpec
from shopfloor.model import SignalType

log = logging.getLogger("plant_simulator.opcua")

NAMESPACE_URI = "urn:shopfloor:plant-simulator"
APPLICATION_URI = "urn:shopfloor:plant-simulator:server"
ENDPOINT_PATH = "/shopfloor/simulator"

# UNECE Recommendation 20 common codes for the units the simulator uses (OPC UA Part 8, EUInformation).
UNECE = {
    "degC": "CEL",
    "kW": "KWT",
    "kWh": "KWH",
    "mm": "MMT",
    "um": "4H",
    "m": "MTR",
    "rpm": "RPM",
    "%": "P1",
    "kN": "B47",
    "MN": "B73",
    "bar": "BAR",
    "A": "AMP",
    "V": "VLT",
    "Hz": "HTZ",
    "s": "SEC",
    "t": "TNE",
    "kg": "KGM",
    "L/min": "L2",
    "m/s": "MTS",
    "m/min": "2X",
    "mm/s": "C16",
    "mm/min": "H81",
    "m3/h": "MQH",
    "N*m": "NU",
    "1": "C62",
    "kWh/t": "",
    "parts": "",
    "coils": "",
    "heats": "",
    "billets": "",
    "batches": "",
    "defects": "",
    "mbar*L/s": "",
    "g^2": "",
    "(mm/s)^2": "",
    "": "",
}


def unit_id(code: str) -> int:
    """OPC UA UnitId from a UNECE common code (Part 8 5.6.3); -1 when there is none."""
    if not code:
        return -1
    v = 0
    for ch in code:
        v = (v << 8) | ord(ch)
    return v


def eu_information(unit: str) -> ua.EUInformation:
    code = UNECE.get(unit, "")
    return ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=unit_id(code),
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(unit),
    )


def variant_type(spec: SignalSpec) -> ua.VariantType:
    if spec.type is SignalType.BOOL:
        return ua.VariantType.Boolean
    if spec.type in (SignalType.STATE, SignalType.INT) and not (spec.counter and spec.counter_scale != 1):
        return ua.VariantType.UInt32 if spec.counter else ua.VariantType.Int32
    return ua.VariantType.Double


def node_id_string(asset: str, signal: str) -> str:
    return f"{asset}/{signal}"


POLICY_NAMES = ("Basic256Sha256", "Aes128Sha256RsaOaep")


def policy_name(name: str) -> str:
    """The asyncua spelling of a policy name (``Aes128_Sha256_RsaOaep`` from OPC UA URIs is accepted too)."""
    key = name.replace("_", "")
    if key not in POLICY_NAMES:
        raise ValueError(
            f"unknown OPC UA security policy {name!r}: expected one of {', '.join(POLICY_NAMES)}"
        )
    return key


@dataclass
class OpcUaSecurity:
    """Optional security: policies x Sign/SignAndEncrypt with a certificate, username and X.509 user login."""

    modes: tuple[str, ...] = ()  # "Sign", "SignAndEncrypt"; empty = None only
    cert_dir: Path | None = None
    username: str | None = None
    password: str | None = None  # read from an environment variable by the CLI, never from argv
    policies: tuple[str, ...] = ("Basic256Sha256",)  # and/or "Aes128Sha256RsaOaep"; used with modes
    user_certificates: tuple[Path, ...] = ()  # trusted X.509 user certificates (.der/.pem)

    def policy_types(self) -> list[ua.SecurityPolicyType]:
        """The secured endpoints (every policy with every mode); never the None endpoint."""
        if not self.policies:
            raise ValueError("OPC UA security needs at least one security policy")
        for m in self.modes:
            if m not in ("Sign", "SignAndEncrypt"):
                raise ValueError(f"unknown OPC UA security mode {m!r}: expected Sign or SignAndEncrypt")
        return [
            getattr(ua.SecurityPolicyType, f"{policy_name(p)}_{m}")
            for p in dict.fromkeys(self.policies)
            for m in self.modes
        ]


class _Users(UserManager):
    """Username/password and/or trusted X.509 user certificates; everything else is refused."""

    def __init__(self, username: str | None, password: str | None, certificates: dict[bytes, str]) -> None:
        self.username, self.password, self.certificates = username, password, certificates

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if certificate is not None and username is None:
            # asyncua passes the X509IdentityToken's CertificateData after verifying its signature
            # (the leaf, possibly followed by its chain; DER is self-delimiting, so a prefix match is exact).
            der = bytes(certificate)
            for trusted, name in self.certificates.items():
                if der.startswith(trusted):
                    return User(role=UserRole.User, name=name)
            log.warning(
                "OPC UA login refused for an untrusted user certificate (SHA-256 of the token %s)",
                hashlib.sha256(der).hexdigest()[:16],
            )
            return None
        if username is None or password is None or self.username is None or self.password is None:
            return None
        if username == self.username and hmac.compare_digest(password.encode(), self.password.encode()):
            return User(role=UserRole.User, name=username)
        log.warning("OPC UA login refused for user %r", username)
        return None


def load_user_certificates(paths: tuple[Path, ...]) -> dict[bytes, str]:
    """DER bytes -> user name (the certificate's common name, else its file name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    out: dict[bytes, str] = {}
    for path in paths:
        data = Path(path).read_bytes()
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(data)
        )
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        out[cert.public_bytes(Encoding.DER)] = str(cn[0].value) if cn else Path(path).stem
    return out


async def ensure_certificate(cert_dir: Path, host: str) -> tuple[Path, Path]:
    """A self-signed server certificate and key in ``cert_dir`` (generated when missing or invalid)."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert_dir.mkdir(parents=True, exist_ok=True)
    key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
    await setup_self_signed_certificate(
        key,
        cert,
        APPLICATION_URI,
        socket.gethostname(),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {
            "countryName": "CN",
            "stateOrProvinceName": "Chongqing",
            "localityName": "Qijiang",
            "organizationName": "Shopfloor",
        },
    )
    return cert, key


class SimOpcUaServer:
    """The address space: Objects/<site>/<area>/<line>/<asset>/<signal>, namespace ``NAMESPACE_URI``."""

    def __init__(
        self,
        assets: dict[str, list[SignalSpec]],
        host: str = "127.0.0.1",
        port: int = 4840,
        security: OpcUaSecurity | None = None,
        descriptions: dict[str, str] | None = None,
    ) -> None:
        self.assets = assets
        self.host, self.port = host, port
        self.security = security or OpcUaSecurity()
        self.descriptions = descriptions or {}
        self.server = Server()
        self.ns = 0
        self.nodes: dict[str, list[tuple[ua.NodeId, ua.VariantType]]] = {}
        self.events: dict[str, Any] = {}
        self._last_state: dict[str, int] = {}
        self.endpoint = f"opc.tcp://{host}:{port}{ENDPOINT_PATH}"

    async def start(self) -> None:
        s = self.server
        sec = self.security
        # check the whole security setup before the server is initialised
        policies = sec.policy_types() if sec.modes else [ua.SecurityPolicyType.NoSecurity]
        if sec.modes and sec.cert_dir is None:
            raise ValueError("OPC UA security needs a certificate directory")
        tokens: list[type] = []
        if sec.username:
            if not sec.password:
                raise ValueError("username login needs a password (from an environment variable)")
            tokens.append(ua.UserNameIdentityToken)
        if sec.user_certificates:
            if not sec.modes:
                # the token's signature proves the private key; without a signing endpoint nothing would
                raise ValueError("X.509 user identity needs a Sign or SignAndEncrypt endpoint")
            tokens.append(ua.X509IdentityToken)
        users = load_user_certificates(sec.user_certificates)
        await s.init()
        s.set_endpoint(self.endpoint)
        s.set_server_name("Shopfloor plant simulator")
        await s.set_application_uri(APPLICATION_URI)
        if sec.modes and sec.cert_dir is not None:
            cert, key = await ensure_certificate(sec.cert_dir, self.host)
            await s.load_certificate(str(cert))
            await s.load_private_key(str(key))
        s.set_security_policy(policies)  # with security: no NoSecurity endpoint
        if tokens:  # only these identities; otherwise asyncua's default (anonymous and any login)
            s.iserver.set_user_manager(_Users(sec.username, sec.password, users))
            s.set_identity_tokens(tokens)
        self.ns = await s.register_namespace(NAMESPACE_URI)
        await self._build()
        await s.start()
        log.info("OPC UA server on %s (namespace %s)", self.endpoint, NAMESPACE_URI)

    async def _build(self) -> None:
        ns = self.ns
        objects = self.server.nodes.objects
        folders: dict[str, Any] = {}
        for path, specs in self.assets.items():
            parts = path.split("/")
            parent = objects
            for depth in range(1, len(parts)):
                fpath = "/".join(parts[:depth])
                if fpath not in folders:
                    folders[fpath] = await parent.add_folder(
                        ua.NodeId(fpath, ns), ua.QualifiedName(parts[depth - 1], ns)
                    )
                parent = folders[fpath]
            obj = await parent.add_object(ua.NodeId(path, ns), ua.QualifiedName(parts[-1], ns))
            if path in self.descriptions:
                await obj.write_attribute(
                    ua.AttributeIds.Description,
                    ua.DataValue(ua.Variant(ua.LocalizedText(self.descriptions[path]))),
                )
            await obj.write_attribute(
                ua.AttributeIds.EventNotifier, ua.DataValue(ua.Variant(1, ua.VariantType.Byte))
            )
            self.events[path] = await self.server.get_event_generator(ua.ObjectIds.BaseEventType, obj)
            nodes = []
            for spec in specs:
                vt = variant_type(spec)
                init: Any = (
                    False if vt == ua.VariantType.Boolean else 0 if vt != ua.VariantType.Double else 0.0
                )
                var = await obj.add_variable(
                    ua.NodeId(node_id_string(path, spec.name), ns),
                    ua.QualifiedName(spec.name, ns),
                    ua.Variant(init, vt),
                )
                await var.write_attribute(
                    ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(spec.description)))
                )
                if vt == ua.VariantType.Double or spec.counter:
                    await var.add_property(
                        ua.NodeId(node_id_string(path, spec.name) + ".EngineeringUnits", ns),
                        ua.QualifiedName("EngineeringUnits", 0),
                        eu_information(spec.unit),
                    )
                    await var.add_property(
                        ua.NodeId(node_id_string(path, spec.name) + ".EURange", ns),
                        ua.QualifiedName("EURange", 0),
                        ua.Range(spec.low, spec.high),
                    )
                nodes.append((var.nodeid, vt))
            self.nodes[path] = nodes

    async def stop(self) -> None:
        await self.server.stop()

    async def publish(self, step: int, ts_ns: int, column: Column) -> None:
        src = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC)
        now = datetime.now(UTC)
        codes = {st: getattr(ua.StatusCodes, STATUS_OPCUA[st]) for st in Status}
        for path, nodes in self.nodes.items():
            values, status = column[path]
            vl, sl = values.tolist(), status.tolist()
            for (nid, vt), v, st in zip(nodes, vl, sl, strict=True):
                if vt == ua.VariantType.Double:
                    val: Any = float(v)
                elif vt == ua.VariantType.Boolean:
                    val = bool(v > 0.5)
                else:
                    val = int(v) if v == v else 0
                dv = ua.DataValue(
                    ua.Variant(val, vt),
                    ua.StatusCode(codes[Status(st)]),
                    SourceTimestamp=src,
                    ServerTimestamp=now,
                )
                await self.server.write_attribute_value(nid, dv)
            state = int(vl[0])
            if self._last_state.get(path) not in (None, state):
                ev = self.events[path]
                ev.event.Severity = 500 if state == 6 else 100
                ev.event.Message = ua.LocalizedText(f"{path}: state {self._last_state[path]} -> {state}")
                await ev.trigger(time_attr=src)
            self._last_state[path] = state
