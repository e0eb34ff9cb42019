"""Sparkplug B's vocabulary for the unified namespace: names, datatypes, quality codes, errors, topics, device ids
and the small messages (rebirth request, host STATE). ``uns.sparkplug`` has the mapping and the state machines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

import numpy as np
from google.protobuf.message import DecodeError

from shopfloor.model import (
    ASSET_PATH_RE,
    AssetPath,
    Quality,
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
