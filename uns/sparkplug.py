"""Sparkplug B for the unified namespace: topics, the edge node's birth/death/rebirth state machine and the host's
decoder, as pure code that returns the messages to publish and never touches the network.

Mapping from Shopfloor (Eclipse Sparkplug 3.0.0):

* ``spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]``; a host's state is ``spBv1.0/STATE/<host_id>``.
  An id is a non-empty UTF-8 string without ``/``, ``+``, ``#`` or NUL (:class:`InvalidTopic` otherwise).
* group_id is the site (or whatever the edge is configured with), edge_node_id the edge's configured name, one
  Sparkplug device per asset and one metric per signal (metric name = signal name). An asset path holds only
  letters, digits, ``_.-`` and ``/``, so its device id is the path below the site joined with ``:`` (a character
  no asset segment can hold): ``qijiang/copper/hot-rolling/mill-1`` in group ``qijiang`` is device
  ``copper:hot-rolling:mill-1``. An asset of another site than the group is written whole behind a leading ``:``
  (``:other/copper/mill-1`` → ``:other:copper:mill-1``), so every device id maps back to exactly one path.
* Datatypes: float → Double, int → Int64, state → Int32, bool → Boolean, text → String. A value that does not
  fit the born datatype (a fraction in an int signal) widens that metric to Double through a rebirth, so no
  value is ever rounded; a text value on a numeric metric (or a number on a text metric) is refused
  (:class:`EncodeError`) before anything changes, since a series has one kind.
* Quality travels in the metric property ``Quality`` (type Int32) with the three codes the specification allows:
  Good → 192, Uncertain → 500 (the specification's "stale", its only code between good and bad), Bad → 0. Good is
  the default and is left out. Reading, any other OPC DA style code is taken by its quality bits (0xC0 good,
  0x40 uncertain, 0x00 bad). A NaN value (no value) is sent as ``is_null``.
* Time: Sparkplug timestamps are UTC milliseconds. Shopfloor's are nanoseconds, so a sample whose timestamp is
  not a whole millisecond carries the rest (0..999 999 ns) in the property ``shopfloor.ns`` (UInt32) and decodes
  back to the exact nanosecond; other hosts see the millisecond. Timestamps before 1970 cannot be sent.
* Data: one DDATA per device (split past ``max_metrics_per_message``), aliases only, a timestamp per metric, all
  samples of the batch in the order they were produced (several of one metric allowed). A metric or device not
  yet born triggers a full rebirth (NBIRTH + every DBIRTH, same bdSeq) before the data, which is what the
  specification asks: every DBIRTH follows the NBIRTH and precedes any data of the session, and a birth declares
  every metric the session will carry. Aliases are unique per edge node and stay the same over rebirths and
  reconnects for the life of an :class:`EdgeNode` (given the same declaration order, across restarts too).
* Shopfloor events are not sent in Sparkplug (it has no event type); the JSON encoding carries them.
* QoS: the specification puts births and data at QoS 0 and the NDEATH will at QoS 1. ``EdgeConfig.qos = 1``
  publishes births, data and DDEATH at QoS 1 for at-least-once delivery through the broker — a deliberate
  deviation from the specification's letter (hosts are unaffected; a strict compliance kit would flag it).

The host side (:class:`HostDecoder`) tracks each edge node's session (online/dead, bdSeq, last seq, the alias
table of each device), turns DBIRTH/DDATA/NDATA into :class:`~shopfloor.batch.SampleBatch` es, asks for a rebirth
(returns an NCMD to publish) on a sequence gap or data it cannot resolve, quarantines what it cannot read with
a reason, and raises :class:`InvalidTopic` or :class:`MalformedPayload` (both :class:`SparkplugError`, never
anything else) for a message that breaks the format, its state then unchanged.

Speed: DDATA is written and read by numpy a protobuf field at a time for all metrics at once (byte for byte what
the protobuf runtime writes; the tests hold the two against each other). Reading falls back to the runtime, metric
by metric, for layouts the fast path does not take (names instead of aliases, bytes/dataset/template values).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

import numpy as np
from google.protobuf.message import DecodeError

from shopfloor.batch import SampleBatch
from shopfloor.model import (
    ASSET_PATH_RE,
    SIGNAL_NAME_RE,
    AssetPath,
    Quality,
    SeriesKey,
    Signal,
    SignalType,
    now_ns,
)
from uns import sparkplug_b_pb2 as _pb_module

_pb: Any = _pb_module  # generated code: no static types

NAMESPACE = "spBv1.0"
BDSEQ_METRIC = "bdSeq"
REBIRTH_METRIC = "Node Control/Rebirth"
QUALITY_PROPERTY = "Quality"
NANOS_PROPERTY = "shopfloor.ns"
DEVICE_SEPARATOR = ":"
SEQ_MODULUS = 256

_MASK32 = (1 << 32) - 1
_MASK64 = (1 << 64) - 1
_NS_PER_MS = 1_000_000


class DataType(IntEnum):
    """Sparkplug B metric and property datatypes (the numbers of ``uns/sparkplug_b.proto``)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19
    PROPERTYSET = 20
    PROPERTYSETLIST = 21
    INT8_ARRAY = 22
    INT16_ARRAY = 23
    INT32_ARRAY = 24
    INT64_ARRAY = 25
    UINT8_ARRAY = 26
    UINT16_ARRAY = 27
    UINT32_ARRAY = 28
    UINT64_ARRAY = 29
    FLOAT_ARRAY = 30
    DOUBLE_ARRAY = 31
    BOOLEAN_ARRAY = 32
    STRING_ARRAY = 33
    DATETIME_ARRAY = 34


DATATYPE_OF_SIGNAL: dict[SignalType, DataType] = {
    SignalType.FLOAT: DataType.DOUBLE,
    SignalType.INT: DataType.INT64,
    SignalType.STATE: DataType.INT32,
    SignalType.BOOL: DataType.BOOLEAN,
    SignalType.TEXT: DataType.STRING,
}

_SIGNED_WIDTH: dict[int, int] = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_SCALAR_TYPES = frozenset(range(DataType.INT8, DataType.UUID + 1))  # what a SampleBatch row can hold
_INT_RANGE = {DataType.INT64: 2.0**63, DataType.INT32: 2.0**31}

# Quality <-> the "Quality" property's codes (Sparkplug 3.0: 0 bad, 192 good, 500 stale).
QUALITY_CODE: dict[Quality, int] = {Quality.GOOD: 192, Quality.UNCERTAIN: 500, Quality.BAD: 0}
_CODE_OF_QUALITY = np.array([192, 500, 0], dtype=np.int64)  # indexed by Quality value


