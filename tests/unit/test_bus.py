"""The live-stream bus: lossless subscribers see everything in order; a stalled or crashing queued
subscriber loses only its own data (counted, with the time range to re-read) and never the producer's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np
import pytest

from shopfloor.batch import SampleBatch
from shopfloor.bus import Bus, SubscriptionState
from shopfloor.model import Event, EventKind

KEYS = [("s/a/l/m", "x")]


def batch(start: int, n: int = 10) -> SampleBatch:
    """n samples whose values and timestamps are start..start+n-1 (gaps show as missing numbers)."""
    v = np.arange(start, start + n)
    return SampleBatch.from_columns(KEYS, np.zeros(n), v, v.astype(float))


class Recording:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.events: list[Event] = []

    async def on_batch(self, b: SampleBatch) -> None:
        self.values += b.value.tolist()

    async def on_events(self, events: Sequence[Event]) -> None:
        self.events += events


class Stalled(Recording):
    """Never returns from its first item until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def on_batch(self, b: SampleBatch) -> None:
        await self.release.wait()
        await super().on_batch(b)


class Crashing(Recording):
    async def on_batch(self, b: SampleBatch) -> None:
        if int(b.value[0]) % 20 == 0:
            raise ZeroDivisionError("subscriber bug")
        await super().on_batch(b)


async def settle(bus: Bus, name: str) -> None:
    for _ in range(500):
        if bus.health()[name].queued == 0:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"{name} did not drain")


async def test_every_subscriber_sees_every_sample_and_event_in_order() -> None:
    bus = Bus()
    inline: list[float] = []
    inline_events: list[Event] = []
    bus.attach("historian", lambda b: inline.extend(b.value.tolist()), inline_events.extend)
    rec = Recording()
    bus.subscribe("test", rec)
    await bus.start()
    ev = [Event("s/a/l/m", EventKind.ALARM, i, key="x") for i in range(3)]
    for k in range(100):
        bus.publish(batch(10 * k))
        if k == 50:
            bus.publish_events(ev)
    await settle(bus, "test")
    await bus.stop()
    assert inline == rec.values == list(range(1000))
    assert inline_events == rec.events == ev
    h = bus.health()
    assert h["historian"].lossless and h["historian"].delivered == 1003
    assert h["test"].delivered == 1003 and h["test"].dropped == 0 and h["test"].failed == 0


async def test_a_stalled_subscriber_costs_the_lossless_one_nothing_and_counts_its_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus()
    inline: list[float] = []
    bus.attach("historian", lambda b: inline.extend(b.value.tolist()), lambda e: None)
    stalled, rec = Stalled(), Recording()
    bus.subscribe("stalled", stalled, max_points=100)
    bus.subscribe("live", rec)
    await bus.start()
    for k in range(1000):  # 10,000 samples while 'stalled' sits on its first batch
        bus.publish(batch(10 * k))
        if k % 100 == 0:
            await asyncio.sleep(0)  # let the consumers run: 'live' keeps up, 'stalled' does not
    await settle(bus, "live")
    h = bus.health()["stalled"]
    assert h.state == SubscriptionState.DROPPING
    assert h.queued <= 100 and h.lag_s >= 0.0
    # the newest data is kept; what was dropped is counted and its time range named for a re-read
    assert h.dropped == 10_000 - 10 - h.queued  # all but its in-flight batch and its queue
    assert h.dropped_from_ns == 10 and h.dropped_to_ns == 10_000 - 1 - h.queued
    stalled.release.set()
    await settle(bus, "stalled")
    await bus.stop()
    assert inline == rec.values == list(range(10_000))  # lossless and fast subscribers: everything
    assert stalled.values == list(range(10)) + list(range(10_000 - 100, 10_000))
    assert sum("not keeping up" in r.getMessage() for r in caplog.records) == 1  # once per episode


async def test_a_crashing_subscriber_loses_only_the_items_it_failed_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    bus = Bus()
    crashing, rec = Crashing(), Recording()
    bus.subscribe("crashing", crashing)
    bus.subscribe("live", rec)
    await bus.start()
    for k in range(10):
        bus.publish(batch(10 * k))
    await settle(bus, "crashing")
    await bus.stop()
    h = bus.health()["crashing"]
    assert h.errors == 5 and h.failed == 50 and h.delivered == 50
    assert "ZeroDivisionError: subscriber bug" in h.last_error
    assert crashing.values == [v for v in range(100) if (v // 10) % 2 == 1]
    assert rec.values == list(range(100))
    assert sum("failed on an item" in r.getMessage() for r in caplog.records) == 1  # logged once per kind


async def test_a_lossless_subscriber_that_raises_never_reaches_the_producer() -> None:
    bus = Bus()

    def refuses(b: SampleBatch) -> None:
        raise OSError("disk gone")

    bus.attach("historian", refuses, lambda e: None)
    bus.publish(batch(0))  # does not raise
    h = bus.health()["historian"]
    assert h.failed == 10 and h.errors == 1 and "disk gone" in h.last_error


async def test_stop_drains_queues_within_its_bound_and_counts_the_rest_as_dropped() -> None:
    bus = Bus()
    stalled = Stalled()
    rec = Recording()
    bus.subscribe("stalled", stalled)
    bus.subscribe("live", rec)
    await bus.start()
    for k in range(5):
        bus.publish(batch(10 * k))
    await bus.stop(timeout_s=0.2)
    assert rec.values == list(range(50))  # drained before stop returned
    h = bus.health()["stalled"]
    assert h.state == SubscriptionState.STOPPED and h.delivered == 0 and h.dropped == 50 and h.queued == 0
    bus.publish(batch(100))  # after stop: the lossless path still works, stopped queues take nothing
    assert bus.health()["stalled"].dropped == 50


def test_subscriber_names_are_unique() -> None:
    bus = Bus()
    bus.attach("historian", lambda b: None, lambda e: None)
    with pytest.raises(ValueError, match="already registered"):
        bus.subscribe("historian", Recording())
