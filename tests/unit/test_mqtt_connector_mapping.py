"""The MQTT source connector's mapping, without a broker: topic filters, value paths, timestamps, quality,
the JSON mapper's rows and refusals, the tag grammar, and Sparkplug B through uns.sparkplug's EdgeNode and
HostDecoder (births give aliases, data before a birth asks for a rebirth, deaths make signals Bad).

The same paths run against a real Mosquitto in tests/integration/test_mqtt_connector.py.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from pydantic import ValidationError

from connectors.mqtt.config import MqttSourceSettings, MqttTag, check_tags
from connectors.mqtt.json_map import JsonMapper, Row
from connectors.mqtt.paths import Refused, covers, follow, matches, minimal_filters, parse_path, to_ns, zone
from connectors.mqtt.sparkplug_map import SparkplugMapper
from shopfloor.batch import SampleBatch
from shopfloor.model import Quality, Signal, SignalType
from uns.sparkplug import DeviceSpec, EdgeConfig, EdgeNode, MessageType, Topic, parse_payload

ASSET = "qijiang/copper/line3/press-1"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
RECV = T0 + 5_000_000_000


def tag(**kw: object) -> MqttTag:
    return MqttTag.model_validate({"asset": ASSET, "signal": "temp", **kw})


# -- topic filters -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("f", "topic", "ok"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/+/c", "a/x/c", True),
        ("a/+/c", "a/x/y/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("a/+", "a/", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_filters_match_like_a_broker(f: str, topic: str, ok: bool) -> None:
    assert matches(f, topic) is ok


def test_covered_filters_are_subscribed_once() -> None:
    assert covers("a/#", "a/+/c") and covers("a/+/c", "a/b/c") and not covers("a/+/c", "a/#")
    assert minimal_filters(["a/b/c", "a/+/c", "x/y", "a/+/c", "a/#"]) == ["x/y", "a/#"]
    assert minimal_filters(["a/+/c", "a/b/+"]) == ["a/+/c", "a/b/+"]  # overlap, neither covers the other


# -- paths ---------------------------------------------------------------------------------------------------
def test_value_paths_in_both_grammars() -> None:
    doc = {"a": {"b": [10, {"c": 3}]}, "odd.key": 7, "x/y": 8, "t~": 9}
    assert parse_path("$") == () and follow(doc, ()) is doc
    assert follow(doc, parse_path("$.a.b[1].c")) == 3
    assert follow(doc, parse_path("a.b[0]")) == 10
    assert follow(doc, parse_path('$["odd.key"]')) == 7
    assert follow(doc, parse_path("/a/b/1/c")) == 3
    assert follow(doc, parse_path("/x~1y")) == 8 and follow(doc, parse_path("/t~0")) == 9
    for bad in ("$.", "$..a", "a[x]", "/a~2"):
        with pytest.raises(ValueError):
            parse_path(bad)


def test_timestamps_in_every_unit_and_iso_8601() -> None:
    assert to_ns(1767225600, "auto", None) == T0
    assert to_ns(Decimal("1767225600.123456789"), "auto", None) == T0 + 123_456_789
    assert to_ns(1767225600123, "auto", None) == T0 + 123_000_000
    assert to_ns(1767225600123456, "auto", None) == T0 + 123_456_000
    assert to_ns(1767225600123456789, "auto", None) == T0 + 123_456_789
    assert to_ns("1767225600123", "auto", None) == T0 + 123_000_000
    assert to_ns(1767225600, "ms", None) == 1767225600 * 10**6  # an explicit unit wins over magnitude
    assert to_ns("2026-01-01T00:00:00Z", "auto", None) == T0
    assert to_ns("2026-01-01T08:00:00.123456789+08:00", "auto", None) == T0 + 123_456_789
    assert to_ns("2026-01-01 08:00:00.5", "auto", zone("Asia/Shanghai")) == T0 + 500_000_000
    for bad in ("2026-01-01T00:00:00", "yesterday", True, None, -5, [1]):
        with pytest.raises(Refused) as exc:
            to_ns(bad, "auto", None)
        assert exc.value.reason == "timestamp"


# -- the JSON mapper -----------------------------------------------------------------------------------------
def mapper(*tags: MqttTag, text: frozenset[int] = frozenset()) -> JsonMapper:
    return JsonMapper(list(enumerate(tags)), text)


def test_a_bare_number_and_an_object_with_paths() -> None:
    m = mapper(
        tag(topic="f/line3/press/+/temperature"),
        tag(
            signal="force",
            topic="f/line3/press/+/state",
            value="$.force",
            timestamp="$.ts",
            scale=0.1,
            offset=-1,
        ),
    )
    assert m.map("f/line3/press/7/temperature", b"812.5", RECV) == ([Row(0, RECV, 812.5, 0)], [])
    rows, refused = m.map("f/line3/press/7/state", b'{"force": 1000, "ts": 1767225600250}', RECV)
    assert rows == [Row(1, T0 + 250_000_000, 99.0, 0)] and refused == []
    assert m.map("f/line3/other", b"1", RECV) == ([], [])


def test_one_message_feeds_every_tag_of_its_topic_and_refusals_are_per_tag() -> None:
    m = mapper(tag(topic="d/1", value="$.t"), tag(signal="p", topic="d/1", value="$.p"))
    rows, refused = m.map("d/1", b'{"t": 20.5}', RECV)
    assert rows == [Row(0, RECV, 20.5, 0)]
    assert [(p.index if p else None, r.reason) for p, r in refused] == [(1, "value-missing")]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "encoding"),
        (b"{not json", "json"),
        (b"NaN", "json"),
        (b'{"v": [1, 2]}', "value"),
        (b'{"v": "warm"}', "value"),
        (b'{"v": 1e400}', "value"),
    ],
)
def test_unusable_messages_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    m = mapper(tag(topic="d/1", value="$.v" if payload.startswith(b"{") else "$"))
    rows, refused = m.map("d/1", payload, RECV)
    assert rows == [] and [r.reason for _, r in refused] == [reason]


def test_values_of_other_json_types() -> None:
    m = mapper(tag(topic="d/1", value="v"))
    assert m.map("d/1", b'{"v": true}', RECV)[0] == [Row(0, RECV, 1.0, 0)]
    assert m.map("d/1", b'{"v": " 23.25 "}', RECV)[0] == [Row(0, RECV, 23.25, 0)]
    (row,), _ = m.map("d/1", b'{"v": null}', RECV)
    assert math.isnan(row.value) and row.quality == Quality.BAD  # the device says: no value
    t = mapper(tag(topic="d/1", value="v"), text=frozenset({0}))
    (row,), _ = t.map("d/1", b'{"v": "recipe-7"}', RECV)
    assert row.text == "recipe-7" and math.isnan(row.value) and row.quality == 0
    (row,), _ = t.map("d/1", b'{"v": 12}', RECV)
    assert row.text == "12"


def test_quality_by_default_codes_and_by_map() -> None:
    m = mapper(tag(topic="d/1", value="v", quality="q"))
    got = [m.map("d/1", json.dumps({"v": 1.5, "q": q}).encode(), RECV) for q in (0, 1, 2, 192, "Bad", True)]
    assert [r[0][0].quality for r in got] == [0, 1, 2, 0, 2, 0]
    assert math.isnan(got[2][0][0].value)  # Bad carries no value
    rows, refused = m.map("d/1", b'{"v": 1, "q": 77}', RECV)
    assert rows == [] and [r.reason for _, r in refused] == ["quality"]
    mapped = mapper(tag(topic="d/1", value="v", quality="q", quality_map={"OK": "good", 3: "uncertain",
                                                                           False: "bad"}))  # fmt: skip
    assert [mapped.map("d/1", json.dumps({"v": 1, "q": q}).encode(), RECV)[0][0].quality
            for q in ("OK", 3, "3", False)] == [0, 1, 1, 2]  # fmt: skip
    assert [r.reason for _, r in mapped.map("d/1", b'{"v": 1, "q": 0}', RECV)[1]] == ["quality"]


def test_a_retained_message_without_its_own_timestamp_is_uncertain() -> None:
    m = mapper(tag(topic="d/1"), tag(signal="p", topic="d/1", value="$", timestamp="$"))
    rows, _ = m.map("d/1", b"1767225600", RECV, retained=True)
    assert rows == [Row(0, RECV, 1767225600.0, 1), Row(1, T0, 1767225600.0, 0)]


# -- the tag grammar -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({}, "exactly one"),
        ({"topic": "a/b", "sparkplug": {"group": "G", "edge_node": "E", "metric": "m"}}, "exactly one"),
        ({"topic": "a/#/b"}, "'#'"),
        ({"topic": "a/b+"}, "'+'"),
        ({"topic": "spBv1.0/G/NDATA/E"}, "sparkplug:"),
        ({"topic": "a", "value": "$..x"}, "not a path"),
        ({"topic": "a", "timezone": "Mars/Olympus"}, "time zone"),
        ({"topic": "a", "quality_map": {"0": "good"}}, "needs 'quality'"),
        ({"topic": "a", "quality": "q", "quality_map": {"0": "fine"}}, "quality_map"),
        ({"sparkplug": {"group": "G", "edge_node": "E", "metric": "m"}, "value": "$.v"}, "JSON tags"),
        ({"sparkplug": {"group": "G/x", "edge_node": "E", "metric": "m"}}, "Sparkplug id"),
        ({"topic": "a", "unknown": 1}, "unknown"),
    ],
)
def test_bad_tags_are_refused_with_the_reason(kw: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        tag(**kw)
    assert words.lower() in str(exc.value).lower()


def test_settings_reuse_the_publishers_broker_rules() -> None:
    ok = MqttSourceSettings.model_validate({"url": "mqtts://edge@broker:8883", "password_env": "P",
                                            "tls": {"ca_file": "/ca.pem"}, "session_expiry_s": 3600})  # fmt: skip
    assert ok.broker_settings().user == "edge" and ok.broker_settings().broker.tls
    for bad, words in (
        ({"url": "mqtt://u:pw@h"}, "may not carry a password"),
        ({"url": "http://h"}, "mqtt://"),
        ({"url": "mqtt://h", "tls": {"ca_file": "/ca.pem"}}, "mqtts://"),
        ({"url": "mqtt://h", "password_env": "P"}, "needs a user name"),
        ({"url": "mqtt://h", "password": "x"}, "secrets may not be written"),
        ({"url": "mqtt://h", "sparkplug_host_id": "a/b"}, "sparkplug_host_id"),
    ):
        with pytest.raises(ValidationError) as exc:
            MqttSourceSettings.model_validate(bad)
        assert words in str(exc.value), (bad, str(exc.value))


def test_one_tag_per_signal_and_per_metric() -> None:
    sp = {"group": "G", "edge_node": "E", "device": "D", "metric": "m"}
    tags = [tag(topic="a"), tag(topic="b"), tag(signal="x", sparkplug=sp), tag(signal="y", sparkplug=sp)]
    s = MqttSourceSettings(url="mqtt://h")
    assert [loc for loc, _ in check_tags(s, tags)] == [("tags", 1, "signal"), ("tags", 3, "sparkplug")]


# -- Sparkplug B ---------------------------------------------------------------------------------------------
EDGE_ASSET = "G/area/line/press"  # the third party's own naming: device "area:line:press" of group G
DEVICE = "area:line:press"


def sp_tag(signal: str, metric: str, device: str | None = DEVICE, **kw: object) -> MqttTag:
    address = {"group": "G", "edge_node": "E", "device": device, "metric": metric}
    return MqttTag.model_validate({"asset": ASSET, "signal": signal, "sparkplug": address, **kw})


def edge() -> EdgeNode:
    return EdgeNode(EdgeConfig("G", "E"), clock=lambda: T0)


def batch(rows: list[tuple[str, int, float, int]]) -> SampleBatch:
    keys = sorted({r[0] for r in rows})
    return SampleBatch.from_columns([(EDGE_ASSET, k) for k in keys], [keys.index(r[0]) for r in rows],
                                    [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])  # fmt: skip


def test_sparkplug_births_give_aliases_and_data_maps_by_them() -> None:
    m = SparkplugMapper([(0, sp_tag("temp", "temp", scale=2.0)), (1, sp_tag("force", "force"))])
    e = edge()
    e.will()
    signals = (Signal("temp"), Signal("force"), Signal("other"))
    births = e.birth([DeviceSpec(EDGE_ASSET, signals)])
    assert all(m.handles(b.topic) for b in births)
    for b in births:
        assert m.feed(b.topic, b.payload, RECV).refused == []
    rows = []
    for msg in e.data(batch([("temp", T0 + 1, 10.5, 0), ("force", T0 + 2, 7.0, 1), ("other", T0 + 3, 1, 0)])):
        assert Topic.parse(msg.topic).message_type is MessageType.DDATA
        res = m.feed(msg.topic, msg.payload, RECV)
        assert res.refused == [] and res.publish == []
        rows += res.rows
    assert sorted(rows) == [Row(0, T0 + 1, 21.0, 0), Row(1, T0 + 2, 7.0, 1)]  # 'other' is not mapped


def test_sparkplug_data_before_a_birth_asks_for_a_rebirth_and_is_dropped() -> None:
    m = SparkplugMapper([(0, sp_tag("temp", "temp"))])
    e = edge()
    e.will()
    births = e.birth([DeviceSpec(EDGE_ASSET, (Signal("temp"),))])
    (data,) = e.data(batch([("temp", T0 + 1, 10.5, 0)]))
    res = m.feed(data.topic, data.payload, RECV)  # the connector came up after the edge's birth
    assert res.rows == [] and [r.reason for _, r in res.refused] == ["node-not-born"]
    (ncmd,) = res.publish
    assert ncmd.topic == "spBv1.0/G/NCMD/E"
    assert [(x.name, x.boolean_value) for x in parse_payload(ncmd.payload).metrics] == [
        ("Node Control/Rebirth", True)
    ]
    assert m.feed(data.topic, data.payload, RECV).publish == []  # asked once per rebirth_retry
    reply = e.on_command(ncmd.topic, ncmd.payload)
    assert [Topic.parse(x.topic).message_type for x in reply] == [MessageType.NBIRTH, MessageType.DBIRTH]
    assert births[1].topic == reply[1].topic
    rows = [r for x in reply for r in m.feed(x.topic, x.payload, RECV).rows]
    assert rows == [Row(0, T0 + 1, 10.5, 0)]  # the birth repeats the last value, with its timestamp


def test_sparkplug_deaths_make_the_signals_bad_after_their_last_sample() -> None:
    node_tag = sp_tag("uptime", "uptime", device=None)
    m = SparkplugMapper([(0, sp_tag("temp", "temp")), (1, node_tag)])
    e = edge()
    e.will()
    for b in e.birth([DeviceSpec(EDGE_ASSET, (Signal("temp"),))]):
        m.feed(b.topic, b.payload, RECV)
    (data,) = e.data(batch([("temp", RECV + 10, 1.0, 0)]))  # an edge clock ahead of the connector's
    assert m.feed(data.topic, data.payload, RECV).rows == [Row(0, RECV + 10, 1.0, 0)]
    (dd,) = e.device_death(EDGE_ASSET)
    rows = m.feed(dd.topic, dd.payload, RECV + 5).rows
    assert len(rows) == 1 and rows[0][:2] == (0, RECV + 11) and math.isnan(rows[0].value)
    assert rows[0].quality == Quality.BAD
    nd = e.death()
    rows = m.feed(nd.topic, nd.payload, RECV + 20).rows  # temp is Bad already; the node metric goes Bad
    assert [(r.tag, r.ts_ns, r.quality) for r in rows] == [(1, RECV + 20, 2)]
    assert m.connection_lost(RECV + 30) == []  # nothing left to mark


def test_sparkplug_text_metric_and_type_mismatch() -> None:
    m = SparkplugMapper([(0, sp_tag("recipe", "recipe")), (1, sp_tag("temp", "temp"))], frozenset({0}))
    e = edge()
    e.will()
    sigs = (Signal("recipe", type=SignalType.TEXT), Signal("temp", type=SignalType.TEXT))
    for b in e.birth([DeviceSpec(EDGE_ASSET, sigs)]):
        m.feed(b.topic, b.payload, RECV)
    keys = [(EDGE_ASSET, "recipe"), (EDGE_ASSET, "temp")]
    (msg,) = e.data(SampleBatch.from_columns(keys, [0, 1], [T0, T0], [math.nan, math.nan], 0, ["r-7", "hot"]))
    res = m.feed(msg.topic, msg.payload, RECV)
    assert [(r.tag, r.text) for r in res.rows] == [(0, "r-7")]
    assert [r.reason for _, r in res.refused] == ["type-mismatch"]


def test_malformed_sparkplug_is_refused_not_raised() -> None:
    m = SparkplugMapper([(0, sp_tag("temp", "temp"))])
    res = m.feed("spBv1.0/G/DDATA/E/" + DEVICE, b"\xff\xff\xff", RECV)
    assert res.rows == [] and [r.reason for _, r in res.refused] == ["not-protobuf"]
    assert not m.handles("spBv1.0/OTHER/DDATA/E/x") and not m.handles("factory/x")
    assert m.filters() == ["spBv1.0/G/+/E", "spBv1.0/G/+/E/+"]