def quality_of_code(code: int) -> Quality:
    """The Shopfloor quality of a Sparkplug ``Quality`` property value."""
    if code == 192:
        return Quality.GOOD
    if code == 500:
        return Quality.UNCERTAIN
    if 0 <= code < 256:  # OPC DA: the two high bits of the low byte
        bits = code & 0xC0
        return Quality.GOOD if bits == 0xC0 else Quality.UNCERTAIN if bits == 0x40 else Quality.BAD
    return Quality.UNCERTAIN


# -- errors --------------------------------------------------------------------------------------------------
class SparkplugError(ValueError):
    """Something Sparkplug cannot carry or does not allow; ``reason`` is a short code to count by."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidTopic(SparkplugError):
    """A topic outside the Sparkplug B namespace, or an id that cannot be a topic level."""


class MalformedPayload(SparkplugError):
    """A payload that is not a valid Sparkplug B payload for its message type."""


class EncodeError(SparkplugError):
    """A batch that cannot be sent as Sparkplug (nothing was changed or sent)."""


class SessionError(RuntimeError):
    """The edge node was asked for something out of order (a birth before the will, data before a birth)."""


# -- topics --------------------------------------------------------------------------------------------------
class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"
    STATE = "STATE"


NODE_MESSAGES = frozenset({MessageType.NBIRTH, MessageType.NDEATH, MessageType.NDATA, MessageType.NCMD})
DEVICE_MESSAGES = frozenset({MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD})


def check_id(value: object, what: str = "id") -> str:
    """``value`` if it can be a Sparkplug id (group, edge node, device, host); InvalidTopic otherwise."""
    if not isinstance(value, str) or not value:
        raise InvalidTopic("bad-id", f"{what} must be a non-empty string, not {value!r}")
    bad = sorted({c for c in value if c in "/+#\x00"})
    if bad:
        raise InvalidTopic("bad-id", f"{what} {value!r} holds {', '.join(map(repr, bad))}")
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """One Sparkplug B topic. ``str(topic)`` builds it, :meth:`parse` reads it back."""

    message_type: MessageType
    group_id: str = ""
    edge_node_id: str = ""
    device_id: str | None = None
    host_id: str = ""  # STATE only

    def __post_init__(self) -> None:
        mt = MessageType(self.message_type)
        if mt is MessageType.STATE:
            check_id(self.host_id, "host id")
            if self.group_id or self.edge_node_id or self.device_id is not None:
                raise InvalidTopic("bad-topic", "a STATE topic names only the host id")
            return
        check_id(self.group_id, "group id")
        check_id(self.edge_node_id, "edge node id")
        if self.host_id:
            raise InvalidTopic("bad-topic", f"{mt} has no host id")
        if mt in DEVICE_MESSAGES:
            check_id(self.device_id, "device id")
        elif self.device_id is not None:
            raise InvalidTopic("bad-topic", f"{mt} is a node message: it has no device id")

    @classmethod
    def node(cls, message_type: MessageType, group_id: str, edge_node_id: str) -> Topic:
        return cls(message_type, group_id, edge_node_id)

    @classmethod
    def device(cls, message_type: MessageType, group_id: str, edge_node_id: str, device_id: str) -> Topic:
        return cls(message_type, group_id, edge_node_id, device_id)

    @classmethod
    def state(cls, host_id: str) -> Topic:
        return cls(MessageType.STATE, host_id=host_id)

    def __str__(self) -> str:
        if self.message_type is MessageType.STATE:
            return f"{NAMESPACE}/STATE/{self.host_id}"
        head = f"{NAMESPACE}/{self.group_id}/{self.message_type}/{self.edge_node_id}"
        return head if self.device_id is None else f"{head}/{self.device_id}"

    @classmethod
    def parse(cls, topic: str) -> Topic:
        """The topic's parts; InvalidTopic unless it is a Sparkplug B topic of a known message type."""
        if not isinstance(topic, str):
            raise InvalidTopic("bad-topic", f"a topic is a string, not {type(topic).__name__}")
        parts = topic.split("/")
        if parts[0] != NAMESPACE:
            raise InvalidTopic("bad-topic", f"{topic!r} is not under {NAMESPACE}/")
        if len(parts) == 3 and parts[1] == "STATE":
            return cls.state(parts[2])
        if len(parts) not in (4, 5):
            raise InvalidTopic("bad-topic", f"{topic!r} has {len(parts)} levels, not 4 or 5")
        try:
            mt = MessageType(parts[2])
        except ValueError:
            raise InvalidTopic("bad-topic", f"{topic!r}: unknown message type {parts[2]!r}") from None
        if mt is MessageType.STATE:
            raise InvalidTopic("bad-topic", f"{topic!r}: STATE is spBv1.0/STATE/<host_id>")
        if (mt in DEVICE_MESSAGES) != (len(parts) == 5):
            kind = "device" if mt in DEVICE_MESSAGES else "node"
            raise InvalidTopic("bad-topic", f"{topic!r}: {mt} is a {kind} message")
        return cls(mt, parts[1], parts[3], parts[4] if len(parts) == 5 else None)


# -- assets <-> devices --------------------------------------------------------------------------------------
def device_id_for(asset: str, group_id: str) -> str:
    """The device id of an asset within a group (see the module docstring); EncodeError for a bad path."""
    if not isinstance(asset, str) or not ASSET_PATH_RE.match(asset):
        raise EncodeError("bad-asset", f"{asset!r} is not an asset path")
    site, rest = asset.split("/", 1)
    if site == group_id:
        return rest.replace("/", DEVICE_SEPARATOR)
    return DEVICE_SEPARATOR + asset.replace("/", DEVICE_SEPARATOR)


def asset_for(group_id: str, device_id: str) -> AssetPath:
    """The asset path a device id of a group names (inverse of :func:`device_id_for`); SparkplugError if none."""
    if device_id.startswith(DEVICE_SEPARATOR):
        path = device_id[1:].replace(DEVICE_SEPARATOR, "/")
    else:
        path = f"{group_id}/{device_id.replace(DEVICE_SEPARATOR, '/')}"
    try:
        return AssetPath(path)
    except ValueError:
        raise SparkplugError(
            "bad-device-id", f"device {device_id!r} of group {group_id!r} names no asset"
        ) from None


