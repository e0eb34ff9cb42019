"""The plain-JSON payload: random batches (numbers, text, no-value rows, every quality) survive encoding
into one message per series and decoding back, sample for sample; events keep their numbering; and a
malformed message raises PayloadError with a reason, never anything else."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest

from historian.base import event_seqs
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Sample
from uns.json_payload import (
    JsonCodec,
    PayloadError,
    decode,
    decode_events,
    decode_events_seqs,
    decode_samples,
    encode_events,
    encode_samples,
)
from uns.topics import TopicError, TopicTree

MILL = "qijiang/copper/hot-rolling/mill-1"
T0 = 1_767_225_600_000_000_000


def random_batch(rng: np.random.Generator, n: int, series: int) -> SampleBatch:
    keys = [(f"qijiang/area-{i % 3}/line-{i % 2}/asset-{i % 5}", f"sig_{i}") for i in range(series)]
    s = rng.integers(0, series, n)
    ts = T0 + rng.integers(0, 10**12, n)
    value = rng.normal(0, 1e3, n) * rng.choice([1.0, 1e-9, 1e9], n)
    value[rng.random(n) < 0.05] = np.nan
    value[rng.random(n) < 0.01] = np.inf
    quality = rng.integers(0, 3, n)
    text: list[str | None] = [None] * n
    for i in np.flatnonzero(s % 7 == 3):  # some series are text signals
        text[i] = rng.choice(["ok", "", "温度过高", 'say "hi"\n\\', "\x00nul"])
    return SampleBatch.from_columns(keys, s, ts, value, quality, text)


def as_rows(batch: SampleBatch) -> list[tuple[str, str, int, float | str | None, int]]:
    out = []
    for s in batch.to_samples():
        v = s.value if isinstance(s.value, str) else (None if not math.isfinite(s.value) else s.value)
        out.append((s.asset, s.signal, s.ts_ns, v, int(s.quality)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_batches_round_trip_one_message_per_series(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = random_batch(rng, 3000, 40)
    tree = TopicTree("uns/v1")
    messages = encode_samples(batch, tree)
    used = {batch.keys[i] for i in np.unique(batch.series).tolist()}
    assert len(messages) == len(used) == len({m.topic for m in messages})
    decoded = [decode_samples(m.topic, m.payload, tree) for m in messages]
    for m, d in zip(messages, decoded):
        assert m.topic == tree.sample_topic(*d.keys[0])
        json.loads(m.payload)  # strict JSON: no NaN or Infinity tokens
        assert np.all(np.diff(d.ts) >= 0), "rows of a message are in timestamp order"
    # every sample arrives once, with its value (non-finite values as no value), text and quality
    assert sorted(as_rows(SampleBatch.concat(decoded)), key=repr) == sorted(as_rows(batch), key=repr)


def test_equal_timestamps_keep_the_order_they_were_produced_in() -> None:
    batch = SampleBatch.from_columns([(MILL, "a")], [0, 0, 0], [5, 5, 4], [1.0, 2.0, 3.0])
    (m,) = encode_samples(batch, TopicTree())
    assert json.loads(m.payload) == {"v": 1, "samples": [[4, 3.0, 0], [5, 1.0, 0], [5, 2.0, 0]]}


def test_the_documented_example_payload() -> None:
    samples = [Sample(MILL, "roll_force", 812.5, T0), Sample(MILL, "roll_force", math.nan, T0 + 10**8, 2)]
    (m,) = encode_samples(SampleBatch.from_samples(samples), TopicTree())
    assert m.topic == f"{MILL}/roll_force"
    assert m.payload == b'{"v":1,"samples":[[1767225600000000000,812.5,0],[1767225600100000000,null,2]]}'


def test_a_key_table_entry_no_row_uses_costs_nothing_and_needs_no_topic() -> None:
    batch = SampleBatch.from_columns([("not a path", "x"), (MILL, "a")], [1, 1], [1, 2], [1.0, 2.0])
    (m,) = encode_samples(batch, TopicTree())
    assert m.topic == f"{MILL}/a"


def test_a_series_without_a_topic_is_refused() -> None:
    batch = SampleBatch.from_columns([(MILL, "a"), (MILL, "bad/name")], [0, 1], [1, 2], [1.0, 2.0])
    with pytest.raises(TopicError):
        encode_samples(batch, TopicTree())


def test_events_group_by_asset_and_keep_their_numbers() -> None:
    other = "qijiang/machining/gearbox-line/cnc-1"
    events = [
        Event(MILL, EventKind.ALARM, T0, "HI", "too hot", 912.5, {"limit": 900}, key="temp"),
        Event(other, EventKind.STATE_CHANGE, T0, "run", "", None, key="state"),
        Event(MILL, EventKind.ALARM, T0, "HI", "too hot, again", math.nan, key="temp"),  # same identity
        Event(MILL, EventKind.GAP, T0 + 5, data={"source": "plc", "到": "x"}),
    ]
    seqs = event_seqs(events)
    tree = TopicTree("uns")
    messages = encode_events(events, seqs, tree)
    assert [m.topic for m in messages] == [f"uns/{MILL}/$events", f"uns/{other}/$events"]
    got: list[Event] = []
    got_seqs: list[int] = []
    for m in messages:
        e, s = decode_events_seqs(m.topic, m.payload, tree)
        got += e
        got_seqs += s
    expected = [events[0], events[2], events[3], events[1]]
    # NaN has no JSON: the value of the second alarm arrives as "no value"
    expected[1] = Event(MILL, EventKind.ALARM, T0, "HI", "too hot, again", None, key="temp")
    assert got == expected
    assert got_seqs == [0, 1, 0, 0]
    assert decode(messages[1].topic, messages[1].payload, tree) == [events[1]]


def test_the_codec_is_the_publishers_strategy_object() -> None:
    codec = JsonCodec("uns")
    batch = SampleBatch.from_samples([Sample(MILL, "a", 1.0, T0)])
    assert [m.topic for m in codec.encode_samples(batch)] == [f"uns/{MILL}/a"]
    assert codec.on_connect() == [] and codec.will() is None
    e = Event(MILL, EventKind.SYSTEM, T0)
    assert decode_events(*codec.encode_events([e], [0])[0], codec.tree) == [e]


TOPIC = f"{MILL}/roll_force"


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        (TOPIC, b"not json", "json"),
        (TOPIC, b'{"v":1,"samples":[[1,NaN,0]]}', "json"),
        (TOPIC, b'{"v":1,"samples":[[1,Infinity,0]]}', "json"),
        (TOPIC, b"\xff\xfe\x00", "json"),
        (TOPIC, b"[1,2]", "shape"),
        (TOPIC, b'{"samples":[]}', "version"),
        (TOPIC, b'{"v":2,"samples":[]}', "version"),
        (TOPIC, b'{"v":true,"samples":[]}', "version"),
        (TOPIC, b'{"v":1,"samples":{}}', "shape"),
        (TOPIC, b'{"v":1,"samples":[[1,2]]}', "shape"),
        (TOPIC, b'{"v":1,"samples":[{"ts":1}]}', "shape"),
        (TOPIC, b'{"v":1,"samples":[[1.5,2,0]]}', "timestamp"),
        (TOPIC, b'{"v":1,"samples":[["1",2,0]]}', "timestamp"),
        (TOPIC, b'{"v":1,"samples":[[99999999999999999999,2,0]]}', "timestamp"),
        (TOPIC, b'{"v":1,"samples":[[1,true,0]]}', "value"),
        (TOPIC, b'{"v":1,"samples":[[1,[2],0]]}', "value"),
        (TOPIC, b'{"v":1,"samples":[[1,2,3]]}', "quality"),
        (TOPIC, b'{"v":1,"samples":[[1,2,-1]]}', "quality"),
        (TOPIC, b'{"v":1,"samples":[[1,2,1.0]]}', "quality"),
        (f"{MILL}/$events", b'{"v":1,"samples":[]}', "topic"),
        ("qijiang/roll_force", b'{"v":1,"samples":[]}', "topic"),
        (f"{MILL}/bad+name", b'{"v":1,"samples":[]}', "topic"),
    ],
)
def test_malformed_sample_messages_raise_payload_error_with_a_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_samples(topic, payload)
    assert caught.value.reason == reason


EVENTS = f"{MILL}/$events"


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        (EVENTS, b'{"v":1,"events":[1]}', "event"),
        (EVENTS, b'{"v":1,"events":[{"kind":"nope","ts_ns":1}]}', "event"),
        (EVENTS, b'{"v":1,"events":[{"kind":"alarm"}]}', "timestamp"),
        (EVENTS, b'{"v":1,"events":[{"kind":"alarm","ts_ns":1.0}]}', "timestamp"),
        (EVENTS, b'{"v":1,"events":[{"kind":"alarm","ts_ns":1,"seq":-1}]}', "event"),
        (EVENTS, b'{"v":1,"events":[{"kind":"alarm","ts_ns":1,"value":"x"}]}', "value"),
        (EVENTS, b'{"v":1,"events":[{"kind":"alarm","ts_ns":1,"code":5}]}', "event"),
        (EVENTS, b'{"v":1,"events":[{"kind":"alarm","ts_ns":1,"data":[1]}]}', "event"),
        (EVENTS, b'{"v":1,"events":[{"kind":"alarm","ts_ns":1,"key":"a\\nb"}]}', "event"),
        (EVENTS, b'{"v":1,"samples":[]}', "shape"),
        (TOPIC, b'{"v":1,"events":[]}', "topic"),
    ],
)
def test_malformed_event_messages_raise_payload_error_with_a_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_events(topic, payload)
    assert caught.value.reason == reason


def test_random_garbage_only_ever_raises_payload_error() -> None:
    rng = np.random.default_rng(11)
    good = encode_samples(random_batch(rng, 200, 3), TopicTree())[0]
    for _ in range(300):
        raw = bytearray(good.payload)
        for _ in range(rng.integers(1, 4)):
            raw[rng.integers(0, len(raw))] = int(rng.integers(0, 256))
        with contextlib.suppress(PayloadError):  # anything else fails the test
            decode(good.topic, bytes(raw))
