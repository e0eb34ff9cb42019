"""Client certificate (generated once, kept in the source's state dir) and the server trust list.

A server certificate is used only if it is in the trust directory (or issued by a CA there); an
untrusted one is saved under ``rejected/`` and refused with the exact copy command. No trust on first use.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connectors.opcua.config import OpcUaSettings
from connectors.opcua.status_map import status_name
from shopfloor.secrets import read_secret

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
}
MODES = {
    "None": ua.MessageSecurityMode.None_,
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
MODE_NAMES = {v: k for k, v in MODES.items()}


class SecurityError(Exception):
    """A security problem the operator must fix (the message says how); retrying alone will not help."""

    kind = "security"


class UntrustedServerCertificate(SecurityError):
    kind = "untrusted_server_certificate"


class CertificateTimeInvalid(SecurityError):
    kind = "certificate_time_invalid"


class NoMatchingEndpoint(SecurityError):
    kind = "no_matching_endpoint"

    def __init__(self, message: str, offered: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.offered = offered  # "policy/mode" of every endpoint, as security_policy/security_mode spell them


class ClientCertificateRefused(SecurityError):
    """The server does not accept this client's application certificate (not in its trust list)."""

    kind = "client_certificate_refused"


class IdentityRefused(SecurityError):
    """ActivateSession refused the configured user identity (counted with the other auth refusals)."""

    kind = "auth_refused"


_IDENTITY_CODES = {
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
}
_CLIENT_CERT_CODES = {
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateUseNotAllowed,
    ua.StatusCodes.BadCertificateUriInvalid,
    ua.StatusCodes.BadCertificateRevoked,
    ua.StatusCodes.BadCertificateIssuerRevoked,
    ua.StatusCodes.BadCertificateChainIncomplete,
}
_TOKEN_TYPES = {
    "anonymous": ua.UserTokenType.Anonymous,
    "username": ua.UserTokenType.UserName,
    "certificate": ua.UserTokenType.Certificate,
}


@dataclass(frozen=True)
class Pki:
    """Where one source keeps its certificates: own/ (ours), trusted/ (servers), rejected/."""

    root: Path
    trust_dir: Path
    application_uri: str

    @property
    def cert(self) -> Path:
        return self.root / "own" / "client-cert.der"

    @property
    def key(self) -> Path:
        return self.root / "own" / "client-key.pem"

    @property
    def rejected_dir(self) -> Path:
        return self.root / "rejected"

    @classmethod
    def for_source(cls, settings: OpcUaSettings, source: str, state_dir: Path) -> Pki:
        root = state_dir / "pki"
        app_uri = settings.application_uri or f"urn:shopfloor:{socket.gethostname()}:{source}"
        return cls(root, settings.trust_dir or root / "trusted", app_uri)


def fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _subject(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else cert.subject.rfc4514_string()


def _load_certs(directory: Path) -> list[tuple[Path, x509.Certificate]]:
    out: list[tuple[Path, x509.Certificate]] = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
            continue
        data = path.read_bytes()
        try:
            cert = (
                x509.load_pem_x509_certificate(data)
                if data.lstrip().startswith(b"-----")
                else x509.load_der_x509_certificate(data)
            )
        except ValueError:
            continue
        out.append((path, cert))
    return out


async def ensure_client_certificate(pki: Pki, log: logging.Logger) -> tuple[Path, Path]:
    """Our application instance certificate: generated on first run (or when expired), then kept."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate

    existed = pki.cert.is_file() and pki.key.is_file()
    before = pki.cert.read_bytes() if existed else b""
    pki.cert.parent.mkdir(parents=True, exist_ok=True)
    await setup_self_signed_certificate(
        pki.key,
        pki.cert,
        pki.application_uri,
        socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"organizationName": "Shopfloor", "commonName": pki.application_uri.rsplit(":", 1)[-1]},
    )
    pki.key.chmod(0o600)
    after = pki.cert.read_bytes()
    if after != before:
        log.warning(
            "OPC UA client certificate %s at %s (SHA-256 %s): the server must trust it "
            "(copy it into the server's trusted-certificates folder)",
            "renewed" if existed else "created",
            pki.cert,
            fingerprint(after),
        )
    return pki.cert, pki.key


def check_server_certificate(der: bytes, pki: Pki, endpoint: str) -> Path:
    """The trusted file matching (or issuing) the server's certificate; otherwise raise with the fix."""
    cert = x509.load_der_x509_certificate(der)
    now = datetime.now(UTC)
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise CertificateTimeInvalid(
            f"BadCertificateTimeInvalid: the certificate of {endpoint} ({_subject(cert)}) is valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, "
            f"but this machine's clock says {now:%Y-%m-%d %H:%M} UTC; renew the server certificate or fix the clock"
        )
    trusted = _load_certs(pki.trust_dir)
    for path, t in trusted:
        if t.public_bytes(Encoding.DER) == der:
            return path
    for path, ca in trusted:
        try:
            cert.verify_directly_issued_by(ca)
        except Exception:  # any failure (wrong issuer, bad signature, unsupported key) means "not issued by"
            continue
        return path
    fp = fingerprint(der)
    pki.rejected_dir.mkdir(parents=True, exist_ok=True)
    saved = pki.rejected_dir / f"{_safe(_subject(cert))}-{fp.replace(':', '')[:16].lower()}.der"
    saved.write_bytes(der)
    raise UntrustedServerCertificate(
        f"the server certificate of {endpoint} is not trusted (subject {_subject(cert)!r}, SHA-256 {fp}); "
        f"it was saved to {saved}. If this is your server (compare the fingerprint with the server's), "
        f"trust it with: mkdir -p {pki.trust_dir} && cp {saved} {pki.trust_dir}/"
    )


def _user_certificate_text(path: Path | None) -> str:
    """``path (subject 'CN', SHA-256 AB:...)``, or just the path when the file cannot be read."""
    try:
        data = Path(str(path)).read_bytes()
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(data)
        )
    except (OSError, ValueError):
        return str(path)
    return f"{path} (subject {_subject(cert)!r}, SHA-256 {fingerprint(cert.public_bytes(Encoding.DER))})"


