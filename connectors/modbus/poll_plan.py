"""The plan of one Modbus polling group: its requests (refused ones too), wire buffers and row indexes.
Turns the buffers of a finished poll into one SampleBatch (values, quality) and string-change events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pymodbus.pdu import ModbusPDU

from connectors.modbus.config import BIT_TABLES, ModbusTag
from connectors.modbus.decode import RegisterDecoder, RegisterField, decode_string
from connectors.modbus.frames import REQUEST_TYPES
from connectors.modbus.read_plan import Item, PlanLimits, Request, plan_reads
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Quality, SeriesKey

BAD = np.uint8(Quality.BAD)
UNCERTAIN = np.uint8(Quality.UNCERTAIN)


def status_lut(good: Sequence[int], uncertain: Sequence[int]) -> np.ndarray:
    """Quality of every 16-bit status word: Bad unless listed as good or uncertain."""
    lut = np.full(65536, BAD, dtype=np.uint8)
    lut[np.array(uncertain, dtype=np.intp)] = UNCERTAIN
    lut[np.array(good, dtype=np.intp)] = Quality.GOOD
    return lut


@dataclass(frozen=True, slots=True)
class GroupItems:
    """What a group reads, before planning: one item per tag value and per status register."""

    numeric: list[ModbusTag]  # batch row order
    strings: list[ModbusTag]
    items: list[Item]
    value_item: list[int]  # per tag (numeric, then strings): its value item
    status_item: list[int]  # per tag: its status item, or -1
    owner: list[tuple[ModbusTag, bool]]  # per item: (tag, is its status register)


def group_items(tags: Sequence[ModbusTag]) -> GroupItems:
    numeric = [t for t in tags if t.is_numeric]
    strings = [t for t in tags if not t.is_numeric]
    items: list[Item] = []
    owner: list[tuple[ModbusTag, bool]] = []
    value_item: list[int] = []
    status_item: list[int] = []
    for t in [*numeric, *strings]:
        value_item.append(len(items))
        items.append(Item(t.unit_id, t.table, t.address, t.words))
        owner.append((t, False))
        if t.status_address is not None:
            status_item.append(len(items))
            items.append(Item(t.unit_id, t.status_table, t.status_address, 1))
            owner.append((t, True))
        else:
            status_item.append(-1)
    return GroupItems(numeric, strings, items, value_item, status_item, owner)


@dataclass
class PollGroup:
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
    refused: np.ndarray  # per request: refused by the device (exception 02); not sent, its tags Bad
    sent: list[int]  # indexes of the requests a poll sends, in order
    last_strings: dict[int, str] = field(default_factory=dict)
    polls: int = 0
    overruns: int = 0  # polls that took longer than the interval (the next one started late)
    busy_s: float = 0.0  # wall time spent polling

    def store(self, k: int, raw: bytes) -> None:
        """Copy the checked data bytes of request ``k`` into the group's register or bit buffer."""
        req = self.requests[k]
        start = int(self.req_buf[k])
        if req.is_bits:
            bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
            self.bitbuf[start : start + req.count] = bits[: req.count]
        else:
            self.regbuf[2 * start : 2 * (start + req.count)] = np.frombuffer(raw, dtype=np.uint8)

    def samples(
        self, ok: np.ndarray, done: np.ndarray, req_ts: np.ndarray, lut: np.ndarray
    ) -> SampleBatch | None:
        """The numeric tags of a poll: rows of failed requests are Bad NaN, rows not attempted left out."""
        n = len(self.tags)
        if not n:
            return None
        values = np.empty(n, dtype=np.float64)
        if len(self.reg_rows):
            values[self.reg_rows] = self.decoder.decode(self.regbuf)
        if len(self.bit_rows):
            values[self.bit_rows] = self.bitbuf[self.bit_pos]
        if self.scale is not None:
            values = values * self.scale + self.offset
        quality = np.zeros(n, dtype=np.uint8)
        if len(self.status_rows):
            words = self.regbuf.view(">u2")[self.status_pos]
            st = lut[words]
            st[~ok[self.status_req]] = UNCERTAIN  # the value was read, its status was not
            quality[self.status_rows] = st
        quality[np.isnan(values)] = BAD
        failed = ~ok[self.row_req]
        if failed.any():
            values[failed] = np.nan
            quality[failed] = BAD
        ts = req_ts[self.row_req]
        batch = SampleBatch(self.keys, self.series, ts, values, quality)
        if not done.all():
            batch = batch.take(done[self.row_req])
        return batch

    def string_events(self, ok: np.ndarray, req_ts: np.ndarray, source: str) -> list[Event]:
        """One SYSTEM event per string tag whose text changed since the last poll that read it."""
        events = []
        for i, (t, pos, k) in enumerate(self.strings):
            if not ok[k]:
                continue
            text = decode_string(self.regbuf, pos, t.length or 0, t.byte_order)
            if self.last_strings.get(i) != text:
                self.last_strings[i] = text
                events.append(
                    Event(
                        t.asset,
                        EventKind.SYSTEM,
                        int(req_ts[k]),
                        code=t.signal,
                        message=text,
                        data={"source": source, "signal": t.signal, "value": text},
                        key=t.signal,
                    )
                )
        return events


def build_group(
    name: str,
    interval_s: float,
    tags: Sequence[ModbusTag],
    limits: PlanLimits,
    requests: Sequence[Request] | None = None,
    refused: Sequence[bool] | None = None,
) -> PollGroup:
    """The plan of a group: ``requests`` as planned by :func:`plan_reads` unless given (a split plan,
    covering every item of :func:`group_items` exactly once), ``refused`` flags per request.
    """
    gi = group_items(tags)
    numeric, strings, items = gi.numeric, gi.strings, gi.items
    value_item, status_item = gi.value_item, gi.status_item
    requests = plan_reads(items, limits) if requests is None else list(requests)
    refused_flags = np.zeros(len(requests), dtype=bool) if refused is None else np.array(refused, dtype=bool)
    if len(refused_flags) != len(requests):
        raise ValueError("one refused flag per request")
    item_req = np.full(len(items), -1, dtype=np.intp)
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
    if (item_req < 0).any():
        raise ValueError(f"items {np.flatnonzero(item_req < 0).tolist()} are in no request")
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
    return PollGroup(
        name=name,
        interval_s=interval_s,
        tags=numeric,
        keys=tuple(SeriesKey(t.asset, t.signal) for t in numeric),
        requests=requests,
        pdus=[
            REQUEST_TYPES[r.table][0](address=r.address, count=r.count, dev_id=r.unit_id) for r in requests
        ],
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
        refused=refused_flags,
        sent=[k for k in range(len(requests)) if not refused_flags[k]],
    )
