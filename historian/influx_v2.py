"""InfluxDB v2 write API backend (InfluxDB 2.x, 3.x, Cloud, VictoriaMetrics) via influxdb-client.

influxdb-client serves only as a synchronous HTTP transport (run in a thread, its retries off):
our writer owns batching, retry and the spool. Reads use InfluxQL on the v1-compatible /query.
"""

from __future__ import annotations

import asyncio

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from historian.errors import StoreUnavailable
from historian.influx_common import InfluxStore, classify_http
from shopfloor.config.historian_url import StoreURL


class InfluxV2Store(InfluxStore):
    name = "influxdb-v2"

    def __init__(self, url: StoreURL, token: str | None = None, timeout_s: float = 10.0) -> None:
        super().__init__(url, timeout_s)
        self._token = token or ""
        self._client = InfluxDBClient(
            url=url.base_url, token=self._token, org=url.org, timeout=int(timeout_s * 1000)
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def __repr__(self) -> str:  # never show the token
        return f"InfluxV2Store({self.url.redacted()!r})"

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._token}"} if self._token else {}

    def _write_blocking(self, payload: bytes) -> None:
        self._write_api.write(
            bucket=self.url.database,
            org=self.url.org,
            record=payload,
            write_precision=WritePrecision.NS,  # type: ignore[arg-type]  # its stub types NS as str
        )

    async def send(self, payload: bytes) -> None:
        if not payload:
            return
        try:
            await asyncio.to_thread(self._write_blocking, payload)
        except ApiException as exc:
            if not exc.status:
                raise StoreUnavailable(f"write: {exc.reason}", unreachable=True) from exc
            body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
            raise classify_http(int(exc.status or 0), body, exc.headers, "write") from exc
        except (Urllib3Error, OSError) as exc:
            raise StoreUnavailable(f"write: {type(exc).__name__}: {exc}", unreachable=True) from exc

    async def close(self) -> None:
        await super().close()
        await asyncio.to_thread(self._client.close)
