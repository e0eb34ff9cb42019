"""What the InfluxDB v1 and v2 backends share: line-protocol encoding, HTTP and InfluxQL reads.

HTTP is urllib3 (already under influxdb-client) run in worker threads: a write on the wire then
overlaps with encoding the next batch on the event loop, which an in-loop client did not allow.
Reads go to /query (InfluxQL, epoch=ns, chunked); the answer is parsed and turned into frames in
the same worker thread, so the event loop (a SyncReader's, say) only ever waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlencode

import urllib3

from historian import influxql
from historian.base import AggFn, SeriesFrame, Store
from historian.errors import StoreRejected, StoreUnavailable
from historian.line_protocol import LineEncoder, encode_events
from shopfloor.batch import SampleBatch
from shopfloor.config.historian_url import StoreURL
from shopfloor.model import Event, EventKind, Sample, SeriesKey

T = TypeVar("T")

READ_THREADS = 4  # queries in flight at once per store; more callers queue (a SyncReader's threads)

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
        # one keep-alive connection per thread that can use it: the writer's and every reader's
        self._http = urllib3.PoolManager(
            num_pools=2, maxsize=READ_THREADS + 1, retries=False, timeout=urllib3.Timeout(total=timeout_s)
        )
        self._writes = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-write")
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix=f"{self.name}-read")

    # -- plumbing ------------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _query_params(self) -> dict[str, str]:
        return {"db": self.url.database}

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: bytes | None,
        timeout_s: float | None = None,
    ) -> tuple[int, str, Any]:
        """Blocking HTTP call (run in a thread); connection trouble becomes StoreUnavailable."""
        url = f"{self.url.base_url}{path}?{urlencode(params)}"
        # only a shorter bound of its own (a ping) is passed: timeout=None would mean "wait for ever"
        extra: dict[str, Any] = {"timeout": urllib3.Timeout(total=timeout_s)} if timeout_s is not None else {}
        try:
            resp = self._http.request(
                method, url, body=body, headers=self._auth_headers(), preload_content=True, **extra
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailable(f"{path}: {type(exc).__name__}: {exc}", unreachable=True) from exc
        return resp.status, resp.data.decode("utf-8", "replace"), resp.headers

    async def _post(self, path: str, params: dict[str, str], data: Any, what: str) -> tuple[int, str, Any]:
        pool = self._writes if path == "/write" else self._reads
        return await asyncio.get_running_loop().run_in_executor(
            pool, self._request, "POST", path, params, data
        )

    async def _get(self, path: str) -> int:
        status, _, _ = await asyncio.get_running_loop().run_in_executor(
            self._reads, self._request, "GET", path, {}, None
        )
        return status

    async def ping(self) -> bool:
        """True when the server answers its health endpoint (``/ping``: 204) within 2 s."""
        try:
            status, _, _ = await asyncio.get_running_loop().run_in_executor(
                self._reads, self._request, "GET", "/ping", {}, None, min(self.timeout_s, 2.0)
            )
        except StoreUnavailable:
            return False
        return status in (200, 204)

    async def close(self) -> None:
        self._writes.shutdown(wait=True)
        self._writes = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-write")
        # a query stuck on a hung server ends by its own timeout; closing does not wait for it
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix=f"{self.name}-read")
        self._http.clear()

    async def query(self, q: str) -> list[dict[str, Any]]:
        """The ``series`` of an InfluxQL answer; a refused statement raises StoreRejected."""
        return await self._select(q, _same)

    async def _select(self, q: str, convert: Callable[[list[dict[str, Any]]], T]) -> T:
        """Run ``q`` and ``convert`` its series, both in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._reads, self._query_blocking, q, convert)

    def _query_blocking(self, q: str, convert: Callable[[list[dict[str, Any]]], T]) -> T:
        params = {**self._query_params(), "q": q, "epoch": "ns", "chunked": "true", "chunk_size": "20000"}
        status, body, headers = self._request("POST", "/query", params, None)
        if status != 200:
            raise classify_http(status, body, headers, "query")
        try:
            series = influxql.parse_results(body.encode())
        except ValueError as exc:  # the server refused the statement (or sent something unreadable)
            if "database not found" in str(exc):
                raise StoreUnavailable(f"query: {exc}; does the database/bucket exist?") from exc
            raise StoreRejected(f"query: {exc}") from exc
        return convert(series)

    # -- writing -------------------------------------------------------------------------------
    def encode_samples(self, batch: SampleBatch) -> bytes:
        return self._encoder.encode(batch)

    def encode_events(self, events: Sequence[Event], seqs: Sequence[int] | None = None) -> bytes:
        return encode_events(events, seqs)

    # -- reading -------------------------------------------------------------------------------
    async def query_raw(
        self, asset: str, signal: str, start_ns: int, end_ns: int, limit: int | None = None
    ) -> SeriesFrame:
        q = influxql.raw_query(asset, signal, start_ns, end_ns, limit)
        return await self._select(q, _raw_frame)

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
        return await self._select(q, _agg_frame)

    async def latest(self, asset: str | None = None) -> list[Sample]:
        return await self._select(influxql.latest_query(asset), influxql.samples_from_latest)

    async def list_series(self) -> list[SeriesKey]:
        return await self._select(influxql.SHOW_SERIES, influxql.series_keys)

    async def query_events(
        self, start_ns: int, end_ns: int, asset: str | None = None, kind: EventKind | None = None
    ) -> list[Event]:
        q = influxql.events_query(start_ns, end_ns, asset, kind)
        return await self._select(q, influxql.events_from)


def _same(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return series


def _raw_frame(series: list[dict[str, Any]]) -> SeriesFrame:
    return influxql.frame_from(series, with_quality=True)


def _agg_frame(series: list[dict[str, Any]]) -> SeriesFrame:
    return influxql.frame_from(series, with_quality=False)
