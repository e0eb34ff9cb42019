"""The store interface every historian backend implements, and the frames queries return.

Writes are split into encode (CPU, no I/O) and send (I/O) so the writer can overlap them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Sample, SeriesKey

AggFn = Literal["mean", "min", "max", "last", "count"]
AGG_FNS: tuple[str, ...] = ("mean", "min", "max", "last", "count")

EVENTS_MEASUREMENT = "_shopfloor_events"


@dataclass(frozen=True, slots=True)
class SeriesFrame:
    """One series over time: timestamps (UTC ns), values, and quality (raw queries only)."""

    ts: np.ndarray  # int64
    value: np.ndarray  # float64 (NaN = no value)
    quality: np.ndarray | None = None  # uint8, raw queries

    def __len__(self) -> int:
        return len(self.ts)


class Store(ABC):
    """A time-series store. Backends raise StoreUnavailable or StoreRejected, nothing else, on write."""

    name: str = "store"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect or create what is needed; may raise StoreUnavailable."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- writing -------------------------------------------------------------------------------
    @abstractmethod
    def encode_samples(self, batch: SampleBatch) -> Any:
        """Turn a batch into this store's wire payload (pure CPU, no I/O)."""

    @abstractmethod
    def encode_events(self, events: Sequence[Event]) -> Any:
        """Turn events into this store's wire payload."""

    @abstractmethod
    async def send(self, payload: Any) -> None:
        """Deliver an encoded payload; return only once the store acknowledged it."""

    async def write_samples(self, batch: SampleBatch) -> None:
        """Encode and send directly, without the writer's spool (tools and tests)."""
        if len(batch):
            await self.send(self.encode_samples(batch))

    async def write_events(self, events: Sequence[Event]) -> None:
        if events:
            await self.send(self.encode_events(events))

    # -- reading -------------------------------------------------------------------------------
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
    async def latest(self, asset: str | None = None) -> list[Sample]:
        """The last sample of every series (of one asset, if given)."""

    @abstractmethod
    async def list_series(self) -> list[SeriesKey]:
        """Every series the store holds, sorted."""

    @abstractmethod
    async def query_events(
        self,
        start_ns: int,
        end_ns: int,
        asset: str | None = None,
        kind: EventKind | None = None,
    ) -> list[Event]:
        """Events with start_ns <= ts < end_ns in time order."""


def check_agg(fn: str, every_ns: int) -> None:
    if fn not in AGG_FNS:
        raise ValueError(f"unknown aggregate {fn!r}; expected one of {', '.join(AGG_FNS)}")
    if every_ns <= 0:
        raise ValueError("every_ns must be positive")
