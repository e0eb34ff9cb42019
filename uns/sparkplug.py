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

Modules: ``uns.sparkplug_spec`` (names, datatypes, quality codes, errors, topics, small messages) and
``uns.sparkplug_wire`` (the numpy wire format); this one has the edge node and the host decoder and re-exports
the public names of both, so ``from uns.sparkplug import ...`` is the one import users need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from shopfloor.batch import SampleBatch
from shopfloor.model import (
    ASSET_PATH_RE,
    SIGNAL_NAME_RE,
    SeriesKey,
    Signal,
    now_ns,
)
from uns import sparkplug_b_pb2 as _pb_module
from uns.sparkplug_spec import (
    _CODE_OF_QUALITY,
    _INT_RANGE,
    _MASK32,
    _MASK64,
    _NS_PER_MS,
    _SCALAR_TYPES,
    BDSEQ_METRIC,
    DATATYPE_OF_SIGNAL,
    DEVICE_MESSAGES,
    DEVICE_SEPARATOR,
    NAMESPACE,
    NANOS_PROPERTY,
    NODE_MESSAGES,
    QUALITY_CODE,
    QUALITY_PROPERTY,
    REBIRTH_METRIC,
    SEQ_MODULUS,
    DataType,
    EncodeError,
    HostState,
    InvalidTopic,
    MalformedPayload,
    MessageType,
    SessionError,
    SparkplugError,
    SparkplugMessage,
    Topic,
    asset_for,
    check_id,
    device_id_for,
    host_state,
    parse_payload,
    parse_state,
    quality_of_code,
    rebirth_request,
)
from uns.sparkplug_wire import (
    _GOOD_NO_REST,
    _PAD,
    _Columns,
    _encode_metrics,
    _int_of,
    _properties,
    _properties_of,
    _property_columns,
    _scan_metrics,
    _set_properties,
    _value_of,
    _values,
    _varint,
)

_pb: Any = _pb_module  # generated code: no static types

__all__ = [
    "BDSEQ_METRIC",
    "DATATYPE_OF_SIGNAL",
    "DEVICE_MESSAGES",
    "DEVICE_SEPARATOR",
    "NAMESPACE",
    "NANOS_PROPERTY",
    "NODE_MESSAGES",
    "QUALITY_CODE",
    "QUALITY_PROPERTY",
    "REBIRTH_METRIC",
    "SEQ_MODULUS",
    "DataType",
    "DeviceSpec",
    "EdgeConfig",
    "EdgeNode",
    "EncodeError",
    "HostDecoder",
    "HostResult",
    "HostState",
    "InvalidTopic",
    "MalformedPayload",
    "MessageType",
    "NodeStatus",
    "Notice",
    "NoticeKind",
    "Quarantined",
    "Resolver",
    "SessionError",
    "SparkplugError",
    "SparkplugMessage",
    "Topic",
    "_scan_metrics",
    "asset_for",
    "check_id",
    "default_resolver",
    "device_id_for",
    "host_state",
    "parse_payload",
    "parse_state",
    "quality_of_code",
    "rebirth_request",
]


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
