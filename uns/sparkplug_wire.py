"""The Sparkplug B DATA wire format written and read by numpy a protobuf field at a time for every metric at once,
byte for byte what the protobuf runtime writes, and the runtime readers the host falls back to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shopfloor.model import (
    Quality,
)
from uns import sparkplug_b_pb2 as _pb_module
from uns.sparkplug_spec import (
    _MASK32,
    _NS_PER_MS,
    _SIGNED_WIDTH,
    NANOS_PROPERTY,
    QUALITY_PROPERTY,
    DataType,
    quality_of_code,
)

_pb: Any = _pb_module  # generated code: no static types

_PROPERTY_BYTES: dict[tuple[int, int], bytes] = {}  # (quality code, ns rest) -> serialized PropertySet
_QUALITY_KEY = b"\x0a" + bytes((len(QUALITY_PROPERTY),)) + QUALITY_PROPERTY.encode()
_NANOS_KEY = b"\x0a" + bytes((len(NANOS_PROPERTY),)) + NANOS_PROPERTY.encode()


def _varint(v: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _property_bytes(quality_code: int, ns_rest: int) -> bytes:
    """The serialized property set of a metric (Quality unless good, the sub-millisecond rest unless 0).

    Cached: sources stamp in whole micro- or milliseconds, so few distinct sets recur."""
    b = _PROPERTY_BYTES.get((quality_code, ns_rest))
    if (
        b is None
    ):  # PropertySet: keys (field 1) then values (field 2), each PropertyValue {type=1, int_value=3}
        keys, values = b"", b""
        if quality_code != 192:
            keys += _QUALITY_KEY
            pv = b"\x08\x03\x18" + _varint(quality_code & _MASK32)
            values += b"\x12" + _varint(len(pv)) + pv
        if ns_rest:
            keys += _NANOS_KEY
            pv = b"\x08\x07\x18" + _varint(ns_rest)
            values += b"\x12" + _varint(len(pv)) + pv
        b = keys + values
        if len(_PROPERTY_BYTES) >= 65_536:
            _PROPERTY_BYTES.clear()
        _PROPERTY_BYTES[(quality_code, ns_rest)] = b
    return b


def _set_properties(metric: Any, quality_code: int, ns_rest: int) -> None:
    if quality_code != 192 or ns_rest:
        metric.properties.MergeFromString(_property_bytes(quality_code, ns_rest))


# -- the DDATA wire encoder: protobuf written by numpy, a field at a time for every metric at once ---------------
_VARINT_STEPS = [np.uint64(1 << (7 * k)) for k in range(1, 10)]
_BYTE_OFFSETS = np.arange(1, 9)


def _varint_len(v: np.ndarray) -> np.ndarray:
    """How many bytes the varint of each value (uint64) takes."""
    n = np.ones(len(v), dtype=np.int64)
    for step in _VARINT_STEPS:
        n += v >= step
    return n


def _put_varint(buf: np.ndarray, pos: np.ndarray, v: np.ndarray, length: np.ndarray) -> None:
    """Write each value's varint (``length`` bytes, see :func:`_varint_len`) at ``pos`` into ``buf``."""
    if not len(v):
        return
    for k in range(int(length.max())):
        m = length > k
        b = (v[m] >> np.uint64(7 * k)) & np.uint64(0x7F)
        b |= np.where(length[m] > k + 1, np.uint64(0x80), np.uint64(0))
        buf[pos[m] + k] = b.astype(np.uint8)


def _put_const(buf: np.ndarray, pos: np.ndarray, const: bytes) -> None:
    for j, byte in enumerate(const):
        buf[pos + j] = byte


