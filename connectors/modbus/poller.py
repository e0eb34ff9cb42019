"""The poll loop of one Modbus polling group: its reads, one batch per poll, string-change events.
A failed request marks only its own tags Bad; a lost connection ends the poll (the connection owns the loss).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from connectors.modbus.config import ModbusTag
from connectors.modbus.connection import ModbusConnection
from connectors.modbus.frames import ILLEGAL_ADDRESS, REQUEST_TYPES, ReadFailure, check_response
from connectors.modbus.output import Output
from connectors.modbus.poll_plan import PollGroup, build_group, group_items
from connectors.modbus.read_plan import PlanLimits, Request
from connectors.modbus.refusals import RefusedRanges, where
from shopfloor.health import HealthTracker
from shopfloor.model import now_ns


class GroupPoller:
    """Polls one group every ``interval_s`` while connected; a poll that overruns starts the next at once.

    A request answered with exception 02 is handed to :class:`RefusedRanges`, which splits it; the
    group's plan is then rebuilt after that poll, and rebuilt again when a refused range answers.
    """

    def __init__(
        self,
        source: str,
        name: str,
        interval_s: float,
        tags: Sequence[ModbusTag],
        limits: PlanLimits,
        conn: ModbusConnection,
        output: Output,
        tracker: HealthTracker,
        status_lut: np.ndarray,
    ) -> None:
        self.source, self.conn, self.output = source, conn, output
        self.tracker, self.status_lut = tracker, status_lut
        self._tags, self._limits = list(tags), limits
        self.group: PollGroup = build_group(name, interval_s, tags, limits)
        self.refusals = RefusedRanges(
            source,
            self.group.requests,
            group_items(tags),
            tracker,
            conn.log,
            conn.settings.refused_retry_s,
        )
        self._replan = False
        self._retry_at = 0.0

    async def run(self) -> None:
        conn = self.conn
        loop = asyncio.get_running_loop()
        while not conn.stopping.is_set():
            if not conn.connected.is_set():
                await conn.wait_connected()
                continue
            g = self.group
            t0 = loop.time()
            try:
                await self.poll()
                if self.refusals.active and loop.time() >= self._retry_at and conn.connected.is_set():
                    self._retry_at = loop.time() + self.refusals.retry_s
                    self._replan |= await self.refusals.retry(self.read_outside_plan)
            except Exception as exc:  # a bug here must not end acquisition; it is counted and logged once
                self.tracker.on_error("internal", f"{type(exc).__name__}: {exc}")
            g.polls += 1
            g.busy_s += loop.time() - t0
            wait = t0 + g.interval_s - loop.time()
            if wait <= 0:
                g.overruns += 1
            if self._replan:
                self._rebuild()  # after the counters of this poll: they carry over
            if wait <= 0:
                await asyncio.sleep(0)
            else:
                await conn.sleep(wait)

    def _rebuild(self) -> None:
        """The group's plan after a split or a restore; its counters and last strings carry over."""
        old = self.group
        requests, refused = self.refusals.plan()
        new = build_group(old.name, old.interval_s, self._tags, self._limits, requests, refused)
        new.polls, new.overruns, new.busy_s, new.last_strings = (
            old.polls,
            old.overruns,
            old.busy_s,
            old.last_strings,
        )
        self.group = new
        self._replan = False

    # -- reads -----------------------------------------------------------------------------------
    def count(self, f: ReadFailure) -> None:
        """Count a failed read in health; a lost connection or a hung peer ends the poll (``ends_poll``)."""
        if f.kind == "connection":
            self.conn.lost("connection_lost", str(f))
            f.ends_poll = True
            return
        self.tracker.on_error(f.kind, str(f))
        if f.kind == "timeout" and self.conn.no_answer():
            f.ends_poll = True

    async def read(self, k: int) -> None:
        """Run request ``k`` of the group and copy its data into the group's buffer, or raise ReadFailure."""
        g = self.group
        req = g.requests[k]
        pdu = g.pdus[k]
        at = where(req)
        resp = await self.conn.read(pdu, at)
        g.store(k, check_response(resp, req, pdu, at))

    async def read_outside_plan(self, req: Request) -> None:
        """One read to isolate or re-read a refused range: data unused, failures counted like a poll's."""
        if self.conn.stopping.is_set():  # not counted: the search just ends
            stopping = ReadFailure("connection", "the source is stopping")
            stopping.ends_poll = True
            raise stopping
        pdu = REQUEST_TYPES[req.table][0](address=req.address, count=req.count, dev_id=req.unit_id)
        at = where(req)
        try:
            check_response(await self.conn.read(pdu, at), req, pdu, at)
        except ReadFailure as f:
            self.count(f)
            raise

    # -- one poll --------------------------------------------------------------------------------
    async def poll(self) -> None:
        g = self.group
        nreq = len(g.requests)
        ok = np.zeros(nreq, dtype=bool)
        done = np.zeros(nreq, dtype=bool)
        req_ts = np.zeros(nreq, dtype=np.int64)
        for k in g.sent:
            try:
                await self.read(k)
                ok[k] = True
            except ReadFailure as f:
                self.count(f)
                if f.ends_poll:
                    break
                if f.kind == ILLEGAL_ADDRESS:
                    stopped = await self.refusals.isolate(g.requests[k], f, self.read_outside_plan)
                    if stopped is None:
                        self._replan = True  # from the next poll on
                        self._retry_at = asyncio.get_running_loop().time() + self.refusals.retry_s
                    elif stopped.ends_poll:
                        break
            done[k] = True
            req_ts[k] = now_ns()
        if not done.any():
            return
        if len(g.sent) < nreq:  # refused ranges: not sent, their tags Bad in every poll that read anything
            done |= g.refused
            req_ts[g.refused] = now_ns()
        self.emit(ok, done, req_ts)
        if ok.any():
            self.conn.data_resumed(int(req_ts[ok].min()))

    def emit(self, ok: np.ndarray, done: np.ndarray, req_ts: np.ndarray) -> None:
        g = self.group
        batch = g.samples(ok, done, req_ts, self.status_lut)
        if batch is not None:
            self.output.samples(batch)
        if g.strings:
            self.output.events(g.string_events(ok, req_ts, self.source))
