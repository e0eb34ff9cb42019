"""What the central ingest decodes: every message the publisher's JSON codec writes comes back through
``decode_message`` as the same samples (joined across messages into one batch for the historian) and the
same events with their ``seq``; anything malformed raises PayloadError with a countable reason; and the
``ingest:`` config refuses what it must (a literal password, a bad URL or group) and names the share group.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from historian.base import event_seqs
from shopfloor.batch import SampleBatch
from shopfloor.config.ingest import IngestConfig
from shopfloor.model import Event, EventKind
from uns.json_payload import PayloadError, decode_message, encode_events, encode_samples
from uns.topics import TopicTree

PREFIX = "uns/v1"
MILL = "qijiang/copper/hot-rolling/mill-1"
T0 = 1_767_225_600_000_000_000


def rows(batch: SampleBatch) -> set[tuple[str, str, int, float | str | None, int]]:
    out: set[tuple[str, str, int, float | str | None, int]] = set()
    for s in batch.to_samples():
        v: float | str | None = s.value
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out.add((s.asset, s.signal, s.ts_ns, v, int(s.quality)))
    return out


def test_samples_round_trip_through_the_messages_and_join_into_one_batch() -> None:
    rng = np.random.default_rng(7)
    keys = [(f"qijiang/area-{i % 3}/line/asset-{i % 4}", f"sig_{i}") for i in range(12)]
    n = 600
    series = rng.integers(0, len(keys), n)
    ts = T0 + rng.permutation(n) * 1000  # unique per batch, out of order
    value = rng.normal(0, 1e3, n)
    value[rng.random(n) < 0.05] = np.nan  # no value: null on the wire
    quality = rng.integers(0, 3, n)
    batch = SampleBatch.from_columns(keys, series, ts, value, quality)
    tree = TopicTree(PREFIX)
    messages = encode_samples(batch, tree)
    assert len(messages) == len({int(s) for s in series})  # one message per series
    decoded = [decode_message(m.topic, m.payload, tree) for m in messages]
    assert all(d.events == [] and d.samples is not None for d in decoded)
    joined = SampleBatch.concat([d.samples for d in decoded if d.samples is not None])
    assert len(joined) == n == sum(d.points for d in decoded)
    assert rows(joined) == rows(batch)


def test_text_values_round_trip() -> None:
    batch = SampleBatch.from_columns(
        [(MILL, "recipe")], [0, 0], [T0, T0 + 1], [math.nan, math.nan], [0, 1], ["CU-ETP 8mm", '铜 "x"']
    )
    tree = TopicTree()
    (m,) = encode_samples(batch, tree)
    d = decode_message(m.topic, memoryview(m.payload), tree)
    assert d.samples is not None
    assert [s.value for s in d.samples.to_samples()] == ["CU-ETP 8mm", '铜 "x"']


def test_events_round_trip_with_their_seq() -> None:
    e = [
        Event(MILL, EventKind.ALARM, T0, "HI", "too hot", 912.0, {"limit": 900}, key="temp"),
        Event(MILL, EventKind.ALARM, T0, "HI", "too hot again", None, {}, key="temp"),  # same identity
        Event("qijiang/machining/line/cnc-1", EventKind.PART_PRODUCED, T0 + 5, key="count"),
    ]
    seqs = event_seqs(e)
    assert seqs == [0, 1, 0]
    tree = TopicTree(PREFIX)
    messages = encode_events(e, seqs, tree)
    assert [m.topic.rsplit("/", 1)[1] for m in messages] == ["$events", "$events"]
    decoded = [decode_message(m.topic, m.payload, tree) for m in messages]
    assert all(d.samples is None for d in decoded)
    assert [ev for d in decoded for ev in d.events] == e
    assert [n for d in decoded for n in d.seqs] == seqs
    assert sum(d.points for d in decoded) == 3


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("uns/v1/qijiang/a/b/c/sig", b"\xff\xfe not utf-8", "encoding"),
        ("uns/v1/qijiang/a/b/c/sig", b'{"v":1,"samples":[[1,2.0,0]', "json"),
        ("uns/v1/qijiang/a/b/c/sig", b'{"v":1,"samples":[[1,NaN,0]]}', "json"),
        ("uns/v1/qijiang/a/b/c/sig", b"[1,2,3]", "shape"),
        ("uns/v1/qijiang/a/b/c/sig", b'{"v":2,"samples":[]}', "version"),
        ("uns/v1/qijiang/a/b/c/sig", b'{"v":1,"samples":[[1,2.0]]}', "shape"),
        ("uns/v1/qijiang/a/b/c/sig", b'{"v":1,"samples":[[1.5,2.0,0]]}', "timestamp"),
        ("uns/v1/qijiang/a/b/c/sig", b'{"v":1,"samples":[[1,{},0]]}', "value"),
        ("uns/v1/qijiang/a/b/c/sig", b'{"v":1,"samples":[[1,2.0,7]]}', "quality"),
        ("uns/v1/qijiang/a/b/c/$events", b'{"v":1,"events":[{"kind":"nope","ts_ns":1}]}', "event"),
        ("uns/v1/qijiang/a/b/c/$events", b'{"v":1,"samples":[]}', "shape"),
        ("uns/v1/qijiang", b'{"v":1,"samples":[]}', "topic"),  # no asset path
        ("other/qijiang/a/b/c/sig", b'{"v":1,"samples":[]}', "topic"),  # outside the prefix
        ("uns/v1/qijiang/a/b/c/$weird", b'{"v":1,"samples":[]}', "topic"),
    ],
)
def test_malformed_messages_raise_a_payload_error_with_a_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as err:
        decode_message(topic, payload, TopicTree(PREFIX))
    assert err.value.reason == reason


def test_an_empty_samples_message_decodes_to_nothing() -> None:
    d = decode_message("qijiang/a/b/c/sig", b'{"v":1,"samples":[],"extra":"ignored"}')
    assert d.samples is not None and len(d.samples) == 0 and d.points == 0


def test_the_ingest_config_checks_the_broker_with_the_publishers_rules() -> None:
    cfg = IngestConfig(url="mqtts://ingest@broker.plant.local", password_env="X", topic_prefix="uns/v1/")
    broker = cfg.broker_settings()
    assert (broker.broker.port, broker.user) == (8883, "ingest")
    assert cfg.subscription() == "$share/shopfloor-ingest/uns/v1/#"
    assert IngestConfig(url="mqtt://b", group="g2").subscription() == "$share/g2/#"
    assert IngestConfig(url="mqtt://b").resolved_client_id().startswith("shopfloor-ingest-")
    with pytest.raises(ValidationError, match="password_env"):
        IngestConfig.model_validate({"url": "mqtt://b", "password": "s3cret"})
    with pytest.raises(ValidationError, match="may not carry a password"):
        IngestConfig(url="mqtt://u:s3cret@b")
    with pytest.raises(ValidationError, match="mqtts://"):
        IngestConfig.model_validate({"url": "mqtt://b", "tls": {"ca_file": "ca.pem"}})
    with pytest.raises(ValidationError, match="topic_prefix"):
        IngestConfig(url="mqtt://b", topic_prefix="uns/#")
    with pytest.raises(ValidationError, match="group"):
        IngestConfig(url="mqtt://b", group="a/b")
    with pytest.raises(ValueError, match="no broker"):
        IngestConfig().broker_settings()
    assert (
        IngestConfig().with_overrides(url="mqtt://b:1884", group=None).broker_settings().broker.port == 1884
    )
    with pytest.raises(ValueError, match="client_id"):
        IngestConfig().with_overrides(url="mqtt://b", client_id="a/b")


def test_the_plant_config_takes_an_ingest_section_and_locates_its_errors() -> None:
    from shopfloor.config import ConfigError
    from shopfloor.config.load import parse_plant_config

    cfg = parse_plant_config("site: central\ningest:\n  url: mqtt://broker:1884\n  group: ''\n", "plant.yaml")
    assert cfg.ingest is not None and cfg.ingest.subscription() == "#"
    assert cfg.ingest.broker_settings().broker.port == 1884
    with pytest.raises(ConfigError, match=r"plant.yaml:2:1: ingest: secrets may not be written"):
        parse_plant_config("site: central\ningest:\n  url: mqtt://b\n  password: x\n", "plant.yaml")
