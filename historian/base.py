"""The store interface every historian backend implements: the reader plus the write path.

Writes are split into encode (CPU, no I/O) and send (I/O) so the writer can overlap them. The read
methods, the frames they return and the aggregate names live in ``historian.reader``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from historian.reader import AGG_FNS, AggFn, HistorianReader, SeriesFrame, check_agg
from shopfloor.batch import SampleBatch
from shopfloor.model import Event

__all__ = [
    "AGG_FNS",
    "EVENTS_MEASUREMENT",
    "AggFn",
    "HistorianReader",
    "SeriesFrame",
    "Sink",
    "Store",
    "check_agg",
    "event_seqs",
]

EVENTS_MEASUREMENT = "_shopfloor_events"


class Sink(Protocol):
    """What the writer delivers to: the write half of a Store (which satisfies it), or another sink
    such as ``uns.publisher.MqttPublisher``. Same contract as the Store methods of the same names."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def encode_samples(self, batch: SampleBatch) -> Any: ...

    def encode_events(self, events: Sequence[Event], seqs: Sequence[int] | None = None) -> Any: ...

    async def send(self, payload: Any) -> None: ...

    async def ping(self) -> bool: ...


class Store(HistorianReader):
    """A time-series store. Backends raise StoreUnavailable or StoreRejected, nothing else, on write."""

    @abstractmethod
    def encode_samples(self, batch: SampleBatch) -> Any:
        """Turn a batch into this store's wire payload (pure CPU, no I/O)."""

    @abstractmethod
    def encode_events(self, events: Sequence[Event], seqs: Sequence[int] | None = None) -> Any:
        """Turn events into this store's wire payload, numbered by ``event_seqs(events)``.

        ``seqs`` overrides the numbering: a part of a write sent again on its own (a refused batch
        being bisected) must keep the numbers it had in the whole write.
        """

    @abstractmethod
    async def send(self, payload: Any) -> None:
        """Deliver an encoded payload; return only once the store acknowledged it."""

    async def ping(self) -> bool:
        """Cheap health check while the writer waits out an outage: True when the store answers.

        The default says yes (an embedded store); network stores ask their health endpoint.
        """
        return True

    async def write_samples(self, batch: SampleBatch) -> None:
        """Encode and send directly, without the writer's spool (tools and tests)."""
        if len(batch):
            await self.send(self.encode_samples(batch))

    async def write_events(self, events: Sequence[Event]) -> None:
        if events:
            await self.send(self.encode_events(events))


def event_seqs(events: Sequence[Event]) -> list[int]:
    """Each event's ``seq``: how many earlier events of this write share its (asset, kind, key, ts).

    An event is stored under (asset, kind, key, ts_ns, seq): events that share the first four in one
    write stay apart (0, 1, 2, … in order), and the same list written again (a replay) lands on the
    same identities, so it is stored once.
    """
    seen: dict[tuple[str, str, str, int], int] = {}
    out = []
    for e in events:
        ident = (e.asset, str(e.kind), e.key, int(e.ts_ns))
        n = seen.get(ident, 0)
        seen[ident] = n + 1
        out.append(n)
    return out