def _encode_metrics(
    alias: np.ndarray,
    ms: np.ndarray,
    rest: np.ndarray,
    qcode: np.ndarray,
    null: np.ndarray,
    dt: np.ndarray,
    value: np.ndarray,
    u64: np.ndarray,
    u32: np.ndarray,
    text: np.ndarray | None,
    historical: bool,
) -> bytes:
    """The ``metrics`` fields (2) of a DDATA payload, one per row, byte for byte what protobuf writes.

    Each Metric in field order: alias (2), timestamp (3), is_historical (5), is_null (7), properties (9:
    ``Quality`` unless 192 and ``shopfloor.ns`` unless 0, see :func:`_property_bytes`), then the value:
    int_value (10) for Int32, long_value (11) for Int64, double_value (13), boolean_value (14), string_value (15).
    Only text rows are visited one by one (to UTF-8 encode them)."""
    n = len(alias)
    live = ~null
    is_d = live & (dt == DataType.DOUBLE)
    is_l = live & (dt == DataType.INT64)
    is_i = live & (dt == DataType.INT32)
    is_b = live & (dt == DataType.BOOLEAN)
    is_s = live & (dt == DataType.STRING)
    alias_len, ms_len = _varint_len(alias), _varint_len(ms)
    hasq, hasr = qcode != 192, rest != 0
    has_p = hasq | hasr
    lq, lr = 3 + _varint_len(qcode), 3 + _varint_len(rest)  # PropertyValue {type, int_value}
    plen = hasq * (len(_QUALITY_KEY) + 2 + lq) + hasr * (len(_NANOS_KEY) + 2 + lr)  # < 128: one length byte
    l64, l32 = _varint_len(u64), _varint_len(u32)
    vlen = np.zeros(n, dtype=np.int64)
    vlen[is_d] = 9
    vlen[is_l] = 1 + l64[is_l]
    vlen[is_i] = 1 + l32[is_i]
    vlen[is_b] = 2
    s_rows = np.flatnonzero(is_s)
    encoded: list[bytes] = []
    if len(s_rows):
        assert text is not None
        encoded = [str(t).encode() for t in text[s_rows].tolist()]
        slen = np.array([len(e) for e in encoded], dtype=np.uint64)
        vlen[s_rows] = 1 + _varint_len(slen) + slen.astype(np.int64)
    body = 2 + alias_len + ms_len + 2 * int(historical) + 2 * null + has_p * (2 + plen) + vlen
    blen = _varint_len(body.astype(np.uint64))
    record = 1 + blen + body
    start = np.zeros(n, dtype=np.int64)
    np.cumsum(record[:-1], out=start[1:])
    buf = np.zeros(int(record.sum()), dtype=np.uint8)
    buf[start] = 0x12  # Payload.metrics
    _put_varint(buf, start + 1, body.astype(np.uint64), blen)
    pos = start + 1 + blen
    buf[pos] = 0x10  # alias
    _put_varint(buf, pos + 1, alias, alias_len)
    pos = pos + 1 + alias_len
    buf[pos] = 0x18  # timestamp
    _put_varint(buf, pos + 1, ms, ms_len)
    pos = pos + 1 + ms_len
    if historical:
        _put_const(buf, pos, b"\x28\x01")
        pos = pos + 2
    _put_const(buf, pos[null], b"\x38\x01")
    pos = pos + 2 * null
    p = pos[has_p]
    buf[p] = 0x4A  # properties
    buf[p + 1] = plen[has_p]
    cur = pos + 2
    _put_const(buf, cur[hasq], _QUALITY_KEY)
    cur = cur + hasq * len(_QUALITY_KEY)
    _put_const(buf, cur[hasr], _NANOS_KEY)
    cur = cur + hasr * len(_NANOS_KEY)
    for has, length, code, type_byte in ((hasq, lq, qcode, 0x03), (hasr, lr, rest, 0x07)):
        c = cur[has]
        buf[c] = 0x12  # PropertySet.values
        buf[c + 1] = length[has]
        _put_const(buf, c + 2, bytes((0x08, type_byte, 0x18)))  # type (Int32 / UInt32), int_value
        _put_varint(buf, c + 5, code[has], length[has] - 3)
        cur = cur + has * (2 + length)
    pos = pos + has_p * (2 + plen)
    d = pos[is_d]
    buf[d] = 0x69  # double_value
    buf[d[:, None] + _BYTE_OFFSETS] = value[is_d].astype("<f8").view(np.uint8).reshape(-1, 8)
    for rows, code, length, tag in ((is_l, u64, l64, 0x58), (is_i, u32, l32, 0x50)):  # long_value, int_value
        at = pos[rows]
        buf[at] = tag
        _put_varint(buf, at + 1, code[rows], length[rows])
    b = pos[is_b]
    buf[b] = 0x70  # boolean_value
    buf[b + 1] = value[is_b] != 0
    for row, e in zip(s_rows.tolist(), encoded):  # string_value
        at = int(pos[row])
        head = b"\x7a" + _varint(len(e))
        buf[at : at + len(head) + len(e)] = np.frombuffer(head + e, dtype=np.uint8)
    return buf.tobytes()


