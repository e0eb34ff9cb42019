"""The historian writer: owns delivery of every sample and event from the connectors to the store.

submit() appends to the on-disk spool and returns at once (connectors never block); one task sends
batches by size and age, retries with backoff and jitter, quarantines what the store refuses and
acknowledges the spool only after the store did. Counters satisfy
``produced = written + pending + dropped + quarantined`` at all times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from historian.base import Sink, event_seqs
from historian.errors import StoreRejected, StoreUnavailable
from historian.quarantine import Quarantine
from historian.spool import FLAG_SPOOLED, KIND_EVENTS, KIND_SAMPLES, Record, Spool
from shopfloor.backoff import Backoff
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import HistorianConfig
from shopfloor.model import Event, now_ns

log = logging.getLogger(__name__)


class WriterState(StrEnum):
    STARTING = "starting"
    ONLINE = "online"  # the store acknowledged the last batch
    OUTAGE = "outage"  # the store is unreachable; everything waits in the spool
    STOPPED = "stopped"


@dataclass
class WriterStats:
    """A snapshot of the writer's counters (points; events count as points)."""

    produced: int = 0  # accepted by submit(), plus pending points recovered from the spool at start
    written: int = 0  # acknowledged by the store
    pending: int = 0  # in the spool, not yet acknowledged
    spooled: int = 0  # accepted while the store was unreachable
    replayed: int = 0  # written after having waited out an outage or a restart on disk
    quarantined: int = 0  # refused by the store, kept in the quarantine file
    dropped: dict[str, int] = field(default_factory=dict)  # by reason
    recovered: int = 0  # pending points found in the spool at start
    torn_bytes: int = 0  # bytes cut from a torn spool tail at start
    retries: int = 0
    batches: int = 0
    splits: int = 0  # extra requests made to isolate refused points
    state: WriterState = WriterState.STARTING
    last_error: str = ""
    spool_bytes: int = 0
    spool_peak_bytes: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        return self.produced == self.written + self.pending + self.dropped_total + self.quarantined

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dropped_total"] = self.dropped_total
        return d


@dataclass
class _Prepared:
    records: list[Record]
    kind: int
    items: SampleBatch | list[Event]
    payload: Any

    @property
    def points(self) -> int:
        return sum(r.count for r in self.records)


