"""The plain-JSON payload of the unified namespace: one message per series per writer batch, carrying
all of that series' samples, and one message per asset for its events; encoders and strict decoders.

Samples, on ``[prefix/]<asset>/<signal>``::

    {"v":1,"samples":[[1767225600000000000,812.5,0],[1767225600100000000,null,2],...]}

each row ``[ts_ns, value, quality]``: UTC nanoseconds (an integer), the value (a number; a string for
a text signal; null where there is no value: NaN and ±inf in the batch), quality 0 Good, 1 Uncertain,
2 Bad. Rows are sorted by timestamp (stable: equal timestamps keep the order they were produced in).

Events, on ``[prefix/]<asset>/$events``::

    {"v":1,"events":[{"kind":"alarm","key":"temp_high","ts_ns":...,"code":"HI","message":"...",
                      "value":912.0,"data":{...},"seq":0},...]}

``seq`` is the event's number within the write it came in (``historian.base.event_seqs``), so a
consumer that writes the events of a message to a historian lands them on the same identities as the
edge's own historian would, and a message received twice is stored once. Readers ignore keys they do
not know; a change that old readers would misread gets a new ``v``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind
from uns.topics import MqttMessage, ParsedTopic, TopicError, TopicTree

VERSION = 1
_SAMPLES_HEAD = '{"v":1,"samples":['
_EVENTS_HEAD = '{"v":1,"events":['
_TAIL = "]}"
_END = "\x00"  # marks the end of a series in the joined rows; JSON escapes NUL, so no value holds it


class PayloadError(ValueError):
    """A message that is not a valid payload. ``reason`` is one of a few words (topic, encoding, json,
    version, shape, timestamp, value, quality, event), fit to count quarantined messages by; the text
    says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# -- encoding ------------------------------------------------------------------------------------
def encode_samples(batch: SampleBatch, tree: TopicTree) -> list[MqttMessage]:
    """One message per series of ``batch``, in the order of the series' first rows' key index.

    Vectorised: one stable sort by (series, ts), one float formatting pass for the whole batch (the
    repr of a list, in C), one ``%`` format for every row, then one string split per series.
    TopicError if a series' asset path or signal name has no topic.
    """
    n = len(batch)
    if n == 0:
        return []
    order = np.lexsort((batch.ts, batch.series))
    series = batch.series[order]
    starts = np.flatnonzero(np.concatenate(([True], series[1:] != series[:-1])))
    topics = [tree.series_topic(batch.keys[i]) for i in series[starts].tolist()]
    value = batch.value[order]
    values: list[str] = repr(value.tolist())[1:-1].split(", ")
    text_rows = batch.text_rows()[order] if batch.text is not None else None
    finite = np.isfinite(value)
    if not finite.all() or text_rows is not None:
        vals = np.array(values, dtype=object)
        vals[~finite] = "null"
        if text_rows is not None and batch.text is not None:
            texts = batch.text[order][text_rows].tolist()
            vals[text_rows] = [json.dumps(t, ensure_ascii=False) for t in texts]
        values = vals.tolist()
    ends = np.full(n, ",", dtype=object)
    ends[starts[1:] - 1] = _END
    ends[n - 1] = _END
    quality = np.minimum(batch.quality[order], 2).tolist()
    rows = zip(batch.ts[order].tolist(), values, quality, ends.tolist())
    body = ("[%d,%s,%d]%s" * n) % tuple(chain.from_iterable(rows))
    pieces = body.split(_END)
    return [
        MqttMessage(topic, (_SAMPLES_HEAD + piece + _TAIL).encode()) for topic, piece in zip(topics, pieces)
    ]


def encode_events(events: Sequence[Event], seqs: Sequence[int], tree: TopicTree) -> list[MqttMessage]:
    """One message per asset, its events in the order given, each with its ``seq``.

    TopicError for an asset path without a topic; ValueError for event data JSON cannot carry (NaN).
    """
    groups: dict[str, list[str]] = {}
    for e, seq in zip(events, seqs, strict=True):
        value = e.value if e.value is not None and math.isfinite(e.value) else None
        obj = {
            "kind": str(e.kind),
            "key": e.key,
            "ts_ns": int(e.ts_ns),
            "code": e.code,
            "message": e.message,
            "value": None if value is None else float(value),
            "data": e.data,
            "seq": int(seq),
        }
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)
        groups.setdefault(e.asset, []).append(text)
    return [
        MqttMessage(tree.events_topic(asset), (_EVENTS_HEAD + ",".join(items) + _TAIL).encode())
        for asset, items in groups.items()
    ]


class JsonCodec:
    """The payload codec of ``format: json`` for ``uns.publisher.MqttPublisher`` (see PayloadCodec)."""

    format = "json"

    def __init__(self, prefix: str = "") -> None:
        self.tree = TopicTree(prefix)

    def encode_samples(self, batch: SampleBatch) -> list[MqttMessage]:
        return encode_samples(batch, self.tree)

    def encode_events(self, events: Sequence[Event], seqs: Sequence[int]) -> list[MqttMessage]:
        return encode_events(events, seqs, self.tree)

    def on_connect(self) -> list[MqttMessage]:
        """Plain JSON announces nothing on connect (Sparkplug B sends its births here)."""
        return []

    def will(self) -> MqttMessage | None:
        return None


# -- decoding ------------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise PayloadError("json", f"{name} is not JSON")


def _load(payload: bytes | bytearray | memoryview | str, kind: str) -> list[Any]:
    try:
        obj = json.loads(
            bytes(payload) if isinstance(payload, memoryview) else payload, parse_constant=_reject_constant
        )
    except PayloadError:
        raise
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PayloadError("json", str(exc)) from None
    if not isinstance(obj, dict):
        raise PayloadError("shape", "the payload is not a JSON object")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise PayloadError("version", f'expected "v":{VERSION}, got {obj.get("v")!r}')
    items = obj.get(kind)
    if not isinstance(items, list):
        raise PayloadError("shape", f"expected a list under {kind!r}")
    return items