# -- messages ------------------------------------------------------------------------------------------------
class SparkplugMessage(NamedTuple):
    """One MQTT publication: topic, payload bytes, QoS and the retain flag."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


def parse_payload(payload: bytes | bytearray | memoryview) -> Any:
    """The decoded protobuf ``Payload``; MalformedPayload if the bytes are not one."""
    msg = _pb.Payload()
    try:
        msg.ParseFromString(bytes(payload))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise MalformedPayload("not-protobuf", f"not a Sparkplug B payload ({exc})") from None
    return msg


def rebirth_request(group_id: str, edge_node_id: str, ts_ms: int | None = None) -> SparkplugMessage:
    """The NCMD a host publishes to make an edge node rebirth (no seq, QoS 0, not retained)."""
    t = now_ns() // _NS_PER_MS if ts_ms is None else ts_ms
    p = _pb.Payload(timestamp=t)
    p.metrics.add(name=REBIRTH_METRIC, timestamp=t, datatype=DataType.BOOLEAN, boolean_value=True)
    return SparkplugMessage(
        str(Topic.node(MessageType.NCMD, group_id, edge_node_id)), p.SerializeToString(), 0, False
    )


class HostState(NamedTuple):
    online: bool
    timestamp_ms: int


def host_state(host_id: str, online: bool, timestamp_ms: int) -> SparkplugMessage:
    """A host application's STATE birth (online) or death/will (offline): JSON, QoS 1, retained."""
    body = json.dumps({"online": bool(online), "timestamp": int(timestamp_ms)}, separators=(",", ":"))
    return SparkplugMessage(str(Topic.state(host_id)), body.encode(), 1, True)


