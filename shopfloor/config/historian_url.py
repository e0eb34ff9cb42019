"""Historian URLs: which backend, where, and which database or bucket, in one string.

``sqlite:///PATH``, ``influxdb-v1+http://HOST:PORT/DB``, ``influxdb-v2+https://HOST/BUCKET?org=ORG``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

BACKENDS = ("sqlite", "influxdb-v1", "influxdb-v2")


@dataclass(frozen=True, slots=True)
class StoreURL:
    backend: str  # one of BACKENDS
    base_url: str  # http(s)://host:port for InfluxDB; "" for sqlite
    database: str  # sqlite file path, v1 database, or v2 bucket
    org: str = ""

    def redacted(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.database}"
        org = f"?org={self.org}" if self.org else ""
        return f"{self.backend}+{self.base_url}/{self.database}{org}"


def parse_url(url: str) -> StoreURL:
    """Parse and check a historian URL; ``ValueError`` says what a valid one looks like."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"historian url {url!r} is not a URL; expected one of: {_EXAMPLES}")
    scheme, rest = url.split("://", 1)
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise ValueError("sqlite url needs a file path: sqlite:///var/shopfloor.db")
        return StoreURL("sqlite", "", path)
    backend, _, transport = scheme.partition("+")
    if backend not in ("influxdb-v1", "influxdb-v2") or transport not in ("http", "https"):
        raise ValueError(f"unknown historian url scheme {scheme!r}; expected one of: {_EXAMPLES}")
    parts = urlsplit(f"{transport}://{rest}")
    if parts.password or parts.username:
        raise ValueError(
            "credentials may not be written in the historian url: use username and "
            "password_env/password_file (v1) or token_env/token_file (v2)"
        )
    if not parts.hostname:
        raise ValueError(f"historian url {url!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"historian url {url!r} has an invalid port") from exc
    database = parts.path.strip("/")
    if not database or "/" in database:
        what = "database" if backend == "influxdb-v1" else "bucket"
        raise ValueError(f"historian url {url!r} must name one {what} as its path, e.g. /shopfloor")
    query = parse_qs(parts.query)
    org = query.get("org", [""])[0]
    if backend == "influxdb-v2" and not org:
        raise ValueError(f"influxdb-v2 url {url!r} needs ?org=ORGANISATION")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    base = f"{transport}://{host}" + (f":{port}" if port else "")
    return StoreURL(backend, base, database, org)


_EXAMPLES = (
    "sqlite:///var/shopfloor.db, influxdb-v1+http://127.0.0.1:8086/shopfloor, "
    "influxdb-v2+http://127.0.0.1:8086/shopfloor?org=plant"
)