def _parse(topic: str, tree: TopicTree) -> ParsedTopic:
    try:
        return tree.parse(topic)
    except TopicError as exc:
        raise PayloadError("topic", str(exc)) from None


def decode_samples(topic: str, payload: bytes | str, tree: TopicTree | None = None) -> SampleBatch:
    """The batch of one samples message (one series); PayloadError if topic or payload is malformed."""
    target = _parse(topic, tree or TopicTree())
    if target.signal is None:
        raise PayloadError("topic", f"{topic!r} is an events topic, not a signal's")
    rows = _load(payload, "samples")
    n = len(rows)
    keys = ((target.asset, target.signal),)
    if n == 0:
        return SampleBatch.from_columns(keys, [], [], [])
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {3}:
        raise PayloadError("shape", "every sample must be a list [ts_ns, value, quality]")
    ts_col, value_col, quality_col = zip(*rows)
    if set(map(type, ts_col)) != {int}:
        raise PayloadError("timestamp", "timestamps must be integers (UTC nanoseconds)")
    try:
        ts = np.array(ts_col, dtype=np.int64)
    except OverflowError:
        raise PayloadError("timestamp", "a timestamp is outside the 64-bit range") from None
    if set(map(type, quality_col)) != {int}:
        raise PayloadError("quality", "quality must be an integer 0, 1 or 2")
    quality = np.array(quality_col, dtype=np.int64)
    if int(quality.min()) < 0 or int(quality.max()) > 2:
        raise PayloadError("quality", "quality must be 0 (Good), 1 (Uncertain) or 2 (Bad)")
    kinds = set(map(type, value_col))
    if not kinds <= {float, int, str, type(None)}:
        raise PayloadError("value", "values must be numbers, strings or null")
    text: list[str | None] | None = None
    if str in kinds:
        text = [v if type(v) is str else None for v in value_col]
        numbers = [None if type(v) is str else v for v in value_col]
        value = np.array(numbers, dtype=np.float64)
    else:
        value = np.array(value_col, dtype=np.float64)  # null becomes NaN
    return SampleBatch.from_columns(keys, np.zeros(n, np.uint32), ts, value, quality.astype(np.uint8), text)


def decode_events_seqs(
    topic: str, payload: bytes | str, tree: TopicTree | None = None
) -> tuple[list[Event], list[int]]:
    """The events of one events message and each one's ``seq``; PayloadError if malformed."""
    target = _parse(topic, tree or TopicTree())
    if target.signal is not None:
        raise PayloadError("topic", f"{topic!r} is a signal's topic, not an events topic")
    events: list[Event] = []
    seqs: list[int] = []
    for i, obj in enumerate(_load(payload, "events")):
        if not isinstance(obj, dict):
            raise PayloadError("event", f"event {i} is not an object")
        ts, seq, value, data = obj.get("ts_ns"), obj.get("seq", 0), obj.get("value"), obj.get("data") or {}
        strings = [obj.get(k, "") for k in ("key", "code", "message")]
        if type(ts) is not int or not -(2**63) <= ts < 2**63:
            raise PayloadError("timestamp", f"event {i}: ts_ns must be a 64-bit integer")
        if type(seq) is not int or seq < 0:
            raise PayloadError("event", f"event {i}: seq must be a non-negative integer")
        if value is not None and type(value) not in (int, float):
            raise PayloadError("value", f"event {i}: value must be a number or null")
        if not isinstance(data, dict) or not all(isinstance(s, str) for s in strings):
            raise PayloadError("event", f"event {i}: key, code and message must be strings, data an object")
        try:
            kind = EventKind(str(obj.get("kind")))
            events.append(Event(target.asset, kind, ts, strings[1], strings[2],
                                None if value is None else float(value), data, strings[0]))  # fmt: skip
        except ValueError as exc:
            raise PayloadError("event", f"event {i}: {exc}") from None
        seqs.append(seq)
    return events, seqs


def decode_events(topic: str, payload: bytes | str, tree: TopicTree | None = None) -> list[Event]:
    """The events of one events message; PayloadError if malformed."""
    return decode_events_seqs(topic, payload, tree)[0]


def decode(topic: str, payload: bytes | str, tree: TopicTree | None = None) -> SampleBatch | list[Event]:
    """A samples message as a SampleBatch, an events message as its events (by the topic's last level)."""
    tree = tree or TopicTree()
    if _parse(topic, tree).is_events:
        return decode_events(topic, payload, tree)
    return decode_samples(topic, payload, tree)


class Decoded(NamedTuple):
    """One message decoded for a consumer: a samples message's batch, or an events message's events
    with the ``seq`` each carried (the other part empty)."""

    samples: SampleBatch | None
    events: list[Event]
    seqs: list[int]

    @property
    def points(self) -> int:
        return len(self.samples) if self.samples is not None else len(self.events)


def decode_message(
    topic: str, payload: bytes | bytearray | memoryview, tree: TopicTree | None = None
) -> Decoded:
    """Any message of the tree as a consumer receives it (raw bytes): PayloadError with reason ``topic``
    for a topic outside the tree, ``encoding`` for a payload that is not UTF-8, else as ``decode``."""
    tree = tree or TopicTree()
    target = _parse(topic, tree)
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            "encoding", f"the payload is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if target.is_events:
        events, seqs = decode_events_seqs(topic, text, tree)
        return Decoded(None, events, seqs)
    return Decoded(decode_samples(topic, text, tree), [], [])
