"""The live-stream bus: acquisition publishes every batch and event once; subscribers register by name.

Lossless subscribers (the historian writer) are called inline and must never block; every other
subscriber gets a bounded queue of its own with counted drops, so it can never slow the producers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from shopfloor.batch import SampleBatch
from shopfloor.model import Event, now_ns

log = logging.getLogger("shopfloor.bus")

DROP_QUIET_NS = 10_000_000_000  # a drop episode ends after 10 s without drops (state, log line)


class Subscriber(Protocol):
    """A consumer of the live stream with its own pace: MES deriver, analytics scorer, MQTT publisher.

    Delivery is at-most-once: when its queue is full the oldest items are dropped (and counted),
    when it raises the item is counted as failed and the next one is delivered. A subscriber that
    must not miss anything catches up from the historian, which holds everything (see ``drops``).
    """

    async def on_batch(self, batch: SampleBatch) -> None: ...

    async def on_events(self, events: Sequence[Event]) -> None: ...


class SubscriptionState(StrEnum):
    RUNNING = "running"
    LAGGING = "lagging"  # its queue is more than half full
    DROPPING = "dropping"  # it dropped items in the last DROP_QUIET_NS
    STOPPED = "stopped"


@dataclass(frozen=True)
class SubscriptionHealth:
    """What a subscriber received, lost and how far behind it is. Points count samples and events."""

    name: str
    lossless: bool
    state: SubscriptionState
    delivered: int  # points handed to the subscriber and returned from without error
    dropped: int  # points dropped because its queue was full (or still queued at stop)
    failed: int  # points of items whose handler raised
    errors: int  # handler exceptions
    last_error: str
    queued: int  # points waiting in its queue
    max_queued: int  # the queue's bound, in points
    lag_s: float  # wall seconds the oldest queued item has waited (0 when the queue is empty)
    dropped_from_ns: int | None  # source-time range of what it lost: re-read it from the historian
    dropped_to_ns: int | None


@dataclass(eq=False)
class _Item:
    batch: SampleBatch | None
    events: Sequence[Event] | None
    points: int
    queued_ns: int


class _Queued:
    """One bounded subscription: a deque of items, a consumer task, and the counters."""

    def __init__(self, name: str, subscriber: Subscriber, max_points: int) -> None:
        self.name, self.subscriber, self.max_points = name, subscriber, max_points
        self.items: deque[_Item] = deque()
        self.points = 0
        self.delivered = self.dropped = self.failed = self.errors = 0
        self.last_drop_ns = 0
        self.dropped_from_ns: int | None = None
        self.dropped_to_ns: int | None = None
        self.last_error = ""
        self._logged: set[str] = set()
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None
        self.stopped = False

    def put(self, item: _Item) -> None:
        self.items.append(item)
        self.points += item.points
        self.idle.clear()
        while self.points > self.max_points and len(self.items) > 1:  # drop oldest, keep the newest
            self._drop(self.items.popleft())
        self.wake.set()

    def _drop(self, item: _Item) -> None:
        self.points -= item.points
        self.dropped += item.points
        now = now_ns()
        if now - self.last_drop_ns > DROP_QUIET_NS:  # once per episode, not per item
            log.warning(
                "bus subscriber %s is not keeping up: dropping its oldest queued data (counted; "
                "the historian still has it)",
                self.name,
            )
        self.last_drop_ns = now
        lo, hi = _time_range(item)
        if lo is not None and hi is not None:
            self.dropped_from_ns = lo if self.dropped_from_ns is None else min(self.dropped_from_ns, lo)
            self.dropped_to_ns = hi if self.dropped_to_ns is None else max(self.dropped_to_ns, hi)

    async def run(self) -> None:
        while True:
            if not self.items:
                self.idle.set()
                self.wake.clear()
                await self.wake.wait()
                continue
            item = self.items.popleft()
            self.points -= item.points
            try:
                if item.batch is not None:
                    await self.subscriber.on_batch(item.batch)
                if item.events is not None:
                    await self.subscriber.on_events(item.events)
                self.delivered += item.points
            except asyncio.CancelledError:
                self.items.appendleft(item)  # still queued: counted as dropped at stop
                self.points += item.points
                raise
            except Exception as exc:  # a subscriber's bug costs it this item, never the others
                self.errors += 1
                self.failed += item.points
                self.last_error = f"{type(exc).__name__}: {exc}"
                if type(exc).__name__ not in self._logged:
                    self._logged.add(type(exc).__name__)
                    log.exception(
                        "bus subscriber %s failed on an item (counted; logged once per kind)", self.name
                    )

    def health(self) -> SubscriptionHealth:
        lag = (now_ns() - self.items[0].queued_ns) / 1e9 if self.items else 0.0
        if self.stopped:
            state = SubscriptionState.STOPPED
        elif now_ns() - self.last_drop_ns <= DROP_QUIET_NS:
            state = SubscriptionState.DROPPING
        elif self.points * 2 > self.max_points:
            state = SubscriptionState.LAGGING
        else:
            state = SubscriptionState.RUNNING
        return SubscriptionHealth(
            self.name, False, state, self.delivered, self.dropped, self.failed, self.errors,
            self.last_error, self.points, self.max_points, lag, self.dropped_from_ns, self.dropped_to_ns,
        )  # fmt: skip


@dataclass
class _Inline:
    """A lossless subscriber: called in the publisher's call, must return at once (disk append)."""

    name: str
    on_batch: Callable[[SampleBatch], None]
    on_events: Callable[[Sequence[Event]], None]
    delivered: int = 0
    failed: int = 0
    errors: int = 0
    last_error: str = ""

    def health(self) -> SubscriptionHealth:
        return SubscriptionHealth(
            self.name, True, SubscriptionState.RUNNING, self.delivered, 0, self.failed, self.errors,
            self.last_error, 0, 0, 0.0, None, None,
        )  # fmt: skip