def parse_state(payload: bytes) -> HostState:
    """A STATE payload's online flag and timestamp; MalformedPayload unless it is ``{"online", "timestamp"}``."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("bad-state", "a STATE payload is JSON") from None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("online"), bool)
        or not isinstance(obj.get("timestamp"), int)
        or isinstance(obj.get("timestamp"), bool)
    ):
        raise MalformedPayload("bad-state", 'a STATE payload is {"online": bool, "timestamp": int}')
    return HostState(obj["online"], obj["timestamp"])


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


# -- the edge node -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Who the edge node is in Sparkplug and how it publishes."""

    group_id: str
    edge_node_id: str
    qos: int = 0  # births, data, DDEATH; 0 is the specification's, 1 trades its letter for at-least-once
    max_metrics_per_message: int = 10_000

    def __post_init__(self) -> None:
        check_id(self.group_id, "group id")
        check_id(self.edge_node_id, "edge node id")
        if self.qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, not {self.qos!r}")
        if self.max_metrics_per_message < 1:
            raise ValueError("max_metrics_per_message must be at least 1")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device to declare at birth: an asset and the signals it publishes (more may appear in data)."""

    asset: str
    signals: tuple[Signal, ...] = ()


@dataclass(slots=True)
class _EdgeMetric:
    alias: int
    key: SeriesKey
    datatype: DataType
    value: float = math.nan  # the last value sent (births carry it)
    text: str | None = None
    ts_ns: int = -1  # -1: no value yet (a birth sends it as null)
    quality: int = 0


@dataclass(slots=True)
class _EdgeDevice:
    asset: str
    device_id: str
    metrics: dict[str, _EdgeMetric] = field(default_factory=dict)  # by signal, in declaration order


class EdgeNode:
    """The Sparkplug state of one edge node: bdSeq, seq, devices and aliases. Pure: it returns messages.

    Use: at each MQTT CONNECT set :meth:`will` as the will, then publish :meth:`birth`; publish what
    :meth:`data` returns for every batch and what :meth:`on_command` returns for every NCMD; :meth:`death`
    before a clean disconnect; :meth:`device_death` when an asset goes away.
    """

    def __init__(self, config: EdgeConfig, *, bd_seq: int = 0, clock: Callable[[], int] = now_ns) -> None:
        if not 0 <= bd_seq < SEQ_MODULUS:
            raise ValueError("bd_seq is 0..255")
        self.config = config
        self._clock = clock
        self._next_bd_seq = bd_seq
        self._bd_seq: int | None = None  # the session's, set by will()
        self._seq = 0
        self._born = False
        self._devices: dict[str, _EdgeDevice] = {}
        self._metrics: dict[SeriesKey, _EdgeMetric] = {}
        self._aliases: dict[SeriesKey, int] = {}  # kept when a device dies, so it comes back with its aliases
        self._gone: dict[str, _EdgeDevice] = {}  # devices that died, with their metrics, until they come back
        self._next_alias = 1

    # -- state, for the publisher and tests
    @property
    def bd_seq(self) -> int | None:
        """The bdSeq of the current session (None before the first :meth:`will`)."""
        return self._bd_seq

    @property
    def next_bd_seq(self) -> int:
        """The bdSeq the next :meth:`will` uses (persist it to keep counting across restarts)."""
        return self._next_bd_seq

    @property
    def born(self) -> bool:
        return self._born

    @property
    def aliases(self) -> dict[SeriesKey, int]:
        return dict(self._aliases)

    def devices(self) -> list[str]:
        """The assets currently born, in declaration order."""
        return list(self._devices)

    def restore(self, aliases: Iterable[tuple[SeriesKey, int]]) -> None:
        """Take back the aliases an earlier process of this edge gave (its state file), so a series keeps its
        alias for the life of the edge node, whatever order it is declared in later. Before the first birth.

        ValueError for an alias used twice or one outside 1..2^63."""
        if self._devices:
            raise SessionError("restore() goes before the first birth")
        seen: dict[int, SeriesKey] = {}
        for key, alias in aliases:
            alias = int(alias)
            if not 1 <= alias < 2**63 or seen.setdefault(alias, key) != key:
                raise ValueError(f"alias {alias} of {key} is out of range or taken twice")
            self._aliases[key] = alias
        self._next_alias = max([self._next_alias - 1, *seen]) + 1

    # -- topics
    def _node_topic(self, mt: MessageType) -> str:
        return f"{NAMESPACE}/{self.config.group_id}/{mt}/{self.config.edge_node_id}"

    def _device_topic(self, mt: MessageType, device_id: str) -> str:
        return f"{self._node_topic(mt)}/{device_id}"

    def _now_ms(self) -> int:
        return self._clock() // _NS_PER_MS

    def _next_seq(self) -> int:
        s = self._seq
        self._seq = (s + 1) % SEQ_MODULUS
        return s

    # -- session
    def will(self) -> SparkplugMessage:
        """The NDEATH to register as the will of the next CONNECT; it opens a session with the next bdSeq.

        Call once per CONNECT: bdSeq counts 0..255 and wraps, and the NBIRTH of this session carries it.
        """
        self._bd_seq = self._next_bd_seq
        self._next_bd_seq = (self._next_bd_seq + 1) % SEQ_MODULUS
        self._born = False
        return self._ndeath()

    def death(self) -> SparkplugMessage:
        """The NDEATH of the current session, to publish before disconnecting on purpose."""
        if self._bd_seq is None:
            raise SessionError("no session: call will() at connect first")
        self._born = False
        return self._ndeath()

    def _ndeath(self) -> SparkplugMessage:
        t = self._now_ms()
        p = _pb.Payload(timestamp=t)
        p.metrics.add(name=BDSEQ_METRIC, timestamp=t, datatype=DataType.INT64, long_value=self._bd_seq)
        return SparkplugMessage(self._node_topic(MessageType.NDEATH), p.SerializeToString(), 1, False)

    # -- declarations
    def _metric(self, device: _EdgeDevice, signal: str, datatype: DataType) -> _EdgeMetric:
        key = SeriesKey(device.asset, signal)
        alias = self._aliases.get(key)
        if alias is None:
            alias = self._aliases[key] = self._next_alias
            self._next_alias += 1
        m = _EdgeMetric(alias, key, datatype)
        device.metrics[signal] = m
        self._metrics[key] = m
        return m

    def _device(self, asset: str) -> _EdgeDevice:
        dev = self._devices.get(asset)
        if dev is None:
            dev = self._gone.pop(asset, None)
            if dev is None:
                dev = _EdgeDevice(asset, device_id_for(asset, self.config.group_id))
            else:  # a device that died comes back with its metrics (same aliases, datatypes, last values)
                for m in dev.metrics.values():
                    self._metrics[m.key] = m
            self._devices[asset] = dev
        return dev

    def _declare(self, devices: Iterable[DeviceSpec]) -> None:
        """Add devices and signals to what this birth declares (known ones keep their datatype)."""
        for spec in devices:
            dev = self._device(spec.asset)
            for sig in spec.signals:
                if sig.name not in dev.metrics:
                    self._metric(dev, sig.name, DATATYPE_OF_SIGNAL[sig.type])

    # -- births
    def birth(self, devices: Iterable[DeviceSpec] = ()) -> list[SparkplugMessage]:
        """NBIRTH (seq 0, bdSeq, ``Node Control/Rebirth`` = false) then a DBIRTH per device (seq 1, 2, ...).

        ``devices`` are added (known signals keep their datatype) to what the node knows; every device known is born, each metric with its
        name, alias, datatype and last value sent (null before the first). Also what a rebirth publishes: the
        bdSeq stays the session's.
        """
        if self._bd_seq is None:
            raise SessionError("no session: register will() at connect before the birth")
        self._declare(devices)
        self._seq = 0
        t = self._now_ms()
        p = _pb.Payload(timestamp=t, seq=self._next_seq())
        p.metrics.add(name=BDSEQ_METRIC, timestamp=t, datatype=DataType.INT64, long_value=self._bd_seq)
        p.metrics.add(name=REBIRTH_METRIC, timestamp=t, datatype=DataType.BOOLEAN, boolean_value=False)
        qos = self.config.qos
        out = [SparkplugMessage(self._node_topic(MessageType.NBIRTH), p.SerializeToString(), qos, False)]
        for dev in self._devices.values():
            out.append(self._dbirth(dev, t))
        self._born = True
        return out

    def _dbirth(self, dev: _EdgeDevice, t: int) -> SparkplugMessage:
        p = _pb.Payload(timestamp=t, seq=self._next_seq())
        for name, m in dev.metrics.items():
            pm = p.metrics.add(name=name, alias=m.alias, datatype=m.datatype)
            if m.ts_ns < 0:
                pm.timestamp = t
                pm.is_null = True
                continue
            pm.timestamp = m.ts_ns // _NS_PER_MS
            if m.text is not None:
                pm.string_value = m.text
            elif math.isnan(m.value):
                pm.is_null = True
            elif m.datatype is DataType.DOUBLE:
                pm.double_value = m.value
            elif m.datatype is DataType.INT64:
                pm.long_value = int(m.value) & _MASK64
            elif m.datatype is DataType.INT32:
                pm.int_value = int(m.value) & _MASK32
            elif m.datatype is DataType.BOOLEAN:
                pm.boolean_value = m.value != 0
            else:  # a String metric whose last row had no text: no value
                pm.is_null = True
            _set_properties(pm, int(_CODE_OF_QUALITY[min(m.quality, 2)]), m.ts_ns % _NS_PER_MS)
        return SparkplugMessage(
            self._device_topic(MessageType.DBIRTH, dev.device_id),
            p.SerializeToString(),
            self.config.qos,
            False,
        )

    # -- data
    def data(self, batch: SampleBatch, *, historical: bool = False) -> list[SparkplugMessage]:
        """The DDATA messages of a batch (after a full rebirth when it holds a metric not yet born).

        ``historical`` flags every metric ``is_historical`` (a replay from the spool: hosts store it without
        updating live values). EncodeError, with nothing changed, for a batch Sparkplug cannot carry.
        """
        if not self._born:
            raise SessionError("data before birth: publish birth() first")
        n = len(batch)
        if n == 0:
            return []
        series = batch.series.astype(np.intp, copy=False)
        used = np.flatnonzero(np.bincount(series, minlength=len(batch.keys)))
        text_rows = batch.text_rows()
        nan = np.isnan(batch.value)
        if (batch.ts < 0).any():
            raise EncodeError("bad-timestamp", "Sparkplug cannot carry a timestamp before 1970")

        # Which kind each used key's rows are; a series carries text or numbers, never both.
        n_text = np.bincount(series[text_rows], minlength=len(batch.keys))
        n_num = np.bincount(series[~text_rows & ~nan], minlength=len(batch.keys))
        plan: dict[int, DataType] = {}  # key index -> datatype it must have
        rebirth = False
        for k in used.tolist():
            key = batch.keys[k]
            if not isinstance(key.asset, str) or not ASSET_PATH_RE.match(key.asset):
                raise EncodeError("bad-asset", f"{key.asset!r} is not an asset path")
            m = self._metrics.get(key)
            if key.asset in self._gone:  # it died: it comes back by a rebirth
                m = self._gone[key.asset].metrics.get(key.signal)
                rebirth = True
            if n_text[k] and n_num[k]:
                raise EncodeError("mixed-series", f"{key.asset} {key.signal} has text and numeric rows")
            if m is None:
                plan[k] = DataType.STRING if n_text[k] else DataType.DOUBLE
                rebirth = True
                continue
            is_text_metric = m.datatype is DataType.STRING
            if (n_text[k] and not is_text_metric) or (n_num[k] and is_text_metric):
                raise EncodeError(
                    "type-mismatch",
                    f"{key.asset} {key.signal} is a {m.datatype.name} metric: got the other kind",
                )
            plan[k] = m.datatype
        # Integers and booleans that do not fit widen to Double (by a rebirth) rather than be rounded.
        key_dt = np.zeros(len(batch.keys), dtype=np.int64)
        for k, dt in plan.items():
            key_dt[k] = dt
        row_dt = key_dt[series]
        v = batch.value
        finite = np.isfinite(v)
        misfit = np.zeros(n, dtype=bool)
        for dt in (DataType.INT64, DataType.INT32):
            rows = row_dt == dt
            if rows.any():
                lim = _INT_RANGE[dt]
                with np.errstate(invalid="ignore"):
                    ok = finite & (np.trunc(v) == v) & (v >= -lim) & (v < lim)
                misfit |= rows & ~nan & ~ok
        rows = row_dt == DataType.BOOLEAN
        if rows.any():
            misfit |= rows & ~nan & (v != 0) & (v != 1)
        widen = np.flatnonzero(np.bincount(series[misfit], minlength=len(batch.keys))).tolist()

        # Commit: declare new metrics, widen, rebirth if the metric set or a datatype changed.
        for k in widen:
            plan[k] = DataType.DOUBLE
            key_dt[k] = DataType.DOUBLE
            rebirth = True
        for k, dt in plan.items():
            key = batch.keys[k]
            dev = self._device(key.asset)
            m = self._metrics.get(key)
            if m is None:
                self._metric(dev, key.signal, dt)
            else:
                m.datatype = dt
        out = self.birth() if rebirth else []

        row_dt = key_dt[series]
        metrics = [self._metrics[batch.keys[k]] if k in plan else None for k in range(len(batch.keys))]
        key_alias = np.array([0 if m is None else m.alias for m in metrics], dtype=np.uint64)
        dev_index = {asset: i for i, asset in enumerate(self._devices)}
        key_dev = np.array([-1 if m is None else dev_index[m.key.asset] for m in metrics], dtype=np.int64)
        row_dev = key_dev[series]
        order = np.argsort(row_dev, kind="stable")  # group by device, keeping each device's row order
        ms = (batch.ts // _NS_PER_MS).astype(np.uint64)
        rest = (batch.ts % _NS_PER_MS).astype(np.uint64)
        qcode = _CODE_OF_QUALITY[np.minimum(batch.quality, 2)].astype(np.uint64)
        null = nan & ~text_rows
        ival = np.where(finite & (np.abs(v) < 2.0**63), v, 0.0).astype(np.int64)  # exact where integral
        u64 = ival.view(np.uint64)
        u32 = (ival & _MASK32).astype(np.uint64)
        alias = key_alias[series]
        text = batch.text
        devices = list(self._devices.values())
        bounds = np.flatnonzero(np.diff(row_dev[order])) + 1
        head = b"\x08" + _varint(self._now_ms())  # Payload.timestamp (field 1); metrics (2), then seq (3)
        limit = self.config.max_metrics_per_message
        for chunk in np.split(order, bounds):
            topic = self._device_topic(MessageType.DDATA, devices[int(row_dev[chunk[0]])].device_id)
            for start in range(0, len(chunk), limit):
                r = chunk[start : start + limit]
                body = _encode_metrics(
                    alias[r],
                    ms[r],
                    rest[r],
                    qcode[r],
                    null[r],
                    row_dt[r],
                    v[r],
                    u64[r],
                    u32[r],
                    None if text is None else text[r],
                    historical,
                )
                wire = head + body + b"\x18" + _varint(self._next_seq())
                out.append(SparkplugMessage(topic, wire, self.config.qos, False))
        self._remember(batch, series, metrics)
        return out

    def _remember(self, batch: SampleBatch, series: np.ndarray, metrics: list[_EdgeMetric | None]) -> None:
        """Keep each series' last row: the next birth carries it as the current value."""
        n = len(series)
        uniq, first_from_end = np.unique(series[::-1], return_index=True)
        text = batch.text
        for k, r in zip(uniq.tolist(), (n - 1 - first_from_end).tolist()):
            m = metrics[k]
            if m is None:
                continue
            m.value = float(batch.value[r])
            m.text = None if text is None else text[r]
            m.ts_ns = int(batch.ts[r])
            m.quality = int(batch.quality[r])

    # -- device death and commands
    def device_death(self, asset: str) -> list[SparkplugMessage]:
        """A DDEATH for a device that went away ([] if it is not born); it comes back (same aliases) by rebirth."""
        dev = self._devices.get(asset)
        if dev is None or not self._born:
            return []
        del self._devices[asset]
        self._gone[asset] = dev
        for m in dev.metrics.values():
            self._metrics.pop(m.key, None)
        p = _pb.Payload(timestamp=self._now_ms(), seq=self._next_seq())
        return [
            SparkplugMessage(
                self._device_topic(MessageType.DDEATH, dev.device_id),
                p.SerializeToString(),
                self.config.qos,
                False,
            )
        ]

    def on_command(self, topic: str, payload: bytes) -> list[SparkplugMessage]:
        """The reply to an NCMD: a full rebirth for ``Node Control/Rebirth`` = true, else nothing.

        DCMDs (writes to devices) are not accepted: Shopfloor's edge is read-only. InvalidTopic or
        MalformedPayload for a message that is not a command.
        """
        t = Topic.parse(topic)
        if (
            t.message_type is not MessageType.NCMD
            or t.group_id != self.config.group_id
            or t.edge_node_id != self.config.edge_node_id
        ):
            return []
        p = parse_payload(payload)
        for m in p.metrics:
            if m.name == REBIRTH_METRIC and m.WhichOneof("value") == "boolean_value" and m.boolean_value:
                return self.birth() if self._bd_seq is not None else []
        return []


