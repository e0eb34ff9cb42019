"""Online stepping: the shared model advanced by the simulator clock and published to the servers.

Both protocol servers receive the same snapshot (one model step) at every tick.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import numpy as np

from plant_simulator.clock import BLOCK_STEPS, NS, SimClock
from plant_simulator.codes import Reason, State
from plant_simulator.plant import Plant
from plant_simulator.state import ClockLease

log = logging.getLogger("plant_simulator.online")

Column = dict[str, tuple[np.ndarray, np.ndarray]]  # asset -> (values, status) in spec order


class Sink(Protocol):
    async def publish(self, step: int, ts_ns: int, column: Column) -> None: ...


#: A forced trip: the asset is down with an electrical fault and its alarm on, whatever the model says.
TRIP_STATE, TRIP_REASON, TRIP_ALARM = float(State.DOWN), float(Reason.ELECTRICAL_FAULT), 1.0


class OnlinePlant:
    """Serves model steps on demand; blocks are computed in a worker thread, in order, once.

    ``trip(path, until_step)`` forces an asset down (state, down_reason and alarm) until that step, as
    an operator's emergency stop would; its process signals keep the model's values.
    """

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self._lock = asyncio.Lock()
        self.trips: dict[str, int] = {}  # asset -> first step after the trip

    def trip(self, path: str, until_step: int) -> None:
        if path not in self.plant.assets:
            raise KeyError(path)
        self.trips[path] = max(self.trips.get(path, 0), int(until_step))
        log.warning("%s: forced trip until step %d", path, until_step)

    async def column(self, step: int) -> Column:
        k, j = divmod(step, BLOCK_STEPS)
        async with self._lock:
            if self.plant.next_block <= k:
                await asyncio.to_thread(self.plant.block, k)
            blk = self.plant.block(k)
        col = {p: (blk.values[p][:, j], blk.status[p][:, j]) for p in blk.values}
        for path, until in list(self.trips.items()):
            if step >= until:
                del self.trips[path]
                continue
            values = col[path][0].copy()
            for name, v in (("state", TRIP_STATE), ("down_reason", TRIP_REASON), ("alarm", TRIP_ALARM)):
                values[self.plant.signal_index(path, name)] = v
            col[path] = (values, col[path][1])
        return col

    def ts_ns(self, step: int) -> int:
        return self.plant.start_ns + step * NS


class Publisher:
    """Every ``tick_s`` of wall time, publish the current simulated step to every sink.

    With a ``lease`` (the state file), a step's timestamp is reserved there before any sink sees it.
    """

    def __init__(
        self,
        online: OnlinePlant,
        clock: SimClock,
        sinks: list[Sink],
        tick_s: float = 0.5,
        lease: ClockLease | None = None,
    ) -> None:
        self.online, self.clock, self.sinks, self.tick_s, self.lease = online, clock, sinks, tick_s, lease
        self.last_step = -1
        self.last_ts_ns = -1  # the newest timestamp handed to the sinks
        self.published = 0

    async def publish_step(self, step: int) -> None:
        col = await self.online.column(step)
        ts = self.online.ts_ns(step)
        if self.lease is not None and self.lease.needs_write(ts):
            await asyncio.to_thread(self.lease.reserve_sync, ts)  # written (fsync) before it is served
        if self.lease is not None:
            self.lease.served(ts)  # counted before the sinks: one of them may serve it and the next fail
        for s in self.sinks:
            await s.publish(step, ts, col)
        self.last_step = step
        self.last_ts_ns = max(self.last_ts_ns, ts)
        self.published += 1

    async def run(self) -> None:
        while True:
            step = self.clock.step_now()
            if step != self.last_step:
                try:
                    await self.publish_step(step)
                except Exception:  # keep serving; a failing sink must not stop the clock
                    log.exception("publishing step %d failed", step)
            await asyncio.sleep(self.tick_s)