def _time_range(item: _Item) -> tuple[int | None, int | None]:
    lo = hi = None
    if item.batch is not None and len(item.batch):
        lo, hi = int(item.batch.ts.min()), int(item.batch.ts.max())
    if item.events:
        ts = [e.ts_ns for e in item.events]
        lo = min(ts) if lo is None else min(lo, *ts)
        hi = max(ts) if hi is None else max(hi, *ts)
    return lo, hi


class Bus:
    """``publish(batch)`` / ``publish_events(events)`` from the loop; never blocks, never raises.

    Register lossless subscribers with ``attach`` and queued ones with ``subscribe`` (before or
    after ``start()``); ``stop()`` lets the queues drain for a bounded time, then counts what was
    left as dropped. It is a service: ``start`` / ``stop`` / ``health`` / ``status``.
    """

    name = "bus"

    def __init__(self, default_max_points: int = 200_000) -> None:
        self.default_max_points = default_max_points
        self._inline: dict[str, _Inline] = {}
        self._queued: dict[str, _Queued] = {}
        self._started = False
        self.published_points = 0

    # -- registration --------------------------------------------------------------------------
    def attach(
        self,
        name: str,
        on_batch: Callable[[SampleBatch], None],
        on_events: Callable[[Sequence[Event]], None],
    ) -> None:
        """A lossless subscriber: called inline with every batch and event list, in order.

        It must return at once and hold on to nothing it has not made durable (the writer appends to
        its spool). Attach it before anything is published: it sees only what comes after.
        """
        self._check_name(name)
        self._inline[name] = _Inline(name, on_batch, on_events)

    def subscribe(self, name: str, subscriber: Subscriber, max_points: int | None = None) -> None:
        """A queued subscriber with a bound of ``max_points`` queued points (drop oldest beyond it)."""
        self._check_name(name)
        q = _Queued(name, subscriber, max_points or self.default_max_points)
        self._queued[name] = q
        if self._started:
            q.task = asyncio.create_task(q.run(), name=f"bus-{name}")

    def _check_name(self, name: str) -> None:
        if not name or name in self._inline or name in self._queued:
            raise ValueError(f"bus subscriber name {name!r} is empty or already registered")

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, batch: SampleBatch) -> None:
        n = len(batch)
        if not n:
            return
        self.published_points += n
        for sub in self._inline.values():
            self._call_inline(sub, sub.on_batch, batch, n)
        if self._queued:
            item = _Item(batch, None, n, now_ns())
            for q in self._queued.values():
                if not q.stopped:
                    q.put(item)

    def publish_events(self, events: Sequence[Event]) -> None:
        n = len(events)
        if not n:
            return
        self.published_points += n
        events = tuple(events)
        for sub in self._inline.values():
            self._call_inline(sub, sub.on_events, events, n)
        if self._queued:
            item = _Item(None, events, n, now_ns())
            for q in self._queued.values():
                if not q.stopped:
                    q.put(item)

    # A connector's Sink is the bus itself: emit/emit_events are publish/publish_events.
    emit = publish
    emit_events = publish_events

    @staticmethod
    def _call_inline(sub: _Inline, fn: Callable[[Any], None], arg: Any, n: int) -> None:
        try:
            fn(arg)
            sub.delivered += n
        except Exception as exc:  # must not reach the connector; counted and logged with its cause
            sub.errors += 1
            sub.failed += n
            first = not sub.last_error
            sub.last_error = f"{type(exc).__name__}: {exc}"
            if first:
                log.exception("lossless bus subscriber %s refused data (counted)", sub.name)

    # -- service -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._started = True
        for q in self._queued.values():
            if q.task is None:
                q.task = asyncio.create_task(q.run(), name=f"bus-{q.name}")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Let every queued subscriber drain for up to ``timeout_s``; what is left counts as dropped."""
        queued = [q for q in self._queued.values() if q.task is not None]
        if queued:
            waits = [asyncio.create_task(q.idle.wait()) for q in queued]
            _, pending = await asyncio.wait(waits, timeout=timeout_s)
            for w in pending:
                w.cancel()
        for q in queued:
            assert q.task is not None
            q.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await q.task
            q.task = None
            q.stopped = True
            if q.items:
                log.warning(
                    "bus subscriber %s: %d queued points not delivered at stop (counted as dropped)",
                    q.name,
                    q.points,
                )
                while q.items:
                    q._drop(q.items.popleft())
        self._started = False

    def health(self) -> dict[str, SubscriptionHealth]:
        out = {name: sub.health() for name, sub in self._inline.items()}
        out.update({name: q.health() for name, q in self._queued.items()})
        return out

    def status(self) -> str | None:
        parts = [
            f"{h.name}: {h.state} delivered={h.delivered} dropped={h.dropped} lag={h.lag_s:.1f}s"
            for h in self.health().values()
            if not h.lossless
        ]
        return "bus " + "; ".join(parts) if parts else None