# -- the host side -------------------------------------------------------------------------------------------
Resolver = Callable[[str, str, str | None, str], SeriesKey | None]
"""(group_id, edge_node_id, device_id or None for node metrics, metric name) -> the series, or None to skip."""


def default_resolver(
    group_id: str, edge_node_id: str, device_id: str | None, metric: str
) -> SeriesKey | None:
    """Shopfloor's own mapping: the device id names the asset, the metric the signal; node metrics are skipped."""
    if device_id is None or not SIGNAL_NAME_RE.match(metric):
        return None
    try:
        return SeriesKey(asset_for(group_id, device_id), metric)
    except SparkplugError:
        return None


class NoticeKind(StrEnum):
    NODE_BORN = "node-born"
    NODE_DEAD = "node-dead"
    STALE_NDEATH = "stale-ndeath"  # an NDEATH of an older session: ignored
    DEVICE_BORN = "device-born"
    DEVICE_DEAD = "device-dead"
    SEQ_GAP = "seq-gap"
    REBIRTH_REQUESTED = "rebirth-requested"
    HOST_STATE = "host-state"


@dataclass(frozen=True, slots=True)
class Notice:
    """A change of an edge node's or device's state worth reporting (births, deaths, gaps)."""

    kind: NoticeKind
    group_id: str
    edge_node_id: str
    device_id: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A message the decoder could not use, kept whole with the reason (a short code to count by)."""

    topic: str
    payload: bytes
    reason: str
    detail: str = ""


@dataclass(slots=True)
class HostResult:
    """What one message gave: samples to store, messages to publish (rebirth requests), quarantine, notices."""

    samples: SampleBatch = field(default_factory=SampleBatch.empty)
    publish: list[SparkplugMessage] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    unmapped: int = 0  # metrics the resolver maps to no series
    unsupported: int = 0  # metrics of a type with no SampleBatch form (DataSet, Template, Bytes, arrays)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One edge node as the host sees it: for "which edge is stale"."""

    group_id: str
    edge_node_id: str
    online: bool
    bd_seq: int | None
    births: int
    deaths: int
    seq_gaps: int
    rebirths_requested: int
    devices_online: tuple[str, ...]
    last_message_ns: int | None  # the decoder's clock when its last message came
    last_sample_ns: int | None  # the newest sample timestamp it delivered