def _int_of(m: Any, datatype: int) -> int | None:
    kind = m.WhichOneof("value")
    if kind == "int_value":
        v = int(m.int_value)
    elif kind == "long_value":
        v = int(m.long_value)
    else:
        return None
    width = _SIGNED_WIDTH.get(datatype)  # signed types travel as two's complement
    if width is not None:
        v &= (1 << width) - 1
        if v >= 1 << (width - 1):
            v -= 1 << width
    return v


def _value_of(m: Any, datatype: int) -> tuple[float, str | None] | None:
    """(value, text) of a metric, (nan, None) for null, None for a type SampleBatch cannot hold."""
    if m.is_null:
        return math.nan, None
    kind = m.WhichOneof("value")
    if kind == "double_value":
        return m.double_value, None
    if kind == "float_value":
        return float(m.float_value), None
    if kind == "boolean_value":
        return (1.0 if m.boolean_value else 0.0), None
    if kind == "int_value" or kind == "long_value":
        v = _int_of(m, datatype)
        return float(v if v is not None else math.nan), None
    if kind == "string_value":
        return math.nan, m.string_value
    if kind is None:
        return math.nan, None
    return None


def _properties(props: Any) -> tuple[int, int]:
    """(Quality, sub-millisecond ns) from a metric's property set; (GOOD, 0) without those keys."""
    quality, rest = int(Quality.GOOD), 0
    for k, pv in zip(props.keys, props.values):
        if k == QUALITY_PROPERTY:
            code = _int_of(pv, pv.type if pv.HasField("type") else DataType.INT32)
            if code is not None:
                quality = int(quality_of_code(code))
        elif k == NANOS_PROPERTY:
            r = _int_of(pv, DataType.UINT32)
            if r is not None and 0 <= r < _NS_PER_MS:
                rest = r
    return quality, rest


_GOOD_NO_REST = (int(Quality.GOOD), 0)

# -- the DATA wire decoder: every metric of a payload read a field at a time with numpy ------------------------
_WINDOW = np.arange(10)
_SHIFTS = (7 * np.arange(10)).astype(np.uint64)
_PROPERTIES_OF: dict[bytes, tuple[int, int]] = {}  # serialized PropertySet -> (quality, ns rest)
_PAD = 64  # zero bytes after a payload, so fixed-size windows read past no end


