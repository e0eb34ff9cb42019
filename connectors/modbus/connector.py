"""ModbusConnector: polls a Modbus TCP device with pymodbus, one loop per polling group, into batches.

Owns the connection (capped exponential reconnect with jitter), the poll loops, gap events and guarded
writes. Frame checks are in ``frames``, the per-group plan, buffers and quality marking in ``poll_plan``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import numpy as np
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from connectors.base import Connector, ConnectorSpec, Sink, SourceContext
from connectors.modbus.config import ModbusSettings, ModbusTag, check_groups
from connectors.modbus.decode import encode_value
from connectors.modbus.frames import (
    ReadFailure,
    check_mbap,
    check_response,
    install_strict_decoding,
    sent_ids,
)
from connectors.modbus.poll_plan import BAD, PollGroup, build_group, status_lut
from connectors.modbus.pymodbus_logs import install_log_filter
from connectors.modbus.read_plan import PlanLimits
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Quality, now_ns


class ModbusConnector(Connector[ModbusSettings, ModbusTag]):
    """Polls registers, coils and discrete inputs of one Modbus TCP device; read-only unless a tag
    says ``writable: true`` and :meth:`write` is called.
    """

    HUNG_AFTER = 2  # requests in a row without any byte back that mean a hung peer, not one lost frame

    spec = ConnectorSpec(
        name="modbus",
        settings_model=ModbusSettings,
        tag_model=ModbusTag,
        description="Modbus TCP (pymodbus): polling groups, merged reads, per-tag byte/word order",
        check=check_groups,
    )

    def __init__(self, ctx: SourceContext[ModbusSettings, ModbusTag]) -> None:
        super().__init__(ctx)
        s = ctx.settings
        by_group: dict[str, list[ModbusTag]] = {g: [] for g in s.groups}
        for i, t in enumerate(ctx.tags):
            g = t.group or s.default_group
            if g not in by_group:
                raise ValueError(
                    f"source {ctx.name!r}: tag {i} ({t.asset} {t.signal}) names group {g!r}; "
                    f"the settings define groups {', '.join(s.groups)}"
                )
            by_group[g].append(t)
        limits = PlanLimits(
            s.max_registers_per_request, s.max_bits_per_request, s.gap_fill_registers, s.gap_fill_bits
        )
        self.groups = [build_group(g, s.groups[g], tags, limits) for g, tags in by_group.items() if tags]
        self._all_keys = tuple(k for g in self.groups for k in g.keys)
        self._assets = sorted({t.asset for t in ctx.tags})
        self._by_key = {(t.asset, t.signal): t for t in ctx.tags}
        self._status_lut = status_lut(s.status_good, s.status_uncertain)
        self._client: AsyncModbusTcpClient | None = None
        self._sink: Sink | None = None
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._delay = s.reconnect_initial_s
        self._rng = random.Random()
        self._lost_at_ns: int | None = None
        self._bad_marked = False
        self._sent: tuple[int, int] = (0, 0)  # (transaction id, unit id) of the last request sent
        self._unanswered = 0  # requests in a row that got no byte back (reset by anything received)
        self._answered = False  # the peer has sent something on the current connection
        self.connect_attempts = 0
        self.writes_sent = 0

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self, sink: Sink) -> None:
        install_log_filter()
        s = self.ctx.settings
        self._sink = sink
        self._stop.clear()
        self._client = AsyncModbusTcpClient(
            s.host,
            port=s.port,
            name=f"shopfloor-{self.ctx.name}",
            reconnect_delay=0,  # reconnecting is ours: jittered, capped, reset only after good data
            reconnect_delay_max=0,
            timeout=s.timeout_s,
            retries=s.retries,
            trace_packet=self._trace_packet,
            trace_connect=self._trace_connect,
        )
        install_strict_decoding(self._client)
        self._tasks = [self.spawn(self._supervise(), f"modbus-{self.ctx.name}-connection")]
        self._tasks += [
            self.spawn(self._run_group(g), f"modbus-{self.ctx.name}-{g.name}") for g in self.groups
        ]

    async def stop(self) -> None:
        """Let running polls finish and emit (bounded by the request timeout), then close."""
        if not self._tasks:
            self.tracker.on_stopped()
            return
        self._stop.set()
        s = self.ctx.settings
        bound = s.timeout_s * (s.retries + 1) * max(1, max((len(g.requests) for g in self.groups), default=1))
        _, pending = await asyncio.wait(self._tasks, timeout=min(bound, 30.0) + 1.0)
        for t in pending:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._client is not None:
            self._client.close()
        self._connected.clear()
        self.tracker.on_stopped()

    def describe(self) -> dict[str, Any]:
        s = self.ctx.settings
        return {
            "endpoint": f"{s.host}:{s.port}",
            "groups": {
                g.name: {
                    "interval_s": g.interval_s,
                    "tags": len(g.tags) + len(g.strings),
                    "requests_per_poll": len(g.requests),
                    "registers_per_poll": sum(r.count for r in g.requests if not r.is_bits),
                    "bits_per_poll": sum(r.count for r in g.requests if r.is_bits),
                    "polls": g.polls,
                    "overruns": g.overruns,
                    "mean_poll_ms": 1000 * g.busy_s / g.polls if g.polls else None,
                }
                for g in self.groups
            },
            "connect_attempts": self.connect_attempts,
            "writes_sent": self.writes_sent,
        }

    # -- connection ------------------------------------------------------------------------------
    def _jittered(self) -> float:
        d = self._delay
        self._delay = min(self._delay * 2, self.ctx.settings.reconnect_max_s)
        return d / 2 + self._rng.uniform(0, d / 2)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _supervise(self) -> None:
        s = self.ctx.settings
        assert self._client is not None
        while not self._stop.is_set():
            if not self._connected.is_set():
                self.connect_attempts += 1
                ok = await self._client.connect()
                if self._stop.is_set():
                    break
                if ok and self._client.connected:
                    # TCP is up, but a hung peer (or its kernel's listen backlog) accepts too: the source
                    # counts as connected once the device answers (see _trace_packet), not before.
                    self._lost.clear()
                    self._unanswered = 0
                    self._answered = False
                    self._connected.set()
                else:
                    self.tracker.on_disconnected("connect", f"cannot connect to {s.host}:{s.port}")
                    self._mark_all_bad(now_ns())
                    await self._sleep(self._jittered())
                    continue
            waiter = asyncio.create_task(self._lost.wait())
            stopper = asyncio.create_task(self._stop.wait())
            await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if self._stop.is_set():
                break
            await self._sleep(self._jittered())  # a peer that accepts then drops must not spin us

    def _trace_connect(self, up: bool) -> None:
        if not up and not self._stop.is_set():
            s = self.ctx.settings
            self._connection_lost("connection_lost", f"{s.host}:{s.port} closed the connection")

    def _connection_lost(self, kind: str, message: str) -> None:
        if not self._connected.is_set():
            return
        self._connected.clear()
        ts = now_ns()
        self._lost_at_ns = ts
        self.tracker.on_disconnected(kind, message)
        self._mark_all_bad(ts)
        # wake a request waiting for its answer on the dead link now, not after timeout x retries
        fut = getattr(getattr(self._client, "ctx", None), "response_future", None)
        if isinstance(fut, asyncio.Future) and not fut.done():
            fut.set_exception(ConnectionException(message))
        self._lost.set()

    def _mark_all_bad(self, ts: int) -> None:
        """Once per outage: every tag Bad (NaN), so nobody mistakes the last value for a live one."""
        if self._bad_marked or self._sink is None or not self._all_keys:
            return
        self._bad_marked = True
        n = len(self._all_keys)
        self._sink.emit(
            SampleBatch(
                self._all_keys,
                np.arange(n, dtype=np.uint32),
                np.full(n, ts, dtype=np.int64),
                np.full(n, np.nan),
                np.full(n, BAD, dtype=np.uint8),
            )
        )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Counts frames pymodbus skips silently (their request then times out)."""
        if sending:
            sent = sent_ids(data)
            if sent is not None:
                self._sent = sent
            return data
        self._unanswered = 0
        if not self._answered and self._connected.is_set():
            self._answered = True
            self.tracker.on_connected()
        check_mbap(data, self._sent, self.tracker.on_error)
        return data

    def _no_answer(self) -> bool:
        """Count a request that got nothing back; after ``HUNG_AFTER`` in a row the peer is hung:
        drop the connection (its socket may stay open for ever) and reconnect with backoff.
        """
        self._unanswered += 1
        if self._unanswered < self.HUNG_AFTER:
            return False
        s = self.ctx.settings
        self._connection_lost(
            "no_response",
            f"{s.host}:{s.port} answered none of the last {self._unanswered} requests "
            f"({s.retries + 1} x {s.timeout_s:g} s each); the connection is open but the device is not answering",
        )
        if self._client is not None:
            self._client.close()
        return True

    # -- polling ---------------------------------------------------------------------------------
    async def _run_group(self, g: PollGroup) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            if not self._connected.is_set():
                waiter = asyncio.create_task(self._connected.wait())
                stopper = asyncio.create_task(self._stop.wait())
                await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            t0 = loop.time()
            try:
                await self._poll(g)
            except Exception as exc:  # a bug here must not end acquisition; it is counted and logged once
                self.tracker.on_error("internal", f"{type(exc).__name__}: {exc}")
            g.polls += 1
            g.busy_s += loop.time() - t0
            wait = t0 + g.interval_s - loop.time()
            if wait <= 0:
                g.overruns += 1
                await asyncio.sleep(0)
            else:
                await self._sleep(wait)

    async def _read(self, g: PollGroup, k: int) -> None:
        """Run request ``k`` of group ``g`` and copy its data into the group's buffer, or raise ReadFailure."""
        client = self._client
        assert client is not None
        req = g.requests[k]
        pdu = g.pdus[k]
        where = f"unit {req.unit_id} {req.table} {req.address}..{req.address + req.count - 1}"
        if not self._connected.is_set():
            raise ReadFailure("connection", "not connected")
        try:
            resp = await client.execute(False, pdu)
        except ConnectionException as exc:
            raise ReadFailure("connection", str(exc)) from None
        except ModbusIOException as exc:
            if not client.connected:
                raise ReadFailure("connection", str(exc)) from None
            raise ReadFailure(
                "timeout", f"{where}: no valid answer within {self.ctx.settings.timeout_s:g} s"
            ) from None
        except ModbusException as exc:
            raise ReadFailure("malformed", f"{where}: {exc}") from None
        g.store(k, check_response(resp, req, pdu, where))

    async def _poll(self, g: PollGroup) -> None:
        nreq = len(g.requests)
        ok = np.zeros(nreq, dtype=bool)
        done = np.zeros(nreq, dtype=bool)
        req_ts = np.zeros(nreq, dtype=np.int64)
        for k in range(nreq):
            try:
                await self._read(g, k)
                ok[k] = True
            except ReadFailure as f:
                if f.kind == "connection":
                    self._connection_lost("connection_lost", str(f))
                    break
                self.tracker.on_error(f.kind, str(f))
                if f.kind == "timeout" and self._no_answer():
                    break
            done[k] = True
            req_ts[k] = now_ns()
        if not done.any():
            return
        good_any = bool(ok.any())
        self._emit(g, ok, done, req_ts)
        if good_any:
            self._delay = self.ctx.settings.reconnect_initial_s
            self._bad_marked = False
            if self._lost_at_ns is not None:
                self._record_gap(self._lost_at_ns, int(req_ts[ok].min()))

    def _emit(self, g: PollGroup, ok: np.ndarray, done: np.ndarray, req_ts: np.ndarray) -> None:
        assert self._sink is not None
        batch = g.samples(ok, done, req_ts, self._status_lut)
        if batch is not None and len(batch):
            self._sink.emit(batch)
            good = batch.quality == Quality.GOOD
            if good.any():
                self.tracker.on_samples(int(good.sum()), int(batch.ts.max()))
        if g.strings:
            events = g.string_events(ok, req_ts, self.ctx.name)
            if events:
                self._sink.emit_events(events)

    def _record_gap(self, from_ns: int, to_ns: int) -> None:
        assert self._sink is not None
        self._lost_at_ns = None
        self.tracker.on_gap()
        msg = f"source {self.ctx.name}: no data from the device for {(to_ns - from_ns) / 1e9:.1f} s (connection lost)"
        data = {"source": self.ctx.name, "from_ns": from_ns, "to_ns": to_ns}
        self._sink.emit_events(
            [
                Event(a, EventKind.GAP, to_ns, code="modbus_reconnect", message=msg, data=data)
                for a in self._assets
            ]
        )

    # -- writing ---------------------------------------------------------------------------------
    async def write(self, tag: ModbusTag | tuple[str, str], value: float) -> None:
        """Write ``value`` (in engineering units: (value - offset) / scale goes on the wire).

        Refused with PermissionError, before anything is sent, unless the tag says ``writable: true``.
        """
        t = tag if isinstance(tag, ModbusTag) else self._by_key.get(tuple(tag))  # type: ignore[arg-type]
        if t is None:
            raise KeyError(f"source {self.ctx.name!r} has no tag {tag!r}")
        if not t.writable:
            raise PermissionError(
                f"tag {t.asset} {t.signal} of source {self.ctx.name!r} is read-only; set 'writable: true' "
                "on the tag to allow writes (nothing was sent)"
            )
        client = self._client
        if client is None or not self._connected.is_set():
            raise ConnectionError(f"source {self.ctx.name!r} is not connected")
        if t.table == "coil":
            resp = await client.write_coil(t.address, bool(value), device_id=t.unit_id)
        else:
            regs = encode_value((value - t.offset) / t.scale, t.type, t.word_order, t.byte_order)
            if len(regs) == 1:
                resp = await client.write_register(t.address, regs[0], device_id=t.unit_id)
            else:
                resp = await client.write_registers(t.address, regs, device_id=t.unit_id)
        self.writes_sent += 1
        if resp.isError():
            raise OSError(
                f"device refused the write to {t.asset} {t.signal}: exception {getattr(resp, 'exception_code', '?')}"
            )
