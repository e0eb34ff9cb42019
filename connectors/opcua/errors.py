"""Error classification for OPC UA sessions: a short kind for health counters, a readable message for logs.
Also the exception that names a lost session.
"""

from __future__ import annotations

import asyncio

from asyncua import ua

from connectors.opcua.security import SecurityError
from connectors.opcua.status_map import status_name
from shopfloor.secrets import SecretError

_AUTH = {
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadSecurityChecksFailed,
}


class SessionLost(Exception):
    """The session ended (transport, watchdog, subscription or read failure)."""


def classify(exc: BaseException) -> str:
    """A short error kind for health counters."""
    if isinstance(exc, SecurityError):
        return exc.kind
    if isinstance(exc, SecretError):
        return "secret_missing"
    if isinstance(exc, ua.UaStatusCodeError):
        code = getattr(exc, "code", None)
        if code in _AUTH:
            return "auth_refused"
        return status_name(code) if code is not None else "protocol_error"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, OSError | ConnectionError):
        return "network"
    return "protocol_error"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ua.UaStatusCodeError):
        code = getattr(exc, "code", None)
        name = status_name(code) if code is not None else type(exc).__name__
        return f"{name}: {exc}" if str(exc) and name not in str(exc) else (str(exc) or name)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