def _read_varints(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The varints starting at ``pos`` (``buf`` padded past its end): values (uint64) and byte lengths."""
    w = buf[pos[:, None] + _WINDOW]
    length = np.argmax(w < 0x80, axis=1) + 1
    parts = (w & 0x7F).astype(np.uint64) << _SHIFTS
    parts[_WINDOW[None, :] >= length[:, None]] = 0
    return parts.sum(axis=1, dtype=np.uint64), length


def _metric_spans(raw: bytes) -> tuple[list[int], list[int]] | None:
    """Where each Metric of a Payload starts and ends; None for any field but timestamp, metrics, seq, uuid, body."""
    starts: list[int] = []
    ends: list[int] = []
    pos, n = 0, len(raw)
    while pos < n:
        tag = raw[pos]
        pos += 1
        if tag == 0x12 or tag == 0x22 or tag == 0x2A:  # metrics, uuid, body: length-delimited
            length = raw[pos]
            pos += 1
            if length >= 0x80:
                length &= 0x7F
                shift = 7
                while True:
                    b = raw[pos]
                    pos += 1
                    length |= (b & 0x7F) << shift
                    shift += 7
                    if b < 0x80:
                        break
            if tag == 0x12:
                starts.append(pos)
                ends.append(pos + length)
            pos += length
        elif tag == 0x08 or tag == 0x18:  # timestamp, seq: varints
            while raw[pos] >= 0x80:
                pos += 1
            pos += 1
        else:
            return None
    return starts, ends


@dataclass(slots=True)
class _Columns:
    """The fields of every metric of one payload, as columns (see :func:`_scan_metrics`)."""

    alias: np.ndarray  # uint64
    has_alias: np.ndarray  # bool
    ts: np.ndarray  # uint64 ms
    has_ts: np.ndarray  # bool
    null: np.ndarray  # bool
    kind: (
        np.ndarray
    )  # int64: the value's field number (10 int, 11 long, 12 float, 13 double, 14 bool, 15 string)
    ival: np.ndarray  # uint64: int_value, long_value, boolean_value
    fval: np.ndarray  # float64: float_value, double_value
    span: np.ndarray  # int64 (n, 4): properties start/end, string start/end; -1 when absent


def _scan_metrics(raw: bytes) -> _Columns | None:
    """Every metric's fields at once: each step reads the next field of every metric still unread.

    None (the caller then reads metric by metric through the protobuf runtime) when a metric holds something
    this fast path does not read: a name, a field numbered 16 or more (bytes, dataset, template, extension),
    a group. The payload has already been parsed by the protobuf runtime, so its framing is known good."""
    spans = _metric_spans(raw)
    if spans is None:
        return None
    start = np.array(spans[0], dtype=np.int64)
    end = np.array(spans[1], dtype=np.int64)
    n = len(start)
    buf = np.frombuffer(raw + bytes(_PAD), dtype=np.uint8)
    c = _Columns(
        np.zeros(n, np.uint64),
        np.zeros(n, bool),
        np.zeros(n, np.uint64),
        np.zeros(n, bool),
        np.zeros(n, bool),
        np.zeros(n, np.int64),
        np.zeros(n, np.uint64),
        np.zeros(n, np.float64),
        np.full((n, 4), -1, np.int64),
    )
    cur = start.copy()
    for _ in range(256):  # a metric of more fields than this is no metric Shopfloor reads fast
        act = np.flatnonzero(cur < end)
        if not len(act):
            break
        at = cur[act]
        tag = buf[at].astype(np.int64)
        if (tag >= 0x80).any():
            return None
        fno, wt = tag >> 3, tag & 7
        nxt = np.empty(len(act), dtype=np.int64)
        if ((wt != 0) & (wt != 1) & (wt != 2) & (wt != 5)).any():
            return None
        sel = wt == 0
        if sel.any():
            val, length = _read_varints(buf, at[sel] + 1)
            nxt[sel] = at[sel] + 1 + length
            rows, f = act[sel], fno[sel]
            for number, column, has in ((2, c.alias, c.has_alias), (3, c.ts, c.has_ts)):
                hit = f == number
                column[rows[hit]] = val[hit]
                has[rows[hit]] = True
            hit = f == 7
            c.null[rows[hit]] = val[hit] != 0
            hit = (f == 10) | (f == 11) | (f == 14)
            c.ival[rows[hit]] = val[hit]
            c.kind[rows[hit]] = f[hit]
        sel = wt == 1
        if sel.any():
            nxt[sel] = at[sel] + 9
            hit = fno[sel] == 13
            raw8 = buf[(at[sel][hit] + 1)[:, None] + _WINDOW[:8]]
            rows = act[sel][hit]
            c.fval[rows] = raw8.view("<f8").ravel()
            c.kind[rows] = 13
        sel = wt == 5
        if sel.any():
            nxt[sel] = at[sel] + 5
            hit = fno[sel] == 12
            raw4 = buf[(at[sel][hit] + 1)[:, None] + _WINDOW[:4]]
            rows = act[sel][hit]
            c.fval[rows] = raw4.view("<f4").ravel().astype(np.float64)
            c.kind[rows] = 12
        sel = wt == 2
        if sel.any():
            f = fno[sel]
            if (f == 1).any():
                return None  # names in data: the slow path resolves them
            length, lenlen = _read_varints(buf, at[sel] + 1)
            data = at[sel] + 1 + lenlen
            stop = data + length.astype(np.int64)
            nxt[sel] = stop
            rows = act[sel]
            for number, col in ((9, 0), (15, 2)):
                hit = f == number
                c.span[rows[hit], col] = data[hit]
                c.span[rows[hit], col + 1] = stop[hit]
            hit = f == 15
            c.kind[rows[hit]] = 15
        cur[act] = nxt
    if (cur != end).any():
        return None
    return c


def _properties_of(raw: bytes) -> tuple[int, int]:
    got = _PROPERTIES_OF.get(raw)
    if got is None:
        props = _pb.Payload.PropertySet()
        props.ParseFromString(raw)
        got = _properties(props) if props.keys else _GOOD_NO_REST
        if len(_PROPERTIES_OF) >= 65_536:
            _PROPERTIES_OF.clear()
        _PROPERTIES_OF[raw] = got
    return got


def _starts_with(buf: np.ndarray, at: np.ndarray, const: bytes) -> np.ndarray:
    return np.all(buf[at[:, None] + np.arange(len(const))] == np.frombuffer(const, dtype=np.uint8), axis=1)


def _property_value(
    buf: np.ndarray, at: np.ndarray, type_byte: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A PropertySet.values entry ``{type=<type_byte>, int_value=v}`` at ``at``: (matches, v, end)."""
    length = buf[at + 1].astype(np.int64)
    ok = (buf[at] == 0x12) & (length < 0x80) & _starts_with(buf, at + 2, bytes((0x08, type_byte, 0x18)))
    v, vlen = _read_varints(buf, at + 5)
    return ok & (vlen == length - 3), v, at + 2 + length


def _property_columns(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """(matched, quality, ns rest) of property sets laid out as Shopfloor's encoder writes them: ``Quality``
    and/or ``shopfloor.ns``, keys first. Others (matched False) are read through the protobuf runtime."""
    n = len(start)
    ok = np.zeros(n, dtype=bool)
    code = np.full(n, 192, dtype=np.uint64)
    rest = np.zeros(n, dtype=np.uint64)
    both = _starts_with(buf, start, _QUALITY_KEY + _NANOS_KEY)
    q_only = ~both & _starts_with(buf, start, _QUALITY_KEY)
    n_only = ~both & ~q_only & _starts_with(buf, start, _NANOS_KEY)
    at = start + len(_QUALITY_KEY + _NANOS_KEY)
    m1, q, nxt = _property_value(buf, at, 0x03)
    m1 &= nxt < end
    m2, r, stop = _property_value(buf, np.where(m1, nxt, start), 0x07)  # (start: any safe place to read)
    sel = both & m1 & m2 & (stop == end)
    ok |= sel
    code[sel], rest[sel] = q[sel], r[sel]
    m1, q, stop = _property_value(buf, start + len(_QUALITY_KEY), 0x03)
    sel = q_only & m1 & (stop == end)
    ok |= sel
    code[sel] = q[sel]
    m1, r, stop = _property_value(buf, start + len(_NANOS_KEY), 0x07)
    sel = n_only & m1 & (stop == end)
    ok |= sel
    rest[sel] = r[sel]
    quality = np.full(n, Quality.UNCERTAIN, dtype=np.uint8)
    quality[code == 192] = Quality.GOOD
    quality[code == 0] = Quality.BAD
    ok &= ((code == 192) | (code == 0) | (code == 500)) & (rest < _NS_PER_MS)
    return ok, quality, rest.astype(np.int64)


def _values(c: _Columns, dtype: np.ndarray) -> np.ndarray:
    """The float64 value of every metric (NaN for null, text and none), by its field and datatype."""
    v = np.full(len(c.kind), np.nan)
    sel = (c.kind == 12) | (c.kind == 13)
    v[sel] = c.fval[sel]
    sel = c.kind == 14
    v[sel] = c.ival[sel] != 0
    ints = (c.kind == 10) | (c.kind == 11)
    unsigned = ints.copy()
    for dt, width in _SIGNED_WIDTH.items():  # two's complement of the datatype's width
        sel = ints & (dtype == dt)
        unsigned &= ~sel
        if width == 64:
            v[sel] = c.ival[sel].view(np.int64)
        else:
            x = (c.ival[sel] & np.uint64((1 << width) - 1)).astype(np.int64)
            v[sel] = np.where(x >= 1 << (width - 1), x - (1 << width), x)
    v[unsigned] = c.ival[unsigned]
    v[c.null] = np.nan
    return v
