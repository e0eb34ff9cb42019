"""ModbusConnector: polls a Modbus TCP device with pymodbus, one loop per polling group, into batches.

Owns the connection (capped exponential reconnect with jitter), response validation (a value from a
malformed or mismatched frame is never accepted), quality marking, gap events and guarded writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
)

from connectors.base import Connector, ConnectorSpec, Sink, SourceContext
from connectors.modbus.config import BIT_TABLES, ModbusSettings, ModbusTag, check_groups
from connectors.modbus.decode import RegisterDecoder, RegisterField, decode_string, encode_value
from connectors.modbus.read_plan import Item, PlanLimits, Request, plan_reads
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Quality, SeriesKey, now_ns

_BAD = np.uint8(Quality.BAD)
_UNCERTAIN = np.uint8(Quality.UNCERTAIN)


# -- strict responses: keep the raw bytes, check the byte count, never raise -----------------------
class _StrictRegisters:
    """Mixin for FC3/FC4 responses: the data bytes are kept as received (numpy reads them directly)."""

    raw: bytes = b""
    malformed: str = ""

    def decode(self, data: bytes) -> None:
        self.registers = []  # type: ignore[misc]  # not built: the connector decodes ``raw``
        n = data[0] if data else -1
        if n < 0 or n != len(data) - 1 or n % 2:
            self.raw = b""
            self.malformed = f"byte count {n} does not match {max(len(data) - 1, 0)} data bytes"
            return
        self.raw = bytes(data[1:])
        self.malformed = ""


class _StrictBits:
    raw: bytes = b""
    malformed: str = ""

    def decode(self, data: bytes) -> None:
        self.bits = []  # type: ignore[misc]
        n = data[0] if data else -1
        if n < 0 or n != len(data) - 1:
            self.raw = b""
            self.malformed = f"byte count {n} does not match {max(len(data) - 1, 0)} data bytes"
            return
        self.raw = bytes(data[1:])
        self.malformed = ""


class _HoldingResponse(_StrictRegisters, ReadHoldingRegistersResponse):
    pass


class _InputResponse(_StrictRegisters, ReadInputRegistersResponse):
    pass


class _CoilsResponse(_StrictBits, ReadCoilsResponse):
    pass


class _DiscreteResponse(_StrictBits, ReadDiscreteInputsResponse):
    pass


class _Undecodable(ModbusPDU):
    """What the decoder returns instead of ``None`` (which would make pymodbus drop the connection)."""

    function_code = 0

    def __init__(self, frame: bytes) -> None:
        super().__init__()
        self.malformed = f"undecodable PDU of {len(frame)} bytes (function code {frame[0] if frame else '-'})"


_REQUEST = {
    "coil": (ReadCoilsRequest, _CoilsResponse),
    "discrete": (ReadDiscreteInputsRequest, _DiscreteResponse),
    "holding": (ReadHoldingRegistersRequest, _HoldingResponse),
    "input": (ReadInputRegistersRequest, _InputResponse),
}

# pymodbus logs every failed connect, every unanswered request and every skipped frame at WARNING
# or ERROR. The connector counts each of these in its health and logs once per state change, so
# these repeats are dropped unless the pymodbus logger is set to DEBUG.
_PYMODBUS_REPEATS = (
    "Failed to connect",
    "Not connected, trying to connect",
    "Cancel send, because not connected",
    "No response received",
    "Skipping",
    "Invalid Modbus protocol id",
    "Unable to decode",
    "received pdu without a corresponding request",
    "Repeating....",  # pymodbus' own stand-in for a repeat of the previous message
)


class _RepeatFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        msg = str(record.msg)
        return not any(p in msg for p in _PYMODBUS_REPEATS)


def _install_log_filter() -> None:
    lg = logging.getLogger("pymodbus.logging")
    if not any(isinstance(f, _RepeatFilter) for f in lg.filters):
        lg.addFilter(_RepeatFilter())


# -- the plan of one polling group -----------------------------------------------------------------
@dataclass
class _Group:
    """Everything precomputed for one polling group so a poll is I/O plus a few numpy calls."""

    name: str
    interval_s: float
    tags: list[ModbusTag]  # numeric tags, in batch row order
    keys: tuple[SeriesKey, ...]
    requests: list[Request]
    pdus: list[ModbusPDU]
    req_buf: np.ndarray  # per request: offset into the register (bytes/2) or bit buffer
    regbuf: np.ndarray  # uint8, 2 bytes per register, as on the wire
    bitbuf: np.ndarray  # uint8 0/1 per coil / discrete input
    decoder: RegisterDecoder
    reg_rows: np.ndarray  # batch rows decoded from registers
    bit_rows: np.ndarray
    bit_pos: np.ndarray
    row_req: np.ndarray  # per row: index of the request holding its value
    status_rows: np.ndarray
    status_pos: np.ndarray  # register index of each status word
    status_req: np.ndarray
    scale: np.ndarray | None
    offset: np.ndarray | None
    series: np.ndarray
    strings: list[tuple[ModbusTag, int, int]]  # (tag, register offset, request index)
    last_strings: dict[int, str] = field(default_factory=dict)
    polls: int = 0
    overruns: int = 0  # polls that took longer than the interval (the next one started late)
    busy_s: float = 0.0  # wall time spent polling


def _build_group(name: str, interval_s: float, tags: Sequence[ModbusTag], limits: PlanLimits) -> _Group:
    numeric = [t for t in tags if t.is_numeric]
    strings = [t for t in tags if not t.is_numeric]
    items: list[Item] = []
    value_item: list[int] = []
    status_item: list[int] = []
    for t in [*numeric, *strings]:
        value_item.append(len(items))
        items.append(Item(t.unit_id, t.table, t.address, t.words))
        if t.status_address is not None:
            status_item.append(len(items))
            items.append(Item(t.unit_id, t.status_table, t.status_address, 1))
        else:
            status_item.append(-1)
    requests = plan_reads(items, limits)
    item_req = np.empty(len(items), dtype=np.intp)
    item_pos = np.empty(len(items), dtype=np.intp)
    req_buf = np.empty(len(requests), dtype=np.intp)
    nreg = nbit = 0
    for k, r in enumerate(requests):
        req_buf[k] = nbit if r.is_bits else nreg
        for i, off in r.items:
            item_req[i] = k
            item_pos[i] = req_buf[k] + off
        if r.is_bits:
            nbit += r.count
        else:
            nreg += r.count
    n = len(numeric)
    reg_rows = [i for i, t in enumerate(numeric) if t.table not in BIT_TABLES]
    bit_rows = [i for i, t in enumerate(numeric) if t.table in BIT_TABLES]
    fields = [
        RegisterField(
            int(item_pos[value_item[i]]),
            numeric[i].type,
            numeric[i].word_order,
            numeric[i].byte_order,
            numeric[i].bit,
            numeric[i].length,
        )
        for i in reg_rows
    ]
    st_rows = [i for i in range(n) if status_item[i] >= 0]
    scale = np.array([t.scale for t in numeric], dtype=np.float64)
    offset = np.array([t.offset for t in numeric], dtype=np.float64)
    plain = bool(np.all(scale == 1.0) and np.all(offset == 0.0))
    return _Group(
        name=name,
        interval_s=interval_s,
        tags=numeric,
        keys=tuple(SeriesKey(t.asset, t.signal) for t in numeric),
        requests=requests,
        pdus=[_REQUEST[r.table][0](address=r.address, count=r.count, dev_id=r.unit_id) for r in requests],
        req_buf=req_buf,
        regbuf=np.zeros(2 * nreg, dtype=np.uint8),
        bitbuf=np.zeros(nbit, dtype=np.uint8),
        decoder=RegisterDecoder(fields),
        reg_rows=np.array(reg_rows, dtype=np.intp),
        bit_rows=np.array(bit_rows, dtype=np.intp),
        bit_pos=np.array([item_pos[value_item[i]] for i in bit_rows], dtype=np.intp),
        row_req=np.array([item_req[value_item[i]] for i in range(n)], dtype=np.intp),
        status_rows=np.array(st_rows, dtype=np.intp),
        status_pos=np.array([item_pos[status_item[i]] for i in st_rows], dtype=np.intp),
        status_req=np.array([item_req[status_item[i]] for i in st_rows], dtype=np.intp),
        scale=None if plain else scale,
        offset=None if plain else offset,
        series=np.arange(n, dtype=np.uint32),
        strings=[
            (t, int(item_pos[value_item[n + j]]), int(item_req[value_item[n + j]]))
            for j, t in enumerate(strings)
        ],
    )


class _Failure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ModbusConnector(Connector[ModbusSettings, ModbusTag]):
    """Polls registers, coils and discrete inputs of one Modbus TCP device; read-only unless a tag
    says ``writable: true`` and :meth:`write` is called.
    """

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
        self.groups = [_build_group(g, s.groups[g], tags, limits) for g, tags in by_group.items() if tags]
        self._all_keys = tuple(k for g in self.groups for k in g.keys)
        self._assets = sorted({t.asset for t in ctx.tags})
        self._by_key = {(t.asset, t.signal): t for t in ctx.tags}
        lut = np.full(65536, _BAD, dtype=np.uint8)
        lut[np.array(s.status_uncertain, dtype=np.intp)] = _UNCERTAIN
        lut[np.array(s.status_good, dtype=np.intp)] = Quality.GOOD
        self._status_lut = lut
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
        self.connect_attempts = 0
        self.writes_sent = 0

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self, sink: Sink) -> None:
        _install_log_filter()
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
        for _, response in _REQUEST.values():
            self._client.register(response)
        decoder = self._client.ctx.framer.decoder
        plain_decode = decoder.decode

        def decode(frame: bytes) -> ModbusPDU:
            pdu = plain_decode(frame)
            return pdu if pdu is not None else _Undecodable(frame)

        decoder.decode = decode  # type: ignore[method-assign]
        self._tasks = [asyncio.create_task(self._supervise(), name=f"modbus-{self.ctx.name}-connection")]
        self._tasks += [
            asyncio.create_task(self._run_group(g), name=f"modbus-{self.ctx.name}-{g.name}")
            for g in self.groups
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
                    self._lost.clear()
                    self._connected.set()
                    self.tracker.on_connected()
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
                np.full(n, _BAD, dtype=np.uint8),
            )
        )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Counts frames pymodbus skips silently (their request then times out)."""
        if sending:
            if len(data) >= 7:
                self._sent = (int.from_bytes(data[0:2], "big"), data[6])
            return data
        pos = 0
        while len(data) - pos >= 7:
            tid = int.from_bytes(data[pos : pos + 2], "big")
            pid = int.from_bytes(data[pos + 2 : pos + 4], "big")
            length = int.from_bytes(data[pos + 4 : pos + 6], "big")
            unit = data[pos + 6]
            if pid != 0:
                self.tracker.on_error("bad_protocol_id", f"MBAP protocol id {pid} (expected 0)")
                break
            if len(data) - pos < 6 + length:
                break
            exp_tid, exp_unit = self._sent
            if tid != exp_tid:
                self.tracker.on_error(
                    "wrong_transaction_id", f"answer has transaction id {tid}, expected {exp_tid}"
                )
            elif exp_unit and unit != exp_unit:
                self.tracker.on_error("wrong_unit_id", f"answer from unit {unit}, expected {exp_unit}")
            pos += 6 + max(length, 1)
        return data

    # -- polling ---------------------------------------------------------------------------------
    async def _run_group(self, g: _Group) -> None:
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

    async def _read(self, g: _Group, k: int) -> None:
        """Run request ``k`` of group ``g`` and copy its data into the group's buffer, or raise _Failure."""
        client = self._client
        assert client is not None
        req = g.requests[k]
        pdu = g.pdus[k]
        where = f"unit {req.unit_id} {req.table} {req.address}..{req.address + req.count - 1}"
        if not self._connected.is_set():
            raise _Failure("connection", "not connected")
        try:
            resp = await client.execute(False, pdu)
        except ConnectionException as exc:
            raise _Failure("connection", str(exc)) from None
        except ModbusIOException as exc:
            if not client.connected:
                raise _Failure("connection", str(exc)) from None
            raise _Failure(
                "timeout", f"{where}: no valid answer within {self.ctx.settings.timeout_s:g} s"
            ) from None
        except ModbusException as exc:
            raise _Failure("malformed", f"{where}: {exc}") from None
        fc = pdu.function_code
        if isinstance(resp, _Undecodable):
            raise _Failure("malformed", f"{where}: {resp.malformed}")
        if resp.function_code == fc | 0x80:
            code = int(getattr(resp, "exception_code", 0))
            raise _Failure(f"exception_{code:02d}", f"{where}: Modbus exception {code:#04x}")
        expected = _REQUEST[req.table][1]
        if type(resp) is not expected or resp.function_code != fc:
            raise _Failure(
                "malformed", f"{where}: answer has function code {resp.function_code}, expected {fc}"
            )
        if resp.transaction_id != pdu.transaction_id:
            raise _Failure("malformed", f"{where}: answer has transaction id {resp.transaction_id}")
        if req.unit_id and resp.dev_id != req.unit_id:
            raise _Failure("malformed", f"{where}: answer from unit {resp.dev_id}")
        if resp.malformed:
            raise _Failure("malformed", f"{where}: {resp.malformed}")
        raw = resp.raw
        start = int(g.req_buf[k])
        if req.is_bits:
            if len(raw) != (req.count + 7) // 8:
                raise _Failure("malformed", f"{where}: {len(raw)} data bytes for {req.count} bits")
            bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
            g.bitbuf[start : start + req.count] = bits[: req.count]
        else:
            if len(raw) != 2 * req.count:
                raise _Failure("malformed", f"{where}: {len(raw) // 2} registers for {req.count} asked")
            g.regbuf[2 * start : 2 * (start + req.count)] = np.frombuffer(raw, dtype=np.uint8)

    async def _poll(self, g: _Group) -> None:
        nreq = len(g.requests)
        ok = np.zeros(nreq, dtype=bool)
        done = np.zeros(nreq, dtype=bool)
        req_ts = np.zeros(nreq, dtype=np.int64)
        for k in range(nreq):
            try:
                await self._read(g, k)
                ok[k] = True
            except _Failure as f:
                if f.kind == "connection":
                    self._connection_lost("connection_lost", str(f))
                    break
                self.tracker.on_error(f.kind, str(f))
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

    def _emit(self, g: _Group, ok: np.ndarray, done: np.ndarray, req_ts: np.ndarray) -> None:
        assert self._sink is not None
        n = len(g.tags)
        if n:
            values = np.empty(n, dtype=np.float64)
            if len(g.reg_rows):
                values[g.reg_rows] = g.decoder.decode(g.regbuf)
            if len(g.bit_rows):
                values[g.bit_rows] = g.bitbuf[g.bit_pos]
            if g.scale is not None:
                values = values * g.scale + g.offset
            quality = np.zeros(n, dtype=np.uint8)
            if len(g.status_rows):
                words = g.regbuf.view(">u2")[g.status_pos]
                st = self._status_lut[words]
                st[~ok[g.status_req]] = _UNCERTAIN  # the value was read, its status was not
                quality[g.status_rows] = st
            quality[np.isnan(values)] = _BAD
            failed = ~ok[g.row_req]
            if failed.any():
                values[failed] = np.nan
                quality[failed] = _BAD
            ts = req_ts[g.row_req]
            batch = SampleBatch(g.keys, g.series, ts, values, quality)
            if not done.all():
                batch = batch.take(done[g.row_req])
            if len(batch):
                self._sink.emit(batch)
                good = batch.quality == Quality.GOOD
                if good.any():
                    self.tracker.on_samples(int(good.sum()), int(batch.ts.max()))
        if g.strings:
            events = []
            for i, (t, pos, k) in enumerate(g.strings):
                if not ok[k]:
                    continue
                text = decode_string(g.regbuf, pos, t.length or 0, t.byte_order)
                if g.last_strings.get(i) != text:
                    g.last_strings[i] = text
                    events.append(
                        Event(
                            t.asset,
                            EventKind.SYSTEM,
                            int(req_ts[k]),
                            code=t.signal,
                            message=text,
                            data={"source": self.ctx.name, "signal": t.signal, "value": text},
                        )
                    )
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
