"""The read side of the historian: the ``HistorianReader`` interface, its frames, and a sync facade.

Dashboards, analytics jobs and reports read through ``HistorianReader`` (see
``historian.factory.open_reader``); only the writer needs the full ``Store``, which extends it.
``SyncReader`` serves callers that are not async (a Dash callback in a WSGI worker thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from shopfloor.model import Event, EventKind, Sample, SeriesKey

log = logging.getLogger(__name__)

T = TypeVar("T")

AggFn = Literal["mean", "min", "max", "last", "count"]
"""The aggregates every backend computes itself; the one place their names are written."""

AGG_FNS: tuple[AggFn, ...] = get_args(AggFn)


@dataclass(frozen=True, slots=True)
class SeriesFrame:
    """One series over time: timestamps (UTC ns), values, quality (raw queries only) and, for a
    text signal's raw query, its text (an object array: the string, or None where there is none)."""

    ts: np.ndarray  # int64
    value: np.ndarray  # float64 (NaN = no value)
    quality: np.ndarray | None = None  # uint8, raw queries
    text: np.ndarray | None = None  # object, raw queries of text signals; None when no row is text

    def __len__(self) -> int:
        return len(self.ts)


def check_agg(fn: str, every_ns: int) -> None:
    """ValueError unless ``fn`` is one of AGG_FNS and ``every_ns`` is positive."""
    if fn not in AGG_FNS:
        raise ValueError(f"unknown aggregate {fn!r}; expected one of {', '.join(AGG_FNS)}")
    if every_ns <= 0:
        raise ValueError("every_ns must be positive")


class HistorianReader(ABC):
    """Read access to a time-series store. Failures are StoreError (StoreUnavailable mostly)."""

    name: str = "store"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect if needed; may raise StoreUnavailable. Readers never create databases or files."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abstractmethod
    async def list_series(self) -> list[SeriesKey]:
        """Every series the store holds, sorted."""

    @abstractmethod
    async def latest(self, asset: str | None = None) -> list[Sample]:
        """The last sample of every series (of one asset, if given), sorted by asset and signal."""

    @abstractmethod
    async def query_raw(
        self, asset: str, signal: str, start_ns: int, end_ns: int, limit: int | None = None
    ) -> SeriesFrame:
        """Samples with start_ns <= ts < end_ns in time order."""

    @abstractmethod
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
        """One value per time bucket (buckets aligned to the epoch, empty buckets omitted).

        Computed by the store. Bad-quality samples are left out unless ``include_bad``.
        """

    @abstractmethod
    async def query_events(
        self,
        start_ns: int,
        end_ns: int,
        asset: str | None = None,
        kind: EventKind | None = None,
    ) -> list[Event]:
        """Events with start_ns <= ts < end_ns, ordered by (ts, asset, kind, key, write order)."""


class ReaderClosedError(RuntimeError):
    """A call on a SyncReader after close()."""


class SyncReader:
    """Blocking access to a HistorianReader, for threads that are not running an event loop.

    One background thread runs an asyncio loop that owns the reader: it is opened there (lazily on
    the first call, or by ``open()`` / ``with``) and every method submits a coroutine to it. Any
    number of threads may call at once; no lock is held while a call waits, and the loop only awaits
    (the backends do their blocking I/O and parsing in worker threads). A call that gets no answer
    within ``timeout_s`` raises TimeoutError; store failures raise the store's StoreError. After
    ``close()`` every call raises ReaderClosedError.
    """

    def __init__(self, reader: HistorianReader, timeout_s: float = 30.0) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.reader = reader
        self.timeout_s = float(timeout_s)
        self._lock = threading.Lock()  # guards _closed against submissions; never held while waiting
        self._closed = False
        self._opened = False  # touched on the loop thread only
        self._open_lock = asyncio.Lock()  # binds to the loop on first use
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, name=f"historian-reader-{reader.name}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SyncReader({self.reader!r}, timeout_s={self.timeout_s:g}, {state})"

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the loop thread -----------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            # Worker threads still blocked in I/O (a hung server) are not waited for.
            self._loop.close()

    async def _ensure_open(self) -> None:
        if self._opened:
            return
        async with self._open_lock:
            if not self._opened:
                await self.reader.open()
                self._opened = True

    async def _run(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        await self._ensure_open()
        return await fn(*args)

    async def _shutdown(self) -> None:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._opened:
            self._opened = False
            await self.reader.close()

    # -- calling -------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("SyncReader called from its own loop thread; await the reader instead")
        with self._lock:
            if self._closed:
                raise ReaderClosedError(f"{what}: this SyncReader ({self.reader.name}) is closed")
            fut = asyncio.run_coroutine_threadsafe(self._run(fn, args), self._loop)
        done, _ = concurrent.futures.wait([fut], self.timeout_s)
        if not done:
            fut.cancel()
            raise TimeoutError(
                f"historian {self.reader.name}: {what} got no answer within {self.timeout_s:g} s"
            )
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            if self._closed:
                raise ReaderClosedError(f"{what}: the SyncReader was closed during the call") from None
            raise

    def open(self) -> None:
        """Open the reader now (otherwise the first call does); raises what the store's open raises."""

        async def noop() -> None:
            return None

        self._call("open", noop)

    def close(self, timeout_s: float | None = None) -> None:
        """Cancel calls in flight, close the reader and stop the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
        except Exception as exc:  # closing must not fail the caller; say why it was untidy
            log.warning("historian reader %s: close did not finish cleanly: %r", self.reader.name, exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> SyncReader:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the reader's methods ------------------------------------------------------------------
    def list_series(self) -> list[SeriesKey]:
        return self._call("list_series", self.reader.list_series)

    def latest(self, asset: str | None = None) -> list[Sample]:
        return self._call("latest", self.reader.latest, asset)

    def query_raw(
        self, asset: str, signal: str, start_ns: int, end_ns: int, limit: int | None = None
    ) -> SeriesFrame:
        return self._call("query_raw", self.reader.query_raw, asset, signal, start_ns, end_ns, limit)

    def query_agg(
        self,
        asset: str,
        signal: str,
        start_ns: int,
        end_ns: int,
        every_ns: int,
        fn: AggFn,
        include_bad: bool = False,
    ) -> SeriesFrame:
        return self._call(
            "query_agg",
            self.reader.query_agg,
            asset,
            signal,
            start_ns,
            end_ns,
            every_ns,
            fn,
            include_bad,
        )

    def query_events(
        self,
        start_ns: int,
        end_ns: int,
        asset: str | None = None,
        kind: EventKind | None = None,
    ) -> list[Event]:
        return self._call("query_events", self.reader.query_events, start_ns, end_ns, asset, kind)