class HistorianWriter:
    """Use ``await start()``, then ``submit()`` from anywhere in the loop, then ``await stop()``.

    A service (start / stop / status), and the bus's first, lossless subscriber.
    """

    name = "historian-writer"
    role = "historian"  # how its log lines name what it delivers to (the publisher's writer: "publisher")

    def __init__(
        self,
        store: Sink,
        config: HistorianConfig | None = None,
        *,
        health_asset: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.config = config or HistorianConfig()
        sc = self.config.spool
        self.spool = Spool(sc.dir, sc.max_bytes, sc.segment_bytes, sc.when_full, sc.fsync, self._on_drop)
        self.quarantine = Quarantine(sc.dir)
        self.health_asset = health_asset
        self._s = WriterStats()
        rc = self.config.retry
        self._backoff = Backoff(rc.initial_ms / 1000, rc.max_ms / 1000, rc.multiplier, random.Random(seed))
        self._wake = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._stopping = False
        self._flushing = 0
        self._outage = False
        self._episode: dict[str, int] | None = None  # the outage being waited out or replayed
        self._opened = False
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- public API ----------------------------------------------------------------------------
    async def start(self) -> None:
        report = self.spool.open()
        self._s.recovered = report.points
        self._s.produced += report.points
        self._s.torn_bytes = report.torn_bytes
        if report.points or report.torn_bytes:
            log.warning("%s spool recovered: %s", self.role, report)
        self._started = True
        self._tasks = [
            asyncio.create_task(self._run(), name="historian-writer"),
            asyncio.create_task(self._maintain(), name="historian-writer-maintenance"),
        ]

    def submit(self, batch: SampleBatch) -> None:
        """Accept a batch for delivery. Never blocks on the store; never raises on store trouble."""
        n = len(batch)
        step = self.config.batch.max_points
        for start in range(0, n, step):  # a record never exceeds one request's worth
            part = batch if n <= step else batch.take(slice(start, start + step))
            self._append(KIND_SAMPLES, part.to_bytes(), len(part))

    def submit_events(self, events: Sequence[Event]) -> None:
        step = self.config.batch.max_points
        for start in range(0, len(events), step):
            part = events[start : start + step]
            payload = json.dumps([e.to_json() for e in part], separators=(",", ":"), default=str).encode()
            self._append(KIND_EVENTS, payload, len(part))

    def stats(self) -> WriterStats:
        if self._started:
            self._snapshot_spool()
        return replace(self._s, dropped=dict(self._s.dropped))

    async def flush(self, timeout_s: float = 30.0) -> bool:
        """Send everything now; True once the spool is empty, False if the timeout came first."""
        self._flushing += 1
        self._wake.set()
        try:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while self.spool.pending_points:
                if asyncio.get_running_loop().time() >= deadline:
                    return False
                await asyncio.sleep(0.01)
            return True
        finally:
            self._flushing -= 1

    async def stop(self, timeout_s: float | None = None) -> None:
        """Deliver what can be delivered within ``timeout_s`` (default ``historian.stop_timeout_s``).

        While the store is unreachable nothing is waited for: the points are safe in the spool and
        are sent on the next start; the log says how many and where.
        """
        if not self._started:
            return
        timeout = self.config.stop_timeout_s if timeout_s is None else timeout_s
        self._stopping = True
        self._wake.set()
        run = self._tasks[0]
        if self.spool.pending_points and not self._outage:
            log.info(
                "%s writer: delivering %d pending points before stopping (up to %g s)",
                self.role,
                self.spool.pending_points,
                timeout,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), timeout)
        if self.health_asset and run.done():
            await self._final_health(deadline - loop.time())
        self._stop_now.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.spool.rewind()
        self._snapshot_spool()
        if self._s.pending:
            log.warning(
                "%s writer stopped with %d points spooled in %s; they will be sent on the next start",
                self.role,
                self._s.pending,
                self.config.spool.dir,
            )
        self.spool.close()
        self._started = False
        self._s.state = WriterState.STOPPED
        await self.store.close()

    async def _final_health(self, timeout_s: float) -> None:
        """Store the counters as they stand at stop, this batch included, so the historian's last
        writer signals agree with the final ``stopped:`` line."""
        online = not self._outage and self.spool.pending_points == 0
        self.submit(self.health_batch(final_online=online))
        if not online:
            return  # it waits in the spool with the rest, counted as pending
        self._tasks[0] = asyncio.create_task(self._run(), name="historian-writer-final")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._tasks[0]), max(timeout_s, 1.0))

    def abort(self) -> None:
        """Leaving at once (a second Ctrl-C): nothing to do but say what stays behind.

        Every accepted point is already in the spool file (written with ``os.write``, so it survives
        the process), and nothing is acknowledged before the store did; the next start replays it.
        """
        if self._started:
            log.warning(
                "%s writer: leaving at once; %d points stay spooled in %s for the next start",
                self.role,
                self.spool.pending_points,
                self.config.spool.dir,
            )

    def status(self) -> str | None:
        s = self.stats()
        return (
            f"historian: produced={s.produced} written={s.written} pending={s.pending} "
            f"spooled={s.spooled} replayed={s.replayed} dropped={s.dropped_total} "
            f"quarantined={s.quarantined} state={s.state}"
        )

    def _snapshot_spool(self) -> None:
        sp = self.spool.stats()
        self._s.pending = sp.pending_points
        self._s.spool_bytes = sp.bytes
        self._s.spool_peak_bytes = sp.peak_bytes

    # -- internals -----------------------------------------------------------------------------
    def _append(self, kind: int, payload: bytes, count: int) -> None:
        if not self._started:
            raise RuntimeError("HistorianWriter.submit() before start() or after stop()")
        self._s.produced += count
        flags = FLAG_SPOOLED if self._outage else 0
        if self.spool.append(kind, payload, count, flags) and self._outage:
            self._s.spooled += count
        self._wake.set()

    def _on_drop(self, points: int, reason: str) -> None:
        self._s.dropped[reason] = self._s.dropped.get(reason, 0) + points

    def _ready(self) -> bool:
        unread = self.spool.unread_points
        if unread == 0:
            return False
        if unread >= self.config.batch.max_points or self._stopping or self._flushing:
            return True
        appended = self.spool.peek_appended_ns()
        return appended is None or now_ns() - appended >= self.config.batch.max_age_ms * 1_000_000

    async def _wait_ready(self) -> None:
        if self._ready():
            return
        timeout = self.config.batch.max_age_ms / 1000
        appended = self.spool.peek_appended_ns()
        if appended is not None:
            timeout = max(0.0, appended / 1e9 + timeout - now_ns() / 1e9)
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout if self.spool.unread_points else None)

    def _prepare(self) -> _Prepared | None:
        records = self.spool.read(self.config.batch.max_points)
        if not records:
            return None
        kind = records[0].kind
        items: SampleBatch | list[Event]
        if kind == KIND_SAMPLES:
            items = SampleBatch.concat([SampleBatch.from_bytes(r.payload) for r in records])
            payload = self.store.encode_samples(items)
        else:
            items = [Event.from_json(o) for r in records for o in json.loads(r.payload)]
            payload = self.store.encode_events(items)
        return _Prepared(records, kind, items, payload)

    async def _run(self) -> None:
        inflight: tuple[asyncio.Task[None], _Prepared] | None = None
        while True:
            if not self._opened:
                try:
                    await self.store.open()
                    self._opened = True
                except StoreUnavailable as exc:
                    if not await self._outage_wait(exc):
                        return
                    continue
            if inflight is None:
                if self._stopping and self.spool.unread_points == 0:
                    return
                await self._wait_ready()
                if not self._ready():
                    continue
                prep = self._prepare()
                if prep is None:
                    continue
                inflight = (asyncio.create_task(self.store.send(prep.payload)), prep)
            task, prep = inflight
            await asyncio.sleep(0)  # let the send start (it hands the request to its I/O thread)
            # While this batch is on the wire, read and encode the next one.
            nxt = self._prepare() if self._ready() else None
            try:
                try:
                    await task
                    bad: list[Any] = []
                except StoreRejected as exc:
                    bad = await self._isolate(prep.items, exc)
            except StoreUnavailable as exc:
                self.spool.rewind()
                inflight = None
                if not await self._outage_wait(exc):
                    return
                continue
            except Exception as exc:  # a backend bug: never let it end delivery; retry like an outage
                if not self._outage:  # once per episode, with the traceback
                    log.exception("%s %s: unexpected error while writing", self.role, self.store.name)
                self.spool.rewind()
                inflight = None
                if not await self._outage_wait(StoreUnavailable(f"{type(exc).__name__}: {exc}")):
                    return
                continue
            # Put the next batch on the wire first, then do the bookkeeping for this one.
            inflight = (asyncio.create_task(self.store.send(nxt.payload)), nxt) if nxt else None
            self._acknowledge(prep, bad)

    async def _isolate(
        self, items: SampleBatch | list[Event], exc: StoreRejected, seqs: list[int] | None = None
    ) -> list[Any]:
        """Bisect a refused batch until the refused points are alone; return them with the reason.

        Events keep the numbers (``seq``) they had in the whole write, so a half sent on its own
        lands where it would have landed as part of the whole (two events sharing asset, kind, key
        and timestamp stay apart). Returns (items, reason, seqs) triples.
        """
        if isinstance(items, list) and seqs is None:
            seqs = event_seqs(items)
        if len(items) == 1:
            return [(items, str(exc), seqs)]
        mid = len(items) // 2
        halves: list[tuple[SampleBatch | list[Event], list[int] | None]]
        if isinstance(items, SampleBatch):
            halves = [(items.take(slice(0, mid)), None), (items.take(slice(mid, None)), None)]
        else:
            assert seqs is not None
            halves = [(items[:mid], seqs[:mid]), (items[mid:], seqs[mid:])]
        bad: list[Any] = []
        for half, half_seqs in halves:
            self._s.splits += 1
            payload = (
                self.store.encode_samples(half)
                if isinstance(half, SampleBatch)
                else self.store.encode_events(half, half_seqs)
            )
            try:
                await self.store.send(payload)
            except StoreRejected as sub:
                bad += await self._isolate(half, sub, half_seqs)
        return bad

    def _acknowledge(self, prep: _Prepared, bad: list[Any]) -> None:
        for items, reason, seqs in bad:
            if prep.kind == KIND_SAMPLES:
                self.quarantine.add_samples(items, reason)
            else:
                self.quarantine.add_events(items, reason, seqs)
        n_bad = sum(len(items) for items, _, _ in bad)
        if bad:
            log.warning("%s refused %d points; quarantined (first reason: %s)", self.role, n_bad, bad[0][1])
        self.spool.ack(prep.records)
        points = prep.points
        self._s.written += points - n_bad
        self._s.quarantined += n_bad
        self._s.batches += 1
        self._s.replayed += sum(r.count for r in prep.records if r.flags & FLAG_SPOOLED or r.recovered)
        if self._outage or self._s.state != WriterState.ONLINE:
            if self._outage and self._episode is not None:
                log.warning(
                    "%s %s reachable again after %.1f s; sending the %d points waiting in the spool",
                    self.role,
                    self.store.name,
                    (now_ns() - self._episode["since_ns"]) / 1e9,
                    self.spool.pending_points + points,
                )
            self._outage = False
            self._s.state = WriterState.ONLINE
        if self._episode is not None and not self._outage and self.spool.pending_points == 0:
            ep, self._episode = self._episode, None
            log.warning(
                "%s %s: spool drained; %d points replayed since the outage began "
                "(%d of them accepted while it was down); counters now written=%d replayed=%d spooled=%d",
                self.role,
                self.store.name,
                self._s.replayed - ep["replayed"],
                self._s.spooled - ep["spooled"],
                self._s.written,
                self._s.replayed,
                self._s.spooled,
            )
        self._backoff.reset()

    async def _outage_wait(self, exc: StoreUnavailable) -> bool:
        """Record the outage, wait out the backoff. False when the writer should give up (stopping)."""
        self._s.retries += 1
        self._s.last_error = str(exc)
        if not self._outage:
            log.error("%s %s unreachable (%s); spooling to disk", self.role, self.store.name, exc)
            self._outage = True
            self._s.state = WriterState.OUTAGE
            if self._episode is None:
                self._episode = {
                    "since_ns": now_ns(),
                    "replayed": self._s.replayed,
                    "spooled": self._s.spooled,
                }
        if self._stopping:
            return False
        loop = asyncio.get_running_loop()
        delay = self._backoff.next(exc.retry_after_s)
        deadline = loop.time() + delay
        # An unanswered store is probed on a short period: the first write goes out as soon as it
        # answers again, not at the end of a backoff that grew while it was down. A store that
        # answered "not now" (429, 5xx, Retry-After) is left alone for the whole backoff.
        probe_s = self.config.retry.probe_interval_ms / 1000 if exc.unreachable else delay
        self._wake.clear()
        while True:
            step = min(probe_s, deadline - loop.time())
            if step > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_now.wait(), step)
            if self._stop_now.is_set():
                return False
            if loop.time() >= deadline:
                return True
            if await self.store.ping():
                return True

    async def _maintain(self) -> None:
        """fsync the spool on the interval policy and store the writer's own health signals."""
        interval = self.config.spool.fsync_interval_ms / 1000
        health_every = self.config.health_interval_s
        last_health = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.spool.sync)  # fsync can take a while; not on the loop
            now = asyncio.get_running_loop().time()
            if self.health_asset and health_every and now - last_health >= health_every:
                last_health = now
                self.submit(self.health_batch())

    def health_batch(self, final_online: bool | None = None) -> SampleBatch:
        """The writer's counters as signals of ``health_asset``.

        With ``final_online`` set (at stop) the counters already count this batch itself: as
        written if the store is reachable (it is sent next, and nothing else is), else as pending.
        """
        values = self._health_values(self.stats())
        if final_online is not None:
            n = len(values)
            values["produced"] += n
            values["written" if final_online else "pending"] += n
        asset = self.health_asset or ""
        ts = now_ns()
        keys = [(asset, name) for name in values]
        return SampleBatch.from_columns(keys, range(len(keys)), [ts] * len(keys), list(values.values()))

    @classmethod
    def health_signals(cls) -> list[str]:
        """The names of the counters ``health_batch`` stores (a Sparkplug birth declares them up front)."""
        return list(cls._health_values(WriterStats()))

    @staticmethod
    def _health_values(s: WriterStats) -> dict[str, float]:
        return {
            "produced": s.produced,
            "written": s.written,
            "pending": s.pending,
            "spooled": s.spooled,
            "replayed": s.replayed,
            "quarantined": s.quarantined,
            "dropped": s.dropped_total,
            "retries": s.retries,
            "spool_bytes": s.spool_bytes,
            "online": float(s.state == WriterState.ONLINE),
        }