@dataclass(slots=True)
class _HostMetric:
    name: str
    datatype: int
    index: int  # into the device's keys; _UNMAPPED or _UNSUPPORTED for none


@dataclass(slots=True)
class _HostDevice:
    device_id: str | None  # None: the node's own metrics
    keys: tuple[SeriesKey, ...] = ()
    by_alias: dict[int, _HostMetric] = field(default_factory=dict)
    by_name: dict[str, _HostMetric] = field(default_factory=dict)
    online: bool = False
    lut: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # sorted aliases, their index, datatype

    def alias_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.lut is None:
            aliases = np.array(sorted(self.by_alias), dtype=np.uint64)
            hms = [self.by_alias[int(a)] for a in aliases.tolist()]
            self.lut = (
                aliases,
                np.array([hm.index for hm in hms], dtype=np.int64),
                np.array([hm.datatype for hm in hms], dtype=np.int64),
            )
        return self.lut


@dataclass(slots=True)
class _HostNode:
    group_id: str
    edge_node_id: str
    online: bool = False
    bd_seq: int | None = None
    seq: int | None = None
    node: _HostDevice = field(default_factory=lambda: _HostDevice(None))
    devices: dict[str, _HostDevice] = field(default_factory=dict)
    rebirth_requested_ns: int | None = None
    births: int = 0
    deaths: int = 0
    seq_gaps: int = 0
    rebirths_requested: int = 0
    last_message_ns: int | None = None
    last_sample_ns: int | None = None


_UNMAPPED = -1  # the resolver maps the metric to no series
_UNSUPPORTED = -2  # a datatype with no SampleBatch form (DataSet, Template, Bytes, File, arrays)


class _Unknown(Exception):
    """A data metric the birth did not declare (internal: the message goes to quarantine)."""


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


