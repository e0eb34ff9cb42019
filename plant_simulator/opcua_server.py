"""OPC UA server of the virtual plant (asyncua): site/area/line folders, an object per asset.

Variables carry EngineeringUnits, EURange, SourceTimestamp = simulation time, sensor-fault StatusCodes.
Until its first real value a variable is Bad_WaitingForInitialData with no SourceTimestamp. With
security on, only client application certificates in the trust directory are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua, uamethod
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole
from asyncua.crypto.security_policies import SecurityPolicy, SecurityPolicyFactory, SecurityPolicyNone
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

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


def waiting_value() -> ua.DataValue:
    """A variable's value until the model has given it one: no value, no timestamps, and the status
    Bad_WaitingForInitialData (Part 4 §7.39), so no client can take it for a measurement."""
    return ua.DataValue(
        ua.Variant(None, ua.VariantType.Null), ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)
    )


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
    trust_dir: Path | None = None  # trusted client application certificates; default <cert_dir>/trusted

    def client_trust_dir(self) -> Path | None:
        if self.trust_dir is not None:
            return Path(self.trust_dir)
        return None if self.cert_dir is None else Path(self.cert_dir) / "trusted"

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
    """A self-signed server certificate and key in ``cert_dir`` (generated when missing or invalid).

    The directory is mode 700 and the key 600 (the directory is closed before the key is written).
    """
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert_dir = Path(cert_dir)
    cert_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_dir.chmod(0o700)
    key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
    if key.exists():
        key.chmod(0o600)
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
    key.chmod(0o600)
    return cert, key


def _leaf(der: bytes) -> bytes:
    """The first certificate of a DER chain (peers may send their chain concatenated)."""
    if len(der) < 2 or der[0] != 0x30:
        return der
    n = der[1]
    if n < 0x80:
        return der[: 2 + n]
    width = n & 0x7F
    return der[: 2 + width + int.from_bytes(der[2 : 2 + width], "big")]


def _load_cert(data: bytes) -> x509.Certificate:
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _subject(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else cert.subject.rfc4514_string()


def _fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class ClientTrust:
    """The client application certificates the server accepts: those in ``trust_dir``, or issued by
    a CA certificate there. The directory is read at every check, so a copied certificate is
    accepted at the client's next attempt without a restart; a refused one is saved to
    ``rejected_dir`` and logged once with the command that trusts it."""

    def __init__(self, trust_dir: Path, rejected_dir: Path) -> None:
        self.trust_dir, self.rejected_dir = Path(trust_dir), Path(rejected_dir)
        self.refused: dict[str, Path] = {}  # SHA-256 -> where the certificate was saved

    def trusted(self) -> list[x509.Certificate]:
        out: list[x509.Certificate] = []
        if not self.trust_dir.is_dir():
            return out
        for path in sorted(self.trust_dir.iterdir()):
            if path.suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
                continue
            try:
                out.append(_load_cert(path.read_bytes()))
            except (OSError, ValueError):
                log.warning("OPC UA trust list: %s is not a certificate; ignored", path)
        return out

    def refusal(self, der: bytes | None) -> int | None:
        """The status code to refuse ``der`` with, or None when it is trusted."""
        if not der:
            return ua.StatusCodes.BadSecurityChecksFailed
        leaf = _leaf(bytes(der))
        try:
            cert = x509.load_der_x509_certificate(leaf)
        except ValueError:
            return ua.StatusCodes.BadCertificateInvalid
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return ua.StatusCodes.BadCertificateTimeInvalid
        trusted = self.trusted()
        if any(t.public_bytes(Encoding.DER) == leaf for t in trusted):
            return None
        for ca in trusted:
            try:
                cert.verify_directly_issued_by(ca)
            except Exception:  # wrong issuer, bad signature or unsupported key: not issued by this one
                continue
            return None
        return ua.StatusCodes.BadCertificateUntrusted

    def check(self, der: bytes | None) -> int | None:
        """``refusal`` that also saves and reports a refused certificate (once per certificate)."""
        code = self.refusal(der)
        if code is None or not der:
            if code is not None:
                log.warning("OPC UA secure channel without a client certificate refused")
            return code
        leaf = _leaf(bytes(der))
        fp = _fingerprint(leaf)
        if fp in self.refused:
            return code
        name = "client"
        try:
            cert = x509.load_der_x509_certificate(leaf)
            name = _subject(cert)
        except ValueError:
            pass
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "client"
        saved = self.rejected_dir / f"{safe}-{fp.replace(':', '')[:16].lower()}.der"
        try:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            saved.write_bytes(leaf)
        except OSError as exc:
            log.warning("could not save the refused client certificate to %s: %s", saved, exc)
        self.refused[fp] = saved
        log.warning(
            "OPC UA client certificate refused (%s): subject %r, SHA-256 %s; saved to %s. "
            "If it is your client, trust it with: mkdir -p %s && cp %s %s/",
            _status_text(code),
            name,
            fp,
            saved,
            self.trust_dir,
            saved,
            self.trust_dir,
        )
        return code


def _status_text(code: int) -> str:
    for name in dir(ua.StatusCodes):
        if not name.startswith("_") and getattr(ua.StatusCodes, name) == code:
            return name
    return f"0x{code:08X}"


class _ChannelTrust(PermissionRuleset):
    """Per secure channel: every request of a channel whose client certificate is not trusted fails.

    asyncua checks ``ClientCertificate`` only in CreateSession (and only when the client sends one);
    this closes the rest: a channel opened with an untrusted certificate can read nothing.
    """

    def __init__(self, code: int | None, inner: PermissionRuleset | None) -> None:
        self.code, self.inner = code, inner

    def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
        if self.code is not None:
            raise ServiceError(self.code)
        return True if self.inner is None else bool(self.inner.check_validity(user, action_type_id, body))


class _TrustingPolicyFactory(SecurityPolicyFactory):
    """The server's policy factory, checking each secure channel's client certificate."""

    def __init__(self, base: SecurityPolicyFactory, trust: ClientTrust) -> None:
        super().__init__(
            base.cls,
            base.mode,
            base.certificate,
            base.private_key,
            permission_ruleset=base.permission_ruleset,
            certificate_chain=base.certificate_chain,
        )
        self.trust = trust

    def create(self, peer_certificate: bytes | None) -> SecurityPolicy:
        policy = super().create(peer_certificate)
        policy.permissions = _ChannelTrust(self.trust.check(peer_certificate), self.permission_ruleset)
        return policy


class _TrustListServer(Server):
    """An asyncua Server whose secured endpoints accept only trusted client certificates."""

    client_trust: ClientTrust | None = None

    async def _setup_server_nodes(self) -> None:
        await super()._setup_server_nodes()
        if self.client_trust is None:
            return
        policies = getattr(self, "_policies", None)
        if not isinstance(policies, list) or not all(isinstance(f, SecurityPolicyFactory) for f in policies):
            raise RuntimeError(
                "this asyncua version builds its security policies differently; "
                "the simulator cannot enforce its client trust list (refusing to start unchecked)"
            )
        trust = self.client_trust
        policies[:] = [
            f if f.cls is SecurityPolicyNone else _TrustingPolicyFactory(f, trust) for f in policies
        ]


class SimOpcUaServer:
    """The address space: Objects/<site>/<area>/<line>/<asset>/<signal>, namespace ``NAMESPACE_URI``."""

    def __init__(
        self,
        assets: dict[str, list[SignalSpec]],
        host: str = "127.0.0.1",
        port: int = 4840,
        security: OpcUaSecurity | None = None,
        descriptions: dict[str, str] | None = None,
        on_trip: Callable[[str, float], None] | None = None,
    ) -> None:
        self.assets = assets
        self.on_trip = on_trip  # with it, every asset has a Trip(seconds) method
        self.host, self.port = host, port
        self.security = security or OpcUaSecurity()
        self.descriptions = descriptions or {}
        self.server = _TrustListServer()
        self.client_trust: ClientTrust | None = None
        self.ns = 0
        self.nodes: dict[str, list[tuple[ua.NodeId, ua.VariantType]]] = {}
        self.events: dict[str, Any] = {}
        self._last_state: dict[str, int] = {}
        self._ready = False
        self._listening = False
        self.endpoint = f"opc.tcp://{host}:{port}{ENDPOINT_PATH}"

    async def start(self) -> None:
        """Build the address space (unless ``setup`` did) and listen."""
        await self.setup()
        await self.server.start()
        self._listening = True
        log.info("OPC UA server on %s (namespace %s)", self.endpoint, NAMESPACE_URI)

    async def setup(self) -> None:
        """Everything but listening: security, the address space. Values may be published after this
        and before ``start``, so that no client ever sees a variable without its first value."""
        if self._ready:
            return
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
            trust_dir = sec.client_trust_dir()
            assert trust_dir is not None
            self.client_trust = ClientTrust(trust_dir, Path(sec.cert_dir) / "rejected")
            s.client_trust = self.client_trust  # each secure channel's certificate
            s.set_certificate_validator(self._validate_client)  # and CreateSession's ClientCertificate
            n_trusted = len(self.client_trust.trusted())
            hint = (
                f"; copy each client's certificate there (a refused one is saved to "
                f"{self.client_trust.rejected_dir} with the command that trusts it)"
            )
            log.log(
                logging.INFO if n_trusted else logging.WARNING,
                "OPC UA clients must present a certificate from %s (%d there now)%s",
                trust_dir,
                n_trusted,
                "" if n_trusted else hint,
            )
        s.set_security_policy(policies)  # with security: no NoSecurity endpoint
        if tokens:  # only these identities; otherwise asyncua's default (anonymous and any login)
            s.iserver.set_user_manager(_Users(sec.username, sec.password, users))
            s.set_identity_tokens(tokens)
        self.ns = await s.register_namespace(NAMESPACE_URI)
        await self._build()
        self._ready = True

    async def _validate_client(self, cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        assert self.client_trust is not None
        code = self.client_trust.check(cert.public_bytes(Encoding.DER))
        if code is not None:
            raise ServiceError(code)

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
            if self.on_trip is not None:
                await obj.add_method(
                    ua.NodeId(f"{path}.Trip", ns),
                    ua.QualifiedName("Trip", ns),
                    self._trip_method(path),
                    [ua.VariantType.Double],
                    [ua.VariantType.Boolean],
                )
            nodes = []
            for spec in specs:
                vt = variant_type(spec)
                init: Any = (
                    False if vt == ua.VariantType.Boolean else 0 if vt != ua.VariantType.Double else 0.0
                )
                var = await obj.add_variable(
                    ua.NodeId(node_id_string(path, spec.name), ns),
                    ua.QualifiedName(spec.name, ns),
                    ua.Variant(init, vt),  # only fixes the DataType: replaced before anyone can read it
                )
                await self.server.write_attribute_value(var.nodeid, waiting_value())
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

    def _trip_method(self, path: str) -> Callable[..., Any]:
        """The Trip method of one asset: down with an alarm for ``seconds`` of simulated time (1 .. 86400)."""

        @uamethod
        def trip(_parent: ua.NodeId, seconds: float) -> bool:
            if not (isinstance(seconds, int | float) and 1 <= seconds <= 86400):
                raise ua.UaStatusCodeError(ua.StatusCodes.BadOutOfRange)
            assert self.on_trip is not None
            self.on_trip(path, float(seconds))
            return True

        return trip

    async def stop(self) -> None:
        """Stop listening (a server that was set up but never listened has nothing to stop)."""
        if self._listening:
            self._listening = False
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
