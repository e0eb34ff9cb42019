"""The MQTT connector's message handling without a broker: refusals counted by reason and logged once per
topic and reason, batches emitted with their messages acknowledged after, and a bug never raising into paho.

The fake connection stands in for paho's only here; tests/integration/test_mqtt_connector.py runs it for real.
"""

from __future__ import annotations

import logging
from typing import Any

import paho.mqtt.client as paho
import pytest

from connectors.mqtt.config import MqttSourceSettings, MqttTag
from connectors.mqtt.connector import MqttConnector
from shopfloor.batch import SampleBatch
from shopfloor.connector import SourceContext
from shopfloor.model import Signal, SignalType

ASSET = "qijiang/copper/line3/press-1"


class FakeConnection:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.sent: list[str] = []

    def ack(self, mid: int, qos: int) -> bool:
        self.acked.append(mid)
        return True

    def publish_nowait(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        self.sent.append(topic)


class Sink:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def emit(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def emit_events(self, events: Any) -> None:
        raise AssertionError("no events expected")


def message(mid: int, topic: str, payload: bytes, qos: int = 1) -> paho.MQTTMessage:
    m = paho.MQTTMessage(mid, topic.encode())
    m.payload = payload
    m.qos = qos
    return m


def build(**settings: Any) -> tuple[MqttConnector, FakeConnection, Sink]:
    tags = [
        MqttTag(asset=ASSET, signal="temp", topic="d/+/t"),
        MqttTag(asset=ASSET, signal="recipe", topic="d/+/r"),
        MqttTag(asset=ASSET, signal="speed", sparkplug={"group": "G", "edge_node": "E", "metric": "speed"}),
    ]
    signals = {(ASSET, "temp"): Signal("temp"), (ASSET, "recipe"): Signal("recipe", type=SignalType.TEXT)}
    s = MqttSourceSettings.model_validate({"url": "mqtt://127.0.0.1:1", **settings})
    c = MqttConnector(SourceContext("line3", s, tags, signals=signals))
    conn, sink = FakeConnection(), Sink()
    c._sink = sink
    c._conn = conn  # type: ignore[assignment]
    return c, conn, sink


def test_refusals_are_counted_by_reason_and_logged_once_per_topic_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c, conn, sink = build()
    caplog.set_level(logging.WARNING)
    feed = [("d/1/t", b"{"), ("d/1/t", b"{"), ("d/2/t", b"{"), ("d/1/t", b'"warm"'), ("d/1/t", b"20.5"),
            ("d/1/r", b'"R-7"'), ("other/topic", b"1")]  # fmt: skip
    for mid, (topic, payload) in enumerate(feed, 1):
        c._on_message(conn, message(mid, topic, payload))  # type: ignore[arg-type]
    assert sink.batches == [] and conn.acked == []  # nothing before the flush
    c.flush()
    assert c.refused == {"json": 3, "value": 1}
    assert c.health().errors == {"refused.json": 3, "refused.value": 1}
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3  # d/1/t json, d/2/t json, d/1/t value
    (batch,) = sink.batches
    assert [(s.signal, s.value, s.quality) for s in batch.to_samples()] == [
        ("temp", 20.5, 0),
        ("recipe", "R-7", 0),
    ]
    assert batch.text is not None and list(batch.text) == [None, "R-7"]
    assert conn.acked == list(range(1, 8))  # every message, the refused and the ignored ones too, in order
    assert c.ignored == 1 and c.emitted == 2 and c.acked == 7


def test_a_full_batch_is_emitted_at_once_and_qos0_is_not_acknowledged() -> None:
    c, conn, sink = build(max_batch=2)
    c._on_message(conn, message(1, "d/1/t", b"1", qos=0))  # type: ignore[arg-type]
    assert sink.batches == []
    c._on_message(conn, message(2, "d/1/t", b"2"))  # type: ignore[arg-type]
    assert [len(b) for b in sink.batches] == [2] and conn.acked == [2]


def test_acknowledgements_of_a_lost_connection_are_not_sent_on_the_next() -> None:
    c, conn, sink = build()
    c._on_message(conn, message(1, "d/1/t", b"1"))  # type: ignore[arg-type]
    c._conn = FakeConnection()  # type: ignore[assignment]
    c.flush()
    assert len(sink.batches) == 1 and conn.acked == [] and c.acked == 0


def test_sparkplug_data_before_birth_sends_a_rebirth_request() -> None:
    c, conn, _ = build()
    c._on_message(conn, message(1, "spBv1.0/G/NDATA/E", b"\x08\x01\x18\x00"))  # type: ignore[arg-type]
    assert conn.sent == ["spBv1.0/G/NCMD/E"] and c.refused == {"node-not-born": 1}


def test_a_bug_in_mapping_is_counted_and_never_raises_into_paho(monkeypatch: pytest.MonkeyPatch) -> None:
    c, conn, sink = build()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(c.json, "map", broken)
    c._on_message(conn, message(1, "d/1/t", b"1"))  # type: ignore[arg-type]
    c._on_message(conn, message(2, "d/1/t", b"2"))  # type: ignore[arg-type]
    c.flush()
    assert c.refused == {"internal": 2} and conn.acked == [1, 2] and sink.batches == []