def identity_refused(exc: Exception, settings: OpcUaSettings) -> IdentityRefused | None:
    """The server's refusal of our user identity, said in terms of the config (never the secret itself)."""
    code = getattr(exc, "code", None)
    if not isinstance(exc, ua.UaStatusCodeError) or code not in _IDENTITY_CODES:
        return None
    name, where = status_name(code), settings.endpoint
    if settings.identity == "certificate":
        return IdentityRefused(
            f"{name}: {where} refused the X.509 user identity "
            f"{_user_certificate_text(settings.user_certificate)}; the server must trust this user "
            "certificate (add it to the server's trusted user certificates), or configure another identity"
        )
    if settings.identity == "username":
        secret = f"${settings.password_env}" if settings.password_env else str(settings.password_file)
        return IdentityRefused(
            f"{name}: {where} refused the login of user {settings.username!r}; check the user name "
            f"and the password in {secret}"
        )
    return IdentityRefused(
        f"{name}: {where} refused anonymous login; configure identity 'username' or 'certificate'"
    )


def client_certificate_refused(
    exc: Exception, settings: OpcUaSettings, pki: Pki
) -> ClientCertificateRefused | None:
    """The server's refusal of our application certificate, with the file it must trust."""
    code = getattr(exc, "code", None)
    if settings.security_policy == "None" or not isinstance(exc, ua.UaStatusCodeError):
        return None
    if code not in _CLIENT_CERT_CODES:
        return None
    try:
        fp = f", SHA-256 {fingerprint(pki.cert.read_bytes())}"
    except OSError:
        fp = ""
    return ClientCertificateRefused(
        f"{status_name(code)}: {settings.endpoint} refused this client's certificate {pki.cert} "
        f"(application URI {pki.application_uri}{fp}); the server must trust it: copy that file into "
        "the server's trusted client certificates (for the Shopfloor simulator: its --opcua-trust-dir, "
        "default var/simulator-pki/trusted; it saves a refused certificate under rejected/ and logs "
        "the copy command)"
    )


def endpoint_text(e: ua.EndpointDescription) -> str:
    """``Basic256Sha256/SignAndEncrypt``: an endpoint as security_policy/security_mode spell it."""
    policy = (e.SecurityPolicyUri or "").rsplit("#", 1)[-1] or "None"
    return f"{policy}/{MODE_NAMES.get(e.SecurityMode, str(e.SecurityMode))}"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60] or "server"


def _first_cert(der: bytes) -> bytes:
    """The leaf of a DER chain (servers may send the chain concatenated)."""
    length = int.from_bytes(der[2:4], "big") + 4
    return der[:length]


async def apply_security(client: Client, settings: OpcUaSettings, pki: Pki, log: logging.Logger) -> None:
    """Configure ``client`` for the source's policy, mode and identity (before ``connect``)."""
    client.application_uri = pki.application_uri
    if settings.security_policy != "None":
        policy = POLICIES[settings.security_policy]
        mode = MODES[settings.security_mode]
        cert, key = await ensure_client_certificate(pki, log)
        # GetEndpoints needs no security (Part 4 §5.4.4); its certificate is checked before any use.
        endpoints = await client.connect_and_get_server_endpoints()
        match = [e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
        if not match:
            offered = tuple(sorted({endpoint_text(e) for e in endpoints}))
            raise NoMatchingEndpoint(
                f"{settings.endpoint} offers no {settings.security_policy}/{settings.security_mode} endpoint "
                f"(it offers {', '.join(offered) or 'no endpoint'}); change security_policy/security_mode",
                offered,
            )
        pinned = _first_cert(match[0].ServerCertificate)
        check_server_certificate(pinned, pki, settings.endpoint)
        accepted = {t.TokenType for t in match[0].UserIdentityTokens or []}
        if accepted and _TOKEN_TYPES[settings.identity] not in accepted:
            names = (
                ", ".join(sorted(k for k, v in _TOKEN_TYPES.items() if v in accepted)) or "none we support"
            )
            raise NoMatchingEndpoint(
                f"the {settings.security_policy}/{settings.security_mode} endpoint of {settings.endpoint} "
                f"does not accept identity {settings.identity!r} (it accepts: {names}); change identity"
            )
        await client.set_security(policy, str(cert), str(key), None, pinned, mode)

        async def validator(server_cert: x509.Certificate, _app: object) -> None:
            if server_cert.public_bytes(Encoding.DER) != pinned:
                raise UntrustedServerCertificate(
                    f"{settings.endpoint} presented a different certificate in CreateSession than in "
                    "GetEndpoints; refusing the session"
                )

        client.certificate_validator = validator  # type: ignore[assignment]
    if settings.identity == "username":
        password = read_secret(settings.password_env, settings.password_file, "OPC UA password")
        client.set_user(settings.username or "")
        client.set_password(password or "")
    elif settings.identity == "certificate":
        await client.load_client_certificate(str(settings.user_certificate))
        await client.load_private_key(Path(str(settings.user_private_key)))