class HostDecoder:
    """The central ingest's view of every edge node: feed it each (topic, payload) it receives.

    Pure and single-threaded (one per ingest process); ``clock`` dates messages and spaces rebirth requests
    (at most one per node per ``rebirth_retry_ns`` until its NBIRTH arrives). Births' metric values are
    samples too (a third party's first values come in its DBIRTH; Shopfloor's edge repeats its last values,
    which the historian's idempotent write stores once).
    """

    def __init__(
        self,
        *,
        resolve: Resolver = default_resolver,
        rebirth_retry_ns: int = 10_000_000_000,
        clock: Callable[[], int] = now_ns,
        vectorized: bool = True,
    ) -> None:
        self._vectorized = vectorized  # False: every metric through the protobuf runtime (the reference)
        self._resolve = resolve
        self._retry = rebirth_retry_ns
        self._clock = clock
        self._nodes: dict[tuple[str, str], _HostNode] = {}

    # -- reporting
    def nodes(self) -> list[NodeStatus]:
        return [
            NodeStatus(
                n.group_id,
                n.edge_node_id,
                n.online,
                n.bd_seq,
                n.births,
                n.deaths,
                n.seq_gaps,
                n.rebirths_requested,
                tuple(d for d, dev in n.devices.items() if dev.online and n.online),
                n.last_message_ns,
                n.last_sample_ns,
            )
            for n in self._nodes.values()
        ]

    def node(self, group_id: str, edge_node_id: str) -> NodeStatus | None:
        for s in self.nodes():
            if (s.group_id, s.edge_node_id) == (group_id, edge_node_id):
                return s
        return None

    # -- feeding
    def feed(self, topic: str, payload: bytes) -> HostResult:
        """Take one message. InvalidTopic / MalformedPayload (both SparkplugError) for one that breaks the
        format; the decoder's state is then unchanged."""
        t = Topic.parse(topic)
        result = HostResult()
        mt = t.message_type
        if mt is MessageType.STATE:
            state = parse_state(payload)
            result.notices.append(
                Notice(NoticeKind.HOST_STATE, "", "", None, f"{t.host_id} online={state.online}")
            )
            return result
        if mt in (MessageType.NCMD, MessageType.DCMD):
            return result  # commands to edges (ours among them): nothing to ingest
        p = parse_payload(payload)
        if mt is not MessageType.NDEATH:
            if not p.HasField("seq"):
                raise MalformedPayload("missing-seq", f"{mt} without a sequence number")
            if p.seq >= SEQ_MODULUS:
                raise MalformedPayload("bad-seq", f"{mt} sequence number {p.seq} is outside 0..255")
            if not p.HasField("timestamp"):
                raise MalformedPayload("missing-timestamp", f"{mt} without a payload timestamp")
        key = (t.group_id, t.edge_node_id)
        node = self._nodes.get(key)
        if mt is MessageType.NBIRTH:
            self._nbirth(t, p, payload, result, node)
            return result
        if node is None:
            node = self._nodes[key] = _HostNode(t.group_id, t.edge_node_id)
        node.last_message_ns = self._clock()
        if mt is MessageType.NDEATH:
            self._ndeath(t, p, node, result)
            return result
        if not node.online:
            why = "node-not-born" if node.bd_seq is None else "node-dead"
            result.quarantined.append(
                Quarantined(topic, bytes(payload), why, f"{mt} while the node is offline")
            )
            self._request_rebirth(node, result, why)
            return result
        dev = None
        if mt is MessageType.DBIRTH:
            assert t.device_id is not None
            dev = self._birth_table(t, p, t.device_id, node)  # validates before anything changes
        self._check_seq(node, int(p.seq), result)
        if dev is not None:
            assert t.device_id is not None
            node.devices[t.device_id] = dev
            dev.online = True
            result.notices.append(Notice(NoticeKind.DEVICE_BORN, t.group_id, t.edge_node_id, t.device_id))
            self._samples(t, p, payload, dev, node, result, birth=True)
        elif mt is MessageType.DDEATH:
            assert t.device_id is not None
            known = node.devices.get(t.device_id)
            if known is not None:
                known.online = False
            result.notices.append(Notice(NoticeKind.DEVICE_DEAD, t.group_id, t.edge_node_id, t.device_id))
        elif mt is MessageType.NDATA:
            self._samples(t, p, payload, node.node, node, result, birth=False)
        else:  # DDATA
            assert t.device_id is not None
            known = node.devices.get(t.device_id)
            if known is None or not known.online:
                result.quarantined.append(
                    Quarantined(
                        topic, bytes(payload), "device-not-born", f"DDATA before DBIRTH of {t.device_id}"
                    )
                )
                self._request_rebirth(node, result, "device-not-born")
            else:
                self._samples(t, p, payload, known, node, result, birth=False)
        return result

    # -- births and deaths
    def _nbirth(self, t: Topic, p: Any, payload: bytes, result: HostResult, node: _HostNode | None) -> None:
        bd = None
        for m in p.metrics:
            if m.name == BDSEQ_METRIC:
                bd = _int_of(m, DataType.INT64)
        if bd is None:
            raise MalformedPayload("missing-bdseq", "NBIRTH without a bdSeq metric")
        table = self._birth_table(t, p, None, None)
        if node is None:
            node = self._nodes[(t.group_id, t.edge_node_id)] = _HostNode(t.group_id, t.edge_node_id)
        node.last_message_ns = self._clock()
        node.online = True
        node.bd_seq = bd
        node.seq = int(p.seq)
        node.node = table
        node.devices = {}
        node.rebirth_requested_ns = None
        node.births += 1
        result.notices.append(Notice(NoticeKind.NODE_BORN, t.group_id, t.edge_node_id, None, f"bdSeq={bd}"))
        self._samples(t, p, payload, table, node, result, birth=True)

    def _ndeath(self, t: Topic, p: Any, node: _HostNode, result: HostResult) -> None:
        bd = None
        for m in p.metrics:
            if m.name == BDSEQ_METRIC:
                bd = _int_of(m, DataType.INT64)
        if bd is None:
            raise MalformedPayload("missing-bdseq", "NDEATH without a bdSeq metric")
        if node.online and bd == node.bd_seq:
            node.online = False
            node.deaths += 1
            for dev in node.devices.values():
                dev.online = False
            result.notices.append(
                Notice(NoticeKind.NODE_DEAD, t.group_id, t.edge_node_id, None, f"bdSeq={bd}")
            )
        else:
            result.notices.append(
                Notice(
                    NoticeKind.STALE_NDEATH,
                    t.group_id,
                    t.edge_node_id,
                    None,
                    f"bdSeq={bd}, current session bdSeq={node.bd_seq}",
                )
            )

    def _birth_table(self, t: Topic, p: Any, device_id: str | None, node: _HostNode | None) -> _HostDevice:
        """The alias/name table a birth declares; MalformedPayload for a metric without name or datatype, or
        an alias used twice within the edge node."""
        table = _HostDevice(device_id)
        taken: set[int] = set()
        if node is not None:  # aliases are unique across the edge node: node metrics and the other devices
            taken.update(node.node.by_alias)
            for d, dev in node.devices.items():
                if d != device_id:
                    taken.update(dev.by_alias)
        keys: dict[SeriesKey, int] = {}
        for m in p.metrics:
            if not m.HasField("name") or not m.HasField("datatype"):
                raise MalformedPayload(
                    "bad-birth-metric", f"{t.message_type} metric without name or datatype"
                )
            name = m.name
            if device_id is None and (name == BDSEQ_METRIC or name.startswith("Node Control/")):
                continue
            hm = _HostMetric(
                name, int(m.datatype), self._index(t.group_id, t.edge_node_id, device_id, m, keys)
            )
            table.by_name[name] = hm
            if m.HasField("alias"):
                if m.alias in taken:
                    raise MalformedPayload(
                        "alias-conflict", f"alias {m.alias} declared twice in the edge node"
                    )
                taken.add(m.alias)
                table.by_alias[m.alias] = hm
        table.keys = tuple(keys)
        return table

    def _index(self, group: str, edge: str, device_id: str | None, m: Any, keys: dict[SeriesKey, int]) -> int:
        if int(m.datatype) not in _SCALAR_TYPES:
            return _UNSUPPORTED
        key = self._resolve(group, edge, device_id, m.name)
        return _UNMAPPED if key is None else keys.setdefault(key, len(keys))

    # -- sequence numbers and rebirths
    def _check_seq(self, node: _HostNode, seq: int, result: HostResult) -> None:
        expected = None if node.seq is None else (node.seq + 1) % SEQ_MODULUS
        node.seq = seq
        if expected is not None and seq != expected:
            node.seq_gaps += 1
            result.notices.append(
                Notice(
                    NoticeKind.SEQ_GAP,
                    node.group_id,
                    node.edge_node_id,
                    None,
                    f"expected {expected}, got {seq}",
                )
            )
            self._request_rebirth(node, result, "seq-gap")

    def _request_rebirth(self, node: _HostNode, result: HostResult, why: str) -> None:
        now = self._clock()
        if node.rebirth_requested_ns is not None and now - node.rebirth_requested_ns < self._retry:
            return
        node.rebirth_requested_ns = now
        node.rebirths_requested += 1
        result.publish.append(rebirth_request(node.group_id, node.edge_node_id, now // _NS_PER_MS))
        result.notices.append(
            Notice(NoticeKind.REBIRTH_REQUESTED, node.group_id, node.edge_node_id, None, why)
        )

    # -- samples
    def _samples(
        self,
        t: Topic,
        p: Any,
        payload: bytes,
        table: _HostDevice,
        node: _HostNode,
        result: HostResult,
        *,
        birth: bool,
    ) -> None:
        default_ms = int(p.timestamp)  # feed() checked it is there
        if not birth and self._vectorized and len(p.metrics):
            cols = _scan_metrics(bytes(payload))
            if cols is not None and cols.has_alias.all():
                self._columns(t, cols, default_ms, payload, table, node, result)
                return
        series: list[int] = []
        ts: list[int] = []
        values: list[float] = []
        quality: list[int] = []
        texts: list[str | None] = []
        any_text = False
        unmapped = unsupported = 0
        by_alias, by_name = table.by_alias, table.by_name
        try:
            for m in p.metrics:
                if birth:
                    hm = by_name.get(m.name)
                    if hm is None:  # bdSeq, Node Control/*
                        continue
                    if m.is_null:
                        continue  # no current value yet
                elif m.HasField("alias"):
                    hm = by_alias.get(m.alias)
                    if hm is None:
                        raise _Unknown(f"alias {m.alias}")
                else:
                    hm = by_name.get(m.name)
                    if hm is None:
                        raise _Unknown(f"metric {m.name!r}")
                if hm.index < 0:
                    if hm.index == _UNMAPPED:
                        unmapped += 1
                    else:
                        unsupported += 1
                    continue
                got = _value_of(m, hm.datatype)
                if got is None:
                    unsupported += 1
                    continue
                ms = int(m.timestamp) if m.HasField("timestamp") else default_ms
                props = m.properties
                q, rest = _properties(props) if props.keys else _GOOD_NO_REST
                series.append(hm.index)
                ts.append(ms * _NS_PER_MS + rest)
                values.append(got[0])
                quality.append(q)
                texts.append(got[1])
                any_text = any_text or got[1] is not None
        except _Unknown as unknown:
            result.quarantined.append(
                Quarantined(str(t), bytes(payload), "unknown-alias", f"{unknown} was not declared at birth")
            )
            self._request_rebirth(node, result, "unknown-alias")
            return
        result.unmapped += unmapped
        result.unsupported += unsupported
        if series:
            result.samples = SampleBatch.from_columns(
                table.keys, series, ts, values, quality, texts if any_text else None
            )
            self._dated(node, max(ts))

    def _dated(self, node: _HostNode, newest: int) -> None:
        if node.last_sample_ns is None or newest > node.last_sample_ns:
            node.last_sample_ns = newest

    def _columns(
        self,
        t: Topic,
        c: _Columns,
        default_ms: int,
        payload: bytes,
        table: _HostDevice,
        node: _HostNode,
        result: HostResult,
    ) -> None:
        """The samples of a DATA payload from its columns (what the per-metric loop gives, vectorised)."""
        aliases, index_of, dtype_of = table.alias_table()
        at = np.searchsorted(aliases, c.alias)
        found = at < len(aliases)
        found[found] = aliases[at[found]] == c.alias[found]
        if not found.all():
            missing = int(c.alias[np.argmin(found)])
            result.quarantined.append(
                Quarantined(
                    str(t), bytes(payload), "unknown-alias", f"alias {missing} was not declared at birth"
                )
            )
            self._request_rebirth(node, result, "unknown-alias")
            return
        index = index_of[at]
        result.unmapped += int(np.count_nonzero(index == _UNMAPPED))
        result.unsupported += int(np.count_nonzero(index == _UNSUPPORTED))
        keep = index >= 0
        if not keep.any():
            return
        value = _values(c, dtype_of[at])
        quality = np.zeros(len(index), dtype=np.uint8)
        rest = np.zeros(len(index), dtype=np.int64)
        raw = bytes(payload)
        with_props = np.flatnonzero(c.span[:, 0] >= 0)
        if len(with_props):
            buf = np.frombuffer(raw + bytes(_PAD), dtype=np.uint8)
            ok, q, r = _property_columns(buf, c.span[with_props, 0], c.span[with_props, 1])
            quality[with_props[ok]] = q[ok]
            rest[with_props[ok]] = r[ok]
            for row in with_props[~ok].tolist():  # another writer's layout
                quality[row], rest[row] = _properties_of(raw[c.span[row, 0] : c.span[row, 1]])
        ts = np.where(c.has_ts, c.ts, np.uint64(default_ms)).astype(np.int64) * _NS_PER_MS + rest
        text = None
        s_rows = np.flatnonzero((c.kind == 15) & ~c.null)
        if len(s_rows):
            text = np.full(len(index), None, dtype=object)
            text[s_rows] = [raw[a:b].decode("utf-8", "replace") for a, b in c.span[s_rows, 2:4].tolist()]
            text = text[keep]
        result.samples = SampleBatch.from_columns(
            table.keys, index[keep], ts[keep], value[keep], quality[keep], text
        )
        self._dated(node, int(ts[keep].max()))

    # -- persistence across an ingest restart
    def snapshot(self) -> dict[str, Any]:
        """The session state as JSON-able data, so a restarted ingest still reads data sent before its restart
        (a broker redelivering what the old process had not acknowledged) without waiting for a rebirth."""

        def table(dev: _HostDevice) -> dict[str, Any]:
            aliases = {id(hm): a for a, hm in dev.by_alias.items()}
            return {
                "online": dev.online,
                "metrics": [[aliases.get(id(hm)), hm.name, hm.datatype] for hm in dev.by_name.values()],
            }

        return {
            "version": 1,
            "nodes": [
                {
                    "group_id": n.group_id,
                    "edge_node_id": n.edge_node_id,
                    "online": n.online,
                    "bd_seq": n.bd_seq,
                    "seq": n.seq,
                    "node": table(n.node),
                    "devices": {d: table(dev) for d, dev in n.devices.items()},
                }
                for n in self._nodes.values()
            ],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a :meth:`snapshot` (series are resolved again with this decoder's resolver)."""
        if state.get("version") != 1:
            raise ValueError("unknown HostDecoder snapshot version")

        def table(group: str, edge: str, device_id: str | None, obj: dict[str, Any]) -> _HostDevice:
            dev = _HostDevice(device_id, online=bool(obj["online"]))
            keys: dict[SeriesKey, int] = {}
            for alias, name, datatype in obj["metrics"]:
                m = _pb.Payload.Metric(name=name, datatype=datatype)
                hm = _HostMetric(name, int(datatype), self._index(group, edge, device_id, m, keys))
                dev.by_name[name] = hm
                if alias is not None:
                    dev.by_alias[int(alias)] = hm
            dev.keys = tuple(keys)
            return dev

        nodes: dict[tuple[str, str], _HostNode] = {}
        for n in state["nodes"]:
            g, e = n["group_id"], n["edge_node_id"]
            node = _HostNode(g, e, online=bool(n["online"]), bd_seq=n["bd_seq"], seq=n["seq"])
            node.node = table(g, e, None, n["node"])
            node.devices = {d: table(g, e, d, obj) for d, obj in n["devices"].items()}
            nodes[(g, e)] = node
        self._nodes = nodes
