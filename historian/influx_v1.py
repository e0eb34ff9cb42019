"""InfluxDB 1.x backend: line protocol to /write, InfluxQL from /query, optional user/password.

The password comes from the environment or a file (see shopfloor.secrets), sent as HTTP Basic auth.
"""

from __future__ import annotations

import base64

from historian.errors import StoreRejected, StoreUnavailable
from historian.influx_common import InfluxStore, classify_http
from historian.influxql import ident
from shopfloor.config.historian_url import StoreURL


class InfluxV1Store(InfluxStore):
    name = "influxdb-v1"

    def __init__(
        self,
        url: StoreURL,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        create_database: bool = True,
    ) -> None:
        super().__init__(url, timeout_s)
        self._username = username
        self._password = password
        self.create_database = create_database

    def _auth_headers(self) -> dict[str, str]:
        if self._username:
            token = base64.b64encode(f"{self._username}:{self._password or ''}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {}

    def __repr__(self) -> str:  # never show the password
        return f"InfluxV1Store({self.url.redacted()!r}, username={self._username!r})"

    async def open(self) -> None:
        status = await self._get("/ping")
        if status != 204:
            raise StoreUnavailable(f"ping {self.url.base_url}: HTTP {status}")
        if self.create_database:
            await self._create_database()

    async def _create_database(self) -> None:
        """CREATE DATABASE; a refusal (no admin rights) is reported as unavailable, to be retried."""
        try:
            await self.query(f"CREATE DATABASE {ident(self.url.database)}")
        except StoreRejected as exc:
            raise StoreUnavailable(
                f"{exc}; create database {self.url.database!r} or give the user the right to"
            ) from exc

    async def send(self, payload: bytes) -> None:
        if not payload:
            return
        params = {"db": self.url.database, "precision": "ns"}
        status, body, headers = await self._post("/write", params, payload, "write")
        if status == 204:
            return
        if status == 404 and "database not found" in body and self.create_database:
            await self._create_database()
        raise classify_http(status, body, headers, "write")
