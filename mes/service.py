"""The MES as a service: a subscriber of the live-stream bus that derives production facts, and that
rebuilds what it missed (its own downtime, a bus drop) from the historian.

Without a bus (``shopfloor mes serve`` on another box) it follows the historian instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine

from historian.reader import HistorianReader
from mes.db import describe, migrate
from mes.derive import Deriver
from mes.lots import LotMaker
from mes.repository import Repository
from shopfloor.batch import SampleBatch
from shopfloor.bus import Bus
from shopfloor.config.mes import MesConfig
from shopfloor.model import Event, SeriesKey, now_ns

log = logging.getLogger("shopfloor.mes")
NS = 1_000_000_000
CHUNK_NS = 6 * 3600 * NS  # catch-up reads one asset this much simulated time at a time


class MesService:
    """Derives intervals, counts, orders and lots from the live stream; never touches a device.

    ``assets`` is the plant's asset tree as (path, kind, description) in flow order.
    """

    name = "mes"

    def __init__(
        self,
        cfg: MesConfig,
        engine: Engine,
        assets: Sequence[tuple[str, str, str]],
        reader: HistorianReader | None,
        bus: Bus | None = None,
        *,
        settle_s: float = 2.0,
        follow_every_s: float = 2.0,
        buffer_points: int = 500_000,
        lot_maker: LotMaker | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.assets = list(assets)
        self.reader = reader
        self.bus = bus
        self.settle_s = settle_s
        self.follow_every_s = follow_every_s
        self.buffer_points = buffer_points
        self.repo = Repository(engine, cfg, lot_maker=lot_maker)
        self.deriver: Deriver | None = None
        self._lot_counters: set[tuple[str, str]] = lot_maker.counters if lot_maker is not None else set()
        self._buffer: list[SampleBatch] = []
        self._buffered = 0
        self._live = False
        self._resync = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._seen_dropped = 0
        self._reload = False
        self._lock = asyncio.Lock()
        self.samples_used = 0
        self.catch_ups = 0
        self.caught_up_samples = 0
        self.last_error = ""

    # -- Service ------------------------------------------------------------------------------
    async def start(self) -> None:
        before, after = await asyncio.to_thread(migrate, self.engine)
        if before != after:
            log.info("MES database %s migrated %s -> %s", describe(self.engine), before or "empty", after)
        await asyncio.to_thread(self.repo.sync_plant, self.assets)
        await self._load_state()
        if self.reader is not None:
            await self.reader.open()
        if self.bus is not None:
            self.bus.subscribe(self.name, self)
        self._resync.set()  # the first job is catching up on what happened while we were away
        self._task = asyncio.create_task(self._run(), name="mes")

    async def stop(self) -> None:
        self._stopping = True
        self._resync.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            if self._live and self._buffer:
                with contextlib.suppress(Exception):  # what is not written now is caught up next start
                    await self._drain_buffer()
        if self.reader is not None:
            await self.reader.close()

    def status(self) -> str | None:
        mode = "live" if self._live else ("following the historian" if self.bus is None else "catching up")
        err = f", last error: {self.last_error}" if self.last_error else ""
        return (
            f"mes: {mode}, {self.samples_used} samples derived, {self.catch_ups} catch-ups "
            f"({self.caught_up_samples} samples from the historian){err}"
        )

    # -- bus Subscriber ------------------------------------------------------------------------
    async def on_batch(self, batch: SampleBatch) -> None:
        if self.bus is not None:
            dropped = self.bus.health()[self.name].dropped
            if dropped > self._seen_dropped:  # the bus shed batches of ours: rebuild them from the historian
                log.warning(
                    "mes: the bus dropped %d points for the MES; catching up from the historian",
                    dropped - self._seen_dropped,
                )
                self._seen_dropped = dropped
                self._live = False
                self._resync.set()
        async with self._lock:
            if not self._live:
                self._buffer.append(batch)
                self._buffered += len(batch)
                if self._buffered > self.buffer_points:  # the catch-up will read these from the historian
                    self._buffer.clear()
                    self._buffered = 0
                return
            try:
                await self._derive(batch)
            except Exception:  # the database is away: _derive marked us for a reload and a catch-up
                return

    async def on_events(self, events: Sequence[Event]) -> None:
        return None  # the MES derives from signals; PLC events reach it as their state signals

    # -- work ----------------------------------------------------------------------------------
    async def _derive(self, batch: SampleBatch) -> int:
        assert self.deriver is not None
        ch = self.deriver.feed(batch)
        if ch:
            try:
                await asyncio.to_thread(self.repo.apply, ch)
            except Exception as exc:
                # nothing of this batch was written, but the deriver moved on in memory: start again from
                # what the database holds, and read what it missed from the historian
                self._reload = True
                self._live = False
                self._resync.set()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("mes: cannot write to the MES database (%s); will catch up when it is back", exc)
                raise
        self.samples_used += ch.samples_used
        return ch.samples_used

    async def _load_state(self) -> None:
        cursors, opens = await asyncio.to_thread(self.repo.deriver_state)
        self.deriver = Deriver(self.cfg, cursors, opens, lot_counters=self._lot_counters)
        self._reload = False

    async def _drain_buffer(self) -> None:
        buf, self._buffer, self._buffered = self._buffer, [], 0
        for b in buf:
            await self._derive(b)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if self.bus is None:
                    if self._reload:
                        await self._load_state()
                    await self._catch_up(now_ns())
                    await asyncio.sleep(self.follow_every_s)
                    continue
                await self._resync.wait()
                if self._stopping:
                    return
                self._resync.clear()
                if self._reload:
                    await self._load_state()
                await self._catch_up(now_ns())
                await asyncio.sleep(self.settle_s)  # what the writer had not flushed yet lands meanwhile
                async with self._lock:
                    await self._catch_up(now_ns())
                    await self._drain_buffer()
                    self._live = True
                self.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store or the database is away: try again, never give up
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("mes: %s; retrying in 5 s", self.last_error)
                self._live = False
                self._resync.set()
                await asyncio.sleep(5.0)

    async def _catch_up(self, until_ns: int) -> int:
        """Derive from the historian every sample after the cursors, up to ``until_ns``."""
        if self.reader is None or self.deriver is None:
            return 0
        self.catch_ups += 1
        used = 0
        started = time.monotonic()
        by_asset: dict[str, list[str]] = {}
        for asset, signal in self.deriver.signals():
            by_asset.setdefault(asset, []).append(signal)
        for asset, signals in by_asset.items():
            # a plant's clock may run ahead of ours (a simulator, a PLC set wrong): go as far as its data
            newest = [s.ts_ns for s in await self.reader.latest(asset) if s.signal in signals]
            until = max([until_ns, *newest]) + 1
            first_default = until - int(self.cfg.catch_up_days * 86400 * NS)
            marks = [self.deriver.cursors.get((asset, s)) for s in signals]
            start = min((m[0] + 1 for m in marks if m is not None), default=first_default)
            if any(m is None for m in marks):
                start = min(start, first_default)
            while start < until and not self._stopping:
                end = min(start + CHUNK_NS, until)
                batch = await self._read(asset, signals, start, end)
                if len(batch):
                    used += await self._derive(batch)
                start = end
        self.caught_up_samples += used
        if used:
            log.info("mes: derived %d samples from the historian in %.1f s", used, time.monotonic() - started)
        return used

    async def _read(self, asset: str, signals: list[str], start: int, end: int) -> SampleBatch:
        assert self.reader is not None
        keys: list[SeriesKey] = []
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for s in signals:
            f = await self.reader.query_raw(asset, s, start, end)
            if not len(f):
                continue
            i = len(keys)
            keys.append(SeriesKey(asset, s))
            q = f.quality if f.quality is not None else np.zeros(len(f), np.uint8)
            parts.append((np.full(len(f), i, np.uint32), f.ts, f.value, q))
        if not parts:
            return SampleBatch.empty()
        series, ts, value, quality = (np.concatenate(c) for c in zip(*parts, strict=True))
        order = np.argsort(ts, kind="stable")
        return SampleBatch(
            tuple(keys), series[order], ts[order], value[order], quality[order].astype(np.uint8)
        )
