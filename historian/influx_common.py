"""What the InfluxDB v1 and v2 backends share: line-protocol encoding and InfluxQL reads.

Reads go to /query (InfluxQL, epoch=ns, chunked) over one aiohttp session per store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from historian import influxql
from historian.base import AggFn, SeriesFrame, Store
from historian.errors import StoreRejected, StoreUnavailable
from historian.line_protocol import LineEncoder, encode_events
from historian.url import StoreURL
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Sample, SeriesKey

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; fall back to our own backoff


def classify_http(status: int, body: str, headers: Any, what: str) -> Exception:
    """Map an unsuccessful HTTP answer to the writer's two kinds of failure."""
    text = body.strip()[:500]
    if status in RETRYABLE_STATUS or status >= 500:
        return StoreUnavailable(f"{what}: HTTP {status} {text}", retry_after(headers))
    if status in (401, 403):
        return StoreUnavailable(
            f"{what}: HTTP {status} authentication failed ({text}); check the credentials"
        )
    if status == 404:
        return StoreUnavailable(f"{what}: HTTP 404 {text}; does the database/bucket exist?")
    return StoreRejected(f"{what}: HTTP {status} {text}")


class InfluxStore(Store):
    """Base of both InfluxDB backends; subclasses provide auth, the write call and open()."""

    def __init__(self, url: StoreURL, timeout_s: float = 10.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._encoder = LineEncoder()
        self._session: aiohttp.ClientSession | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _query_params(self) -> dict[str, str]:
        return {"db": self.url.database}

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers=self._auth_headers(),
                connector=aiohttp.TCPConnector(limit=4, ttl_dns_cache=300),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, path: str, params: dict[str, str], data: Any, what: str) -> tuple[int, str, Any]:
        session = await self.session()
        try:
            async with session.post(self.url.base_url + path, params=params, data=data) as resp:
                return resp.status, await resp.text(), resp.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StoreUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def query(self, q: str) -> list[dict[str, Any]]:
        params = {**self._query_params(), "q": q, "epoch": "ns", "chunked": "true", "chunk_size": "20000"}
        status, body, headers = await self._post("/query", params, None, "query")
        if status != 200:
            raise classify_http(status, body, headers, "query")
        return influxql.parse_results(body.encode())

    # -- writing -------------------------------------------------------------------------------
    def encode_samples(self, batch: SampleBatch) -> bytes:
        return self._encoder.encode(batch)

    def encode_events(self, events: Sequence[Event]) -> bytes:
        return encode_events(events)

    # -- reading -------------------------------------------------------------------------------
    async def query_raw(
        self, asset: str, signal: str, start_ns: int, end_ns: int, limit: int | None = None
    ) -> SeriesFrame:
        series = await self.query(influxql.raw_query(asset, signal, start_ns, end_ns, limit))
        return influxql.frame_from(series, with_quality=True)

    async def query_agg(
        self,
        asset: str,
        signal: str,
        start_ns: int,
        end_ns: int,
        every_ns: int,
        fn: AggFn,
        include_bad: bool = False,
    ) -> SeriesFrame:
        q = influxql.agg_query(asset, signal, start_ns, end_ns, every_ns, fn, include_bad)
        return influxql.frame_from(await self.query(q), with_quality=False)

    async def latest(self, asset: str | None = None) -> list[Sample]:
        return influxql.samples_from_latest(await self.query(influxql.latest_query(asset)))

    async def list_series(self) -> list[SeriesKey]:
        return influxql.series_keys(await self.query(influxql.SHOW_SERIES))

    async def query_events(
        self, start_ns: int, end_ns: int, asset: str | None = None, kind: EventKind | None = None
    ) -> list[Event]:
        return influxql.events_from(await self.query(influxql.events_query(start_ns, end_ns, asset, kind)))
