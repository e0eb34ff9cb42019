"""Sparkplug B encoding and the edge node / host state machines, checked against Eclipse Sparkplug 3.0.0.

Pure code: no broker. Each test names the rule of the specification it checks where there is one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pytest

from shopfloor.batch import SampleBatch
from shopfloor.model import Quality, SeriesKey, Signal, SignalType
from uns import sparkplug_b_pb2 as pb
from uns.sparkplug import (
    BDSEQ_METRIC,
    NANOS_PROPERTY,
    QUALITY_PROPERTY,
    REBIRTH_METRIC,
    DataType,
    DeviceSpec,
    EdgeConfig,
    EdgeNode,
    EncodeError,
    HostDecoder,
    InvalidTopic,
    MalformedPayload,
    MessageType,
    NoticeKind,
    SessionError,
    SparkplugError,
    SparkplugMessage,
    Topic,
    _scan_metrics,  # the vectorised reader, checked against the protobuf runtime
    asset_for,
    device_id_for,
    host_state,
    parse_state,
    rebirth_request,
)

SITE = "qijiang"
MILL = "qijiang/copper/hot-rolling/mill-1"
CASTER = "qijiang/copper/casting/caster-1"
T0 = 1_780_000_000_000_000_000  # ns, a whole millisecond


def clock() -> Callable[[], int]:
    """A deterministic clock: 1 ms and a bit per reading."""
    state = [T0]

    def now() -> int:
        state[0] += 1_000_037
        return state[0]

    return now


def edge(**kw: object) -> EdgeNode:
    return EdgeNode(EdgeConfig(SITE, "edge-1", **kw), clock=clock())  # type: ignore[arg-type]


MILL_SIGNALS = (
    Signal("roll_force", "kN"),
    Signal("parts", type=SignalType.INT),
    Signal("state", type=SignalType.STATE),
    Signal("running", type=SignalType.BOOL),
    Signal("recipe", type=SignalType.TEXT),
)


def connected(node: EdgeNode | None = None) -> tuple[EdgeNode, SparkplugMessage, list[SparkplugMessage]]:
    node = node or edge()
    will = node.will()
    births = node.birth([DeviceSpec(MILL, MILL_SIGNALS), DeviceSpec(CASTER, (Signal("melt_temp", "C"),))])
    return node, will, births


def payload(msg: SparkplugMessage) -> pb.Payload:
    p = pb.Payload()
    p.ParseFromString(msg.payload)
    return p


def kind(msg: SparkplugMessage) -> MessageType:
    return Topic.parse(msg.topic).message_type


def metric(p: pb.Payload, name: str) -> pb.Payload.Metric:
    found = [m for m in p.metrics if m.name == name]
    assert len(found) == 1, f"{name} appears {len(found)} times"
    return found[0]


def feed_all(host: HostDecoder, msgs: list[SparkplugMessage]) -> list:
    return [host.feed(m.topic, m.payload) for m in msgs]


def by_series(batch: SampleBatch) -> dict[tuple[str, str], list[tuple[int, object, int]]]:
    """Each series' rows in order: (ts, value or text, quality); NaN as the string 'nan' so rows compare."""
    out: dict[tuple[str, str], list[tuple[int, object, int]]] = defaultdict(list)
    for s in batch.to_samples():
        v: object = s.value
        if isinstance(v, float) and math.isnan(v):
            v = "nan"
        out[(s.asset, s.signal)].append((s.ts_ns, v, int(s.quality)))
    return dict(out)


def data_samples(results: list, msgs: list[SparkplugMessage]) -> SampleBatch:
    """The samples decoded from the DDATA messages only (births repeat last values)."""
    return SampleBatch.concat(
        [r.samples for r, m in zip(results, msgs) if kind(m) is MessageType.DDATA and len(r.samples)]
    )


# -- the payload definition --------------------------------------------------------------------------------
def test_the_proto_has_the_specifications_field_numbers_and_types() -> None:
    f = pb.Payload.DESCRIPTOR.fields_by_name
    assert {n: (f[n].number, f[n].type) for n in ("timestamp", "metrics", "seq", "uuid", "body")} == {
        "timestamp": (1, 4),  # TYPE_UINT64
        "metrics": (2, 11),  # TYPE_MESSAGE
        "seq": (3, 4),
        "uuid": (4, 9),  # TYPE_STRING
        "body": (5, 12),  # TYPE_BYTES
    }
    m = pb.Payload.Metric.DESCRIPTOR.fields_by_name
    spec = {
        "name": (1, 9), "alias": (2, 4), "timestamp": (3, 4), "datatype": (4, 13), "is_historical": (5, 8),
        "is_transient": (6, 8), "is_null": (7, 8), "metadata": (8, 11), "properties": (9, 11),
        "int_value": (10, 13), "long_value": (11, 4), "float_value": (12, 2), "double_value": (13, 1),
        "boolean_value": (14, 8), "string_value": (15, 9), "bytes_value": (16, 12), "dataset_value": (17, 11),
        "template_value": (18, 11), "extension_value": (19, 11),
    }  # fmt: skip
    assert {n: (m[n].number, m[n].type) for n in spec} == spec
    assert [fd.name for fd in pb.Payload.Metric.DESCRIPTOR.oneofs_by_name["value"].fields] == list(spec)[9:]
    pv = pb.Payload.PropertyValue.DESCRIPTOR.fields_by_name
    assert [(n, pv[n].number) for n in ("type", "is_null", "int_value", "long_value", "string_value")] == [
        ("type", 1), ("is_null", 2), ("int_value", 3), ("long_value", 4), ("string_value", 8),
    ]  # fmt: skip
    ps = pb.Payload.PropertySet.DESCRIPTOR.fields_by_name
    assert (ps["keys"].number, ps["values"].number) == (1, 2)
    names = ["Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float", "Double",
             "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes", "File", "Template", "PropertySet",
             "PropertySetList", "Int8Array", "Int16Array", "Int32Array", "Int64Array", "UInt8Array", "UInt16Array",
             "UInt32Array", "UInt64Array", "FloatArray", "DoubleArray", "BooleanArray", "StringArray",
             "DateTimeArray"]  # fmt: skip
    assert [pb.DataType.Name(i) for i in range(len(names))] == names
    assert [int(d) for d in DataType] == list(range(len(names)))


def test_a_metric_is_the_bytes_the_specification_defines() -> None:
    """Wire check by hand: DDATA metric {alias 5, timestamp 1000, double 1.5} and the payload seq."""
    node, _, _ = connected()
    msg = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [1_000_000_000], [1.5]))[0]
    alias = node.aliases[SeriesKey(MILL, "roll_force")]
    body = bytes([0x10, alias, 0x18, 0xE8, 0x07, 0x69]) + np.float64(1.5).tobytes()  # alias=2 ts=3 double=13
    assert bytes([0x12, len(body)]) + body in msg.payload
    assert payload(msg).seq == 3  # NBIRTH 0, DBIRTH 1, DBIRTH 2


# -- topics ----------------------------------------------------------------------------------------------------
def test_topics_are_built_and_parsed_in_the_sparkplug_namespace() -> None:
    assert str(Topic.node(MessageType.NBIRTH, "g", "e")) == "spBv1.0/g/NBIRTH/e"
    assert str(Topic.device(MessageType.DDATA, "g", "e", "d")) == "spBv1.0/g/DDATA/e/d"
    assert str(Topic.state("scada-1")) == "spBv1.0/STATE/scada-1"
    for t in ("spBv1.0/g/NDEATH/e", "spBv1.0/g/DBIRTH/e/d", "spBv1.0/g/NCMD/e", "spBv1.0/STATE/h"):
        assert str(Topic.parse(t)) == t
    assert Topic.parse("spBv1.0/g/DCMD/e/d").device_id == "d"


@pytest.mark.parametrize("bad", ["a/b", "a+b", "a#", "", "nul\x00"])
def test_ids_with_topic_separators_or_wildcards_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTopic):
        Topic.node(MessageType.NBIRTH, bad, "e")
    with pytest.raises(InvalidTopic):
        Topic.device(MessageType.DBIRTH, "g", "e", bad)
    with pytest.raises(InvalidTopic):
        Topic.state(bad)
    with pytest.raises(InvalidTopic):
        EdgeConfig("g", bad)


@pytest.mark.parametrize(
    "topic",
    [
        "spAv1.0/g/NBIRTH/e",  # another namespace
        "spBv1.0/g/NBIRTH/e/d",  # a node message with a device
        "spBv1.0/g/DDATA/e",  # a device message without one
        "spBv1.0/g/NFOO/e",  # unknown type
        "spBv1.0/g/NBIRTH",  # too short
        "spBv1.0/g/STATE/e",  # STATE is spBv1.0/STATE/<host>
        "qijiang/copper/mill-1/roll_force",  # the plain-JSON tree
    ],
)
def test_topics_outside_the_namespace_are_refused(topic: str) -> None:
    with pytest.raises(InvalidTopic):
        Topic.parse(topic)


def test_a_device_id_is_the_asset_path_below_the_site_and_maps_back() -> None:
    assert device_id_for(MILL, SITE) == "copper:hot-rolling:mill-1"
    assert asset_for(SITE, "copper:hot-rolling:mill-1") == MILL
    other = "tianjin/al/extrusion/press-2"
    assert device_id_for(other, SITE) == ":tianjin:al:extrusion:press-2"
    assert asset_for(SITE, device_id_for(other, SITE)) == other
    for asset in (MILL, other, "a/b", "site_1/x.y/z-1/_q"):
        d = device_id_for(asset, SITE)
        assert Topic.device(MessageType.DDATA, SITE, "e", d).device_id == d  # a valid topic level
        assert asset_for(SITE, d) == asset
    with pytest.raises(SparkplugError):
        asset_for(SITE, "bad id with spaces")


# -- the edge node: births and deaths ---------------------------------------------------------------------------
def test_the_will_is_an_ndeath_with_the_sessions_bdseq_and_no_seq() -> None:
    _node, will, births = connected()
    assert will.topic == "spBv1.0/qijiang/NDEATH/edge-1"
    assert (will.qos, will.retain) == (1, False)  # tck-id-payloads-ndeath-will-message-qos/-retain
    p = payload(will)
    assert not p.HasField("seq")  # tck-id-payloads-ndeath-seq
    assert [m.name for m in p.metrics] == [BDSEQ_METRIC]  # tck-id-topics-ndeath-payload
    bd = metric(p, BDSEQ_METRIC)
    assert bd.datatype == DataType.INT64
    nbirth = payload(births[0])
    assert (
        metric(nbirth, BDSEQ_METRIC).long_value == bd.long_value == 0
    )  # tck-id-topics-nbirth-bdseq-matching


def test_nbirth_comes_first_with_seq_0_bdseq_and_the_rebirth_metric_then_dbirths() -> None:
    _node, _, births = connected()
    assert [kind(m) for m in births] == [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DBIRTH]
    assert births[0].topic == "spBv1.0/qijiang/NBIRTH/edge-1"
    assert births[1].topic == "spBv1.0/qijiang/DBIRTH/edge-1/copper:hot-rolling:mill-1"
    assert [payload(m).seq for m in births] == [0, 1, 2]
    assert all((m.qos, m.retain) == (0, False) for m in births)  # tck-id-payloads-nbirth-qos, dbirth-qos
    nb = payload(births[0])
    assert nb.HasField("timestamp")
    rebirth = metric(nb, REBIRTH_METRIC)
    assert rebirth.datatype == DataType.BOOLEAN and rebirth.boolean_value is False
    assert not rebirth.HasField("alias")  # tck-id-operational-behavior-data-commands-rebirth-name-aliases
    db = payload(births[1])
    assert [m.name for m in db.metrics] == [s.name for s in MILL_SIGNALS]
    types = {m.name: m.datatype for m in db.metrics}
    assert types == {"roll_force": 10, "parts": 4, "state": 3, "running": 11, "recipe": 12}
    for m in db.metrics:  # name, alias, datatype, timestamp; no value yet: null (tck-...-dbirth-values)
        assert m.HasField("alias") and m.HasField("timestamp") and m.is_null
        assert m.WhichOneof("value") is None


def test_bdseq_counts_connects_and_wraps_after_255() -> None:
    node = edge()
    seen = []
    for _ in range(258):
        will = node.will()
        birth = node.birth()[0]
        seen.append(metric(payload(will), BDSEQ_METRIC).long_value)
        assert metric(payload(birth), BDSEQ_METRIC).long_value == seen[-1]
    assert seen[:3] == [0, 1, 2] and seen[255:] == [255, 0, 1]
    assert node.next_bd_seq == 2


def test_seq_rises_by_one_per_message_and_wraps_255_to_0() -> None:
    node, _, births = connected()
    seqs = [payload(m).seq for m in births]
    key = [(MILL, "roll_force")]
    for i in range(300):
        seqs += [payload(m).seq for m in node.data(SampleBatch.from_columns(key, [0], [T0 + i], [float(i)]))]
    assert seqs == [i % 256 for i in range(len(seqs))]
    assert 255 in seqs and seqs.count(0) == 2


def test_data_uses_aliases_only_with_a_timestamp_per_metric() -> None:
    node, _, _births = connected()
    batch = SampleBatch.from_columns(
        [(MILL, "roll_force"), (MILL, "recipe"), (CASTER, "melt_temp")],
        [0, 2, 0, 1],
        [T0 + 1, T0 + 2_000_000, T0 + 3_000_000, T0 + 4_000_000],
        [10.0, 1210.0, 11.0, math.nan],
        text=[None, None, None, "CuSn6"],
    )
    out = node.data(batch)
    assert [m.topic for m in out] == [
        "spBv1.0/qijiang/DDATA/edge-1/copper:hot-rolling:mill-1",
        "spBv1.0/qijiang/DDATA/edge-1/copper:casting:caster-1",
    ]
    mill = payload(out[0])
    aliases = node.aliases
    assert [m.alias for m in mill.metrics] == [
        aliases[SeriesKey(MILL, s)] for s in ("roll_force", "roll_force", "recipe")
    ]
    for m in mill.metrics:  # tck-id-payloads-alias-data-cmd-requirement, name-birth-data-requirement
        assert not m.HasField("name") and not m.HasField("datatype") and m.HasField("timestamp")
    assert [m.double_value for m in mill.metrics[:2]] == [10.0, 11.0]  # two samples of one metric, in order
    assert mill.metrics[2].string_value == "CuSn6"


def test_aliases_are_unique_in_the_node_and_stable_over_rebirths_and_reconnects() -> None:
    node, _, births = connected()

    def birth_aliases(msgs: list[SparkplugMessage]) -> dict[tuple[str, str], int]:
        out = {}
        for m in msgs:
            t = Topic.parse(m.topic)
            if t.message_type is MessageType.DBIRTH:
                for pm in payload(m).metrics:
                    out[(t.device_id, pm.name)] = pm.alias
        return out

    first = birth_aliases(births)
    assert len(first) == 6 and len(set(first.values())) == 6
    again = birth_aliases(
        node.on_command("spBv1.0/qijiang/NCMD/edge-1", rebirth_request(SITE, "edge-1").payload)
    )
    node.will()
    reconnect = birth_aliases(node.birth())
    assert first == again == reconnect


def test_ncmd_rebirth_republishes_every_birth_from_seq_0_with_the_same_bdseq() -> None:
    node, will, _births = connected()
    node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0 + 5_000_000], [42.0]))
    ncmd = rebirth_request(SITE, "edge-1")
    assert ncmd.topic == "spBv1.0/qijiang/NCMD/edge-1" and (ncmd.qos, ncmd.retain) == (0, False)
    cmd = payload(ncmd)
    assert not cmd.HasField("seq") and cmd.HasField("timestamp")  # tck-id-payloads-ncmd-seq, -timestamp
    assert metric(cmd, REBIRTH_METRIC).boolean_value is True
    out = node.on_command(ncmd.topic, ncmd.payload)
    assert [kind(m) for m in out] == [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DBIRTH]
    assert [payload(m).seq for m in out] == [0, 1, 2]
    bd = metric(payload(out[0]), BDSEQ_METRIC).long_value
    assert bd == metric(payload(will), BDSEQ_METRIC).long_value  # tck-...-rebirth-action-3
    force = metric(payload(out[1]), "roll_force")  # a birth carries the current value
    assert force.double_value == 42.0 and force.timestamp == (T0 + 5_000_000) // 1_000_000


def test_commands_that_are_not_a_rebirth_request_change_nothing() -> None:
    node, _, _ = connected()
    no = pb.Payload(timestamp=1)
    no.metrics.add(name=REBIRTH_METRIC, boolean_value=False)
    assert node.on_command("spBv1.0/qijiang/NCMD/edge-1", no.SerializeToString()) == []
    yes = rebirth_request(SITE, "edge-1").payload
    assert node.on_command("spBv1.0/qijiang/NCMD/edge-2", yes) == []  # another node's
    assert node.on_command("spBv1.0/qijiang/DCMD/edge-1/copper:casting:caster-1", yes) == []  # read-only edge
    with pytest.raises(MalformedPayload):
        node.on_command("spBv1.0/qijiang/NCMD/edge-1", b"\xff\xff\xff")
    nxt = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0]))
    assert payload(nxt[0]).seq == 3  # nothing was published in between


def test_calls_out_of_order_are_refused() -> None:
    node = edge()
    with pytest.raises(SessionError):
        node.birth()
    node.will()
    with pytest.raises(SessionError):
        node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0]))


def test_a_metric_not_yet_born_triggers_a_full_rebirth_before_its_data() -> None:
    node, will, _births = connected()
    out = node.data(
        SampleBatch.from_columns([(MILL, "roll_force"), (MILL, "exit_gauge")], [0, 1], [T0, T0], [1.0, 2.5])
    )
    assert [kind(m) for m in out] == [
        MessageType.NBIRTH,
        MessageType.DBIRTH,
        MessageType.DBIRTH,
        MessageType.DDATA,
    ]
    assert [payload(m).seq for m in out] == [0, 1, 2, 3]
    assert metric(payload(out[0]), BDSEQ_METRIC).long_value == metric(payload(will), BDSEQ_METRIC).long_value
    gauge = metric(payload(out[1]), "exit_gauge")
    assert gauge.datatype == DataType.DOUBLE and gauge.alias == node.aliases[SeriesKey(MILL, "exit_gauge")]
    # a new device too
    out = node.data(
        SampleBatch.from_columns([("qijiang/copper/annealing/furnace-1", "zone_1")], [0], [T0], [800.0])
    )
    assert [kind(m) for m in out][-1] is MessageType.DDATA and len(out) == 5
    assert out[3].topic.endswith("/copper:annealing:furnace-1")


def test_an_integer_signal_given_a_fraction_widens_to_double_and_keeps_the_value() -> None:
    node, _, _ = connected()
    host = HostDecoder(clock=clock())
    feed_all(host, node.birth())
    out = node.data(
        SampleBatch.from_columns(
            [(MILL, "parts"), (MILL, "running")], [0, 1, 0], [T0, T0, T0 + 1], [7, 1, 7.5]
        )
    )
    assert kind(out[0]) is MessageType.NBIRTH
    assert metric(payload(out[1]), "parts").datatype == DataType.DOUBLE
    assert metric(payload(out[1]), "running").datatype == DataType.BOOLEAN
    got = data_samples(feed_all(host, out), out)
    assert by_series(got)[(MILL, "parts")] == [(T0, 7.0, 0), (T0 + 1, 7.5, 0)]
    assert by_series(got)[(MILL, "running")] == [(T0, 1.0, 0)]


def test_a_batch_sparkplug_cannot_carry_is_refused_and_changes_nothing() -> None:
    node, _, _ = connected()
    before = node.aliases
    with pytest.raises(EncodeError) as bad:
        node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [math.nan], text=["text"]))
    assert bad.value.reason == "type-mismatch"
    with pytest.raises(EncodeError):
        node.data(SampleBatch.from_columns([(MILL, "recipe")], [0], [T0], [1.0]))  # a number on a text metric
    with pytest.raises(EncodeError):
        node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [-1], [1.0]))  # before 1970
    with pytest.raises(EncodeError):
        node.data(
            SampleBatch.from_columns([(MILL, "new_one"), ("not a path", "x")], [0, 1], [T0, T0], [1.0, 2.0])
        )
    assert node.aliases == before
    out = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0]))
    assert [kind(m) for m in out] == [MessageType.DDATA] and payload(out[0]).seq == 3


def test_a_device_that_goes_away_gets_a_ddeath_and_returns_with_its_aliases() -> None:
    node, _, births = connected()
    host = HostDecoder(clock=clock())
    feed_all(host, births)
    alias = node.aliases[SeriesKey(CASTER, "melt_temp")]
    dd = node.device_death(CASTER)
    assert [m.topic for m in dd] == ["spBv1.0/qijiang/DDEATH/edge-1/copper:casting:caster-1"]
    assert payload(dd[0]).seq == 3 and payload(dd[0]).HasField("timestamp")  # tck-id-payloads-ddeath-seq
    r = host.feed(dd[0].topic, dd[0].payload)
    assert [n.kind for n in r.notices] == [NoticeKind.DEVICE_DEAD]
    status = host.node(SITE, "edge-1")
    assert status is not None and status.devices_online == ("copper:hot-rolling:mill-1",)
    assert node.device_death(CASTER) == []
    out = node.data(SampleBatch.from_columns([(CASTER, "melt_temp")], [0], [T0], [1200.0]))
    assert [kind(m) for m in out] == [
        MessageType.NBIRTH,
        MessageType.DBIRTH,
        MessageType.DBIRTH,
        MessageType.DDATA,
    ]
    assert payload(out[-1]).metrics[0].alias == alias
    assert len(data_samples(feed_all(host, out), out)) == 1


def test_historical_data_is_flagged_and_large_batches_split_in_order() -> None:
    node, _, _ = connected(edge(max_metrics_per_message=4))
    n = 10
    batch = SampleBatch.from_columns(
        [(MILL, "roll_force")], [0] * n, T0 + np.arange(n) * 1_000_000, np.arange(n)
    )
    out = node.data(batch, historical=True)
    assert [len(payload(m).metrics) for m in out] == [4, 4, 2]
    assert [payload(m).seq for m in out] == [3, 4, 5]
    values = [pm.double_value for m in out for pm in payload(m).metrics]
    assert values == list(range(n))
    assert all(pm.is_historical for m in out for pm in payload(m).metrics)


def test_qos_1_can_be_chosen_for_births_and_data() -> None:
    node, will, births = connected(edge(qos=1))
    out = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0]))
    assert {m.qos for m in births + out} == {1} and will.qos == 1


def test_the_ddata_encoder_writes_what_protobuf_writes() -> None:
    """The numpy wire encoder against the protobuf runtime, byte for byte, on random rows of every datatype."""
    rng = np.random.default_rng(7)
    node, _, _ = connected()
    aliases = node.aliases
    keys = [(MILL, s.name) for s in MILL_SIGNALS]
    dtypes = {
        "roll_force": "double_value",
        "parts": "long_value",
        "state": "int_value",
        "running": "boolean_value",
    }
    for historical in (False, True):
        n = 500
        series = rng.integers(0, len(keys), n)
        ts = rng.integers(0, 2**62, n)
        ts[rng.random(n) < 0.5] //= 1000
        value = rng.normal(0, 1e6, n)
        text: list[str | None] = [None] * n
        for i, k in enumerate(series):
            name = keys[k][1]
            if name in ("parts", "state"):
                value[i] = float(rng.integers(-(2**31), 2**31))
            elif name == "running":
                value[i] = float(rng.integers(0, 2))
            elif name == "recipe":
                value[i] = math.nan
                text[i] = "x" * int(rng.integers(0, 300)) + "é" if rng.random() < 0.9 else None
        value[rng.random(n) < 0.1] = math.nan
        quality = rng.integers(0, 3, n)
        batch = SampleBatch.from_columns(keys, series, ts, value, quality, text)
        (msg,) = node.data(batch, historical=historical)
        got = payload(msg)
        want = pb.Payload(timestamp=got.timestamp, seq=got.seq)
        for k, t, v, q, txt in zip(
            series.tolist(), ts.tolist(), batch.value.tolist(), quality.tolist(), text
        ):
            name = keys[k][1]
            m = want.metrics.add(alias=aliases[SeriesKey(MILL, name)], timestamp=t // 1_000_000)
            if historical:
                m.is_historical = True
            if txt is None and math.isnan(v):
                m.is_null = True
            if q:
                m.properties.keys.append(QUALITY_PROPERTY)
            if t % 1_000_000:
                m.properties.keys.append(NANOS_PROPERTY)
            if q:
                m.properties.values.add(type=DataType.INT32, int_value=(500, 0)[q - 1])
            if t % 1_000_000:
                m.properties.values.add(type=DataType.UINT32, int_value=t % 1_000_000)
            if m.is_null:
                continue
            if name == "recipe":
                m.string_value = txt
            elif dtypes[name] == "double_value":
                m.double_value = v
            elif dtypes[name] == "boolean_value":
                m.boolean_value = v == 1
            elif dtypes[name] == "long_value":
                m.long_value = int(v) & (2**64 - 1)
            else:
                m.int_value = int(v) & (2**32 - 1)
        assert got == want
        assert msg.payload == want.SerializeToString()


# -- quality and time on the wire -----------------------------------------------------------------------------
def test_quality_travels_in_the_quality_property_and_sub_ms_in_shopfloor_ns() -> None:
    node, _, _ = connected()
    batch = SampleBatch.from_columns(
        [(MILL, "roll_force")],
        [0, 0, 0],
        [T0, T0 + 1_234_567, T0 + 2_000_000],
        [1.0, math.nan, 3.0],
        [0, 2, 1],
    )
    ms = payload(node.data(batch)[0]).metrics
    assert not ms[0].HasField("properties")  # good, whole ms: nothing extra
    assert ms[1].is_null and ms[1].WhichOneof("value") is None
    props = {k: v for k, v in zip(ms[1].properties.keys, ms[1].properties.values)}
    assert props[QUALITY_PROPERTY].type == DataType.INT32 and props[QUALITY_PROPERTY].int_value == 0
    assert props[NANOS_PROPERTY].type == DataType.UINT32 and props[NANOS_PROPERTY].int_value == 234_567
    assert ms[1].timestamp == (T0 + 1_234_567) // 1_000_000
    assert list(ms[2].properties.keys) == [QUALITY_PROPERTY] and ms[2].properties.values[0].int_value == 500


# -- the host decoder -------------------------------------------------------------------------------------------
def test_decoding_ddata_gives_back_exactly_the_batch_encoded() -> None:
    node, _, births = connected()
    host = HostDecoder(clock=clock())
    assert all(len(r.samples) == 0 for r in feed_all(host, births))  # births before any value: all null
    batch = SampleBatch.from_columns(
        [
            (MILL, "roll_force"),
            (MILL, "parts"),
            (MILL, "state"),
            (MILL, "running"),
            (MILL, "recipe"),
            (CASTER, "melt_temp"),
        ],
        [0, 1, 2, 3, 4, 5, 0, 1, 4, 2],
        [T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5, T0 + 6, T0 + 7_000_001, T0 + 8, T0 + 9, T0 + 10],
        [1.25, -(2.0**53), -7, 1, math.nan, 1.0e300, math.nan, 2.0**53, math.nan, 2.0**31 - 1],
        [0, 0, 1, 0, 0, 0, 2, 0, 2, 0],
        [None, None, None, None, "CuSn6 铜", None, None, None, None, None],
    )
    out = node.data(batch)
    results = feed_all(host, out)
    assert all(not r.quarantined and not r.publish for r in results)
    assert by_series(data_samples(results, out)) == by_series(batch)


def test_random_batches_round_trip_exactly() -> None:
    """Property-style: random series of every signal type, values, qualities and ns timestamps, fixed seed."""
    rng = np.random.default_rng(20261201)
    node, _, births = connected()
    host = HostDecoder(clock=clock())
    feed_all(host, births)
    assets = [f"{SITE}/line-{i}/cell/asset-{j}" for i in range(3) for j in range(3)] + [
        "tianjin/al/press/p-1"
    ]
    types = list(SignalType)
    kinds: dict[tuple[str, str], SignalType] = {}
    for _ in range(25):
        keys = list(
            dict.fromkeys((assets[int(rng.integers(10))], f"s{int(rng.integers(60))}") for _ in range(20))
        )
        new = [k for k in keys if k not in kinds]
        for k in new:
            kinds[k] = types[int(rng.integers(len(types)))]
        if new and rng.random() < 0.5:  # declared with their type, or first seen in data (then float or text)
            specs: dict[str, list[Signal]] = defaultdict(list)
            for a, s in new:
                specs[a].append(Signal(s, type=kinds[(a, s)]))
            feed_all(host, node.birth([DeviceSpec(a, tuple(sigs)) for a, sigs in specs.items()]))
        n = int(rng.integers(1, 300))
        series = rng.integers(0, len(keys), n)
        ts = rng.integers(T0, T0 + 10**12, n)
        ts[rng.random(n) < 0.3] //= 1000  # some sources stamp whole microseconds ...
        ts[rng.random(n) < 0.3] //= 1_000_000  # ... or milliseconds (any epoch after 1970 is fine)
        value = rng.normal(0, 10.0 ** rng.integers(-3, 12), n)
        kind_of_row = [kinds[keys[s]] for s in series]
        for i, k in enumerate(kind_of_row):
            if k in (SignalType.INT, SignalType.STATE) and rng.random() < 0.95:
                value[i] = float(rng.integers(-(2**31), 2**31))
            elif k is SignalType.BOOL and rng.random() < 0.95:
                value[i] = float(rng.integers(0, 2))
        value[rng.random(n) < 0.1] = math.nan
        value[rng.random(n) < 0.02] = -math.inf
        text: list[str | None] = [None] * n
        for i, k in enumerate(kind_of_row):
            if k is SignalType.TEXT:
                value[i] = math.nan
                text[i] = None if rng.random() < 0.1 else f"lot-{int(rng.integers(10**6))} 批"
        batch = SampleBatch.from_columns(keys, series, ts, value, rng.integers(0, 3, n), text)
        out = node.data(batch)
        results = feed_all(host, out)
        assert all(not r.quarantined and not r.publish for r in results)
        assert by_series(data_samples(results, out)) == by_series(batch)


def test_a_sequence_gap_asks_for_a_rebirth_once() -> None:
    node, _, births = connected()
    now = [T0]
    host = HostDecoder(clock=lambda: now[0], rebirth_retry_ns=5_000_000_000)
    feed_all(host, births)
    one = SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0])
    node.data(one)  # lost on the way
    r = host.feed(*node.data(one)[0][:2])
    assert [n.kind for n in r.notices] == [NoticeKind.SEQ_GAP, NoticeKind.REBIRTH_REQUESTED]
    assert r.notices[0].detail == "expected 3, got 4"
    assert len(r.samples) == 1  # what did arrive is still good data
    assert [(m.topic, m.qos, m.retain) for m in r.publish] == [("spBv1.0/qijiang/NCMD/edge-1", 0, False)]
    req = payload(r.publish[0])
    assert metric(req, REBIRTH_METRIC).boolean_value is True and not req.HasField("seq")
    node.data(one)
    r2 = host.feed(*node.data(one)[0][:2])
    assert [n.kind for n in r2.notices] == [NoticeKind.SEQ_GAP] and r2.publish == []  # already asked
    now[0] += 5_000_000_000  # no rebirth came within the retry time: ask again
    node.data(one)
    r3 = host.feed(*node.data(one)[0][:2])
    assert len(r3.publish) == 1
    rebirth = node.on_command(r3.publish[0].topic, r3.publish[0].payload)
    assert [n.kind for n in host.feed(*rebirth[0][:2]).notices] == [NoticeKind.NODE_BORN]
    feed_all(host, rebirth[1:])
    r4 = host.feed(*node.data(one)[0][:2])
    assert r4.notices == [] and r4.publish == [] and len(r4.samples) == 1
    status = host.node(SITE, "edge-1")
    assert status is not None and (status.seq_gaps, status.rebirths_requested, status.births) == (3, 2, 2)


def test_data_before_its_birth_is_quarantined_and_a_rebirth_requested() -> None:
    node, _, _births = connected()
    host = HostDecoder(clock=clock())  # started after the edge's birth: it never saw it
    msg = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0]))[0]
    r = host.feed(msg.topic, msg.payload)
    assert len(r.samples) == 0
    assert [(q.reason, q.topic, q.payload) for q in r.quarantined] == [
        ("node-not-born", msg.topic, msg.payload)
    ]
    assert [m.topic for m in r.publish] == ["spBv1.0/qijiang/NCMD/edge-1"]
    rebirth = node.on_command(r.publish[0].topic, r.publish[0].payload)
    feed_all(host, rebirth)
    msg = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0 + 1], [2.0]))[0]
    assert host.feed(msg.topic, msg.payload).samples.to_samples()[0].value == 2.0


def test_an_alias_the_birth_did_not_declare_is_quarantined_with_its_reason() -> None:
    _node, _, births = connected()
    host = HostDecoder(clock=clock())
    feed_all(host, births)
    p = pb.Payload(timestamp=1, seq=3)
    p.metrics.add(alias=9999, timestamp=1, double_value=1.0)
    r = host.feed("spBv1.0/qijiang/DDATA/edge-1/copper:hot-rolling:mill-1", p.SerializeToString())
    assert [q.reason for q in r.quarantined] == ["unknown-alias"] and len(r.samples) == 0
    assert len(r.publish) == 1
    p = pb.Payload(timestamp=1, seq=4)
    p.metrics.add(alias=1, timestamp=1, double_value=1.0)
    r = host.feed("spBv1.0/qijiang/DDATA/edge-1/copper:furnace-9", p.SerializeToString())
    assert [q.reason for q in r.quarantined] == ["device-not-born"]


def test_ndeath_of_the_current_session_kills_the_node_and_a_stale_one_is_ignored() -> None:
    node, will_0, births_0 = connected()
    host = HostDecoder(clock=clock())
    feed_all(host, births_0)
    will_1 = node.will()  # the edge reconnected (bdSeq 1) ...
    feed_all(host, node.birth())
    r = host.feed(will_0.topic, will_0.payload)  # ... and the broker fires the old session's will late
    assert [n.kind for n in r.notices] == [NoticeKind.STALE_NDEATH]
    status = host.node(SITE, "edge-1")
    assert status is not None and status.online and status.bd_seq == 1
    r = host.feed(will_1.topic, will_1.payload)
    assert [n.kind for n in r.notices] == [NoticeKind.NODE_DEAD]
    status = host.node(SITE, "edge-1")
    assert status is not None and not status.online and status.devices_online == () and status.deaths == 1
    msg = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0]))[0]
    assert [q.reason for q in host.feed(msg.topic, msg.payload).quarantined] == ["node-dead"]


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        ("spBv1.0/qijiang/DDATA/edge-1/copper:hot-rolling:mill-1", b"\xff\xff\xff\xff", "not-protobuf"),
        ("spBv1.0/qijiang/DDATA/edge-1/copper:hot-rolling:mill-1", pb.Payload(timestamp=1).SerializeToString(), "missing-seq"),
        ("spBv1.0/qijiang/DDATA/edge-1/copper:hot-rolling:mill-1", pb.Payload(timestamp=1, seq=256).SerializeToString(), "bad-seq"),
        ("spBv1.0/qijiang/DDATA/edge-1/copper:hot-rolling:mill-1", pb.Payload(seq=3).SerializeToString(), "missing-timestamp"),
        ("spBv1.0/qijiang/NBIRTH/edge-1", pb.Payload(timestamp=1, seq=0).SerializeToString(), "missing-bdseq"),
        ("spBv1.0/qijiang/NDEATH/edge-1", pb.Payload(timestamp=1).SerializeToString(), "missing-bdseq"),
        ("spBv1.0/STATE/scada", b"online", "bad-state"),
        ("spBv1.0/qijiang/DDATA/edge-1", b"", "bad-topic"),
    ],
)  # fmt: skip
def test_a_malformed_message_raises_its_reason_and_changes_nothing(
    topic: str, raw: bytes, reason: str
) -> None:
    node, _, births = connected()
    host = HostDecoder(clock=clock())
    feed_all(host, births)
    with pytest.raises(SparkplugError) as err:
        host.feed(topic, raw)
    assert err.value.reason == reason
    assert isinstance(err.value, InvalidTopic if reason == "bad-topic" else MalformedPayload)
    msg = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0]))[0]
    r = host.feed(msg.topic, msg.payload)  # the next real message follows on: no gap, no quarantine
    assert r.notices == [] and r.quarantined == [] and len(r.samples) == 1


def test_a_birth_metric_without_datatype_or_with_a_reused_alias_is_malformed() -> None:
    _node, _, births = connected()
    host = HostDecoder(clock=clock())
    feed_all(host, births)
    p = pb.Payload(timestamp=1, seq=3)
    p.metrics.add(name="x", alias=77, timestamp=1, double_value=1.0)
    with pytest.raises(MalformedPayload) as err:
        host.feed("spBv1.0/qijiang/DBIRTH/edge-1/copper:x", p.SerializeToString())
    assert err.value.reason == "bad-birth-metric"
    used = payload(births[1]).metrics[0].alias  # the mill's
    p = pb.Payload(timestamp=1, seq=3)
    p.metrics.add(name="x", alias=used, timestamp=1, datatype=DataType.DOUBLE, double_value=1.0)
    with pytest.raises(MalformedPayload) as err:
        host.feed("spBv1.0/qijiang/DBIRTH/edge-1/copper:x", p.SerializeToString())
    assert err.value.reason == "alias-conflict"


def test_a_third_party_edge_node_decodes_by_name_and_by_its_datatypes() -> None:
    """Another vendor's node: no aliases, signed types in two's complement, a Quality code of its own."""
    host = HostDecoder(clock=clock())
    nb = pb.Payload(timestamp=1_700_000_000_000, seq=0)
    nb.metrics.add(name=BDSEQ_METRIC, timestamp=1_700_000_000_000, datatype=DataType.INT64, long_value=7)
    nb.metrics.add(
        name="Properties/Hardware", timestamp=1_700_000_000_000, datatype=DataType.STRING, string_value="x"
    )
    r = host.feed("spBv1.0/plant9/NBIRTH/plc-4", nb.SerializeToString())
    assert r.unmapped == 1 and len(r.samples) == 0  # node metrics map to no asset by default
    db = pb.Payload(timestamp=1_700_000_000_000, seq=1)
    db.metrics.add(name="temp", timestamp=1_700_000_000_001, datatype=DataType.FLOAT, float_value=21.5)
    db.metrics.add(
        name="offset", timestamp=1_700_000_000_002, datatype=DataType.INT8, int_value=(-3) & 0xFFFFFFFF
    )
    db.metrics.add(
        name="count", timestamp=1_700_000_000_003, datatype=DataType.UINT32, int_value=4_000_000_000
    )
    db.metrics.add(
        name="Inputs/A", timestamp=1_700_000_000_004, datatype=DataType.BOOLEAN, boolean_value=True
    )
    db.metrics.add(name="table", timestamp=1_700_000_000_005, datatype=DataType.DATASET)
    r = host.feed("spBv1.0/plant9/DBIRTH/plc-4/press:p-1", db.SerializeToString())
    got = {s.signal: (s.value, s.ts_ns) for s in r.samples.to_samples()}
    assert got == {
        "temp": (21.5, 1_700_000_000_001_000_000),
        "offset": (-3.0, 1_700_000_000_002_000_000),
        "count": (4e9, 1_700_000_000_003_000_000),
    }
    assert (r.unmapped, r.unsupported) == (1, 1)  # "Inputs/A" is no Shopfloor signal name; a DataSet no row
    assert {s.asset for s in r.samples.to_samples()} == {"plant9/press/p-1"}
    dd = pb.Payload(timestamp=1_700_000_000_010, seq=2)
    m = dd.metrics.add(name="offset", datatype=DataType.INT8, int_value=0xFF)  # Int8 -1, no own timestamp
    m.properties.keys.append(QUALITY_PROPERTY)
    m.properties.values.add(type=DataType.INT32, int_value=64)  # OPC DA "uncertain"
    r = host.feed("spBv1.0/plant9/DDATA/plc-4/press:p-1", dd.SerializeToString())
    assert r.samples.to_samples()[0][2:] == (-1.0, 1_700_000_000_010_000_000, Quality.UNCERTAIN)


def test_the_vectorised_decoder_reads_what_the_protobuf_runtime_reads() -> None:
    """Random payloads of another writer (every scalar datatype, value fields that do not match the datatype,
    nulls, missing timestamps, foreign property layouts, metadata) decode alike both ways."""
    rng = np.random.default_rng(11)
    scalar = [d for d in DataType if DataType.INT8 <= d <= DataType.UUID] + [DataType.DATASET]
    fast, slow = HostDecoder(clock=clock()), HostDecoder(clock=clock(), vectorized=False)
    nb = pb.Payload(timestamp=1, seq=0)
    nb.metrics.add(name=BDSEQ_METRIC, timestamp=1, datatype=DataType.INT64, long_value=0)
    db = pb.Payload(timestamp=1, seq=1)
    for i, d in enumerate(scalar):
        db.metrics.add(name=f"m{i}", alias=100 + i, timestamp=1, datatype=d, is_null=True)
    db.metrics.add(name="Folder/x", alias=99, timestamp=1, datatype=DataType.DOUBLE, is_null=True)  # unmapped
    births = [
        ("spBv1.0/g/NBIRTH/e", nb.SerializeToString()),
        ("spBv1.0/g/DBIRTH/e/dev", db.SerializeToString()),
    ]
    for dec in (fast, slow):
        for topic, raw in births:
            dec.feed(topic, raw)
    fields = ["int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value"]
    for seq in range(2, 40):
        p = pb.Payload(timestamp=int(rng.integers(0, 2**41)), seq=seq)
        for _ in range(int(rng.integers(1, 60))):
            m = p.metrics.add(alias=99 if rng.random() < 0.05 else 100 + int(rng.integers(len(scalar))))
            if rng.random() < 0.8:
                m.timestamp = int(rng.integers(0, 2**41))
            f = fields[int(rng.integers(len(fields)))]
            big = int(rng.integers(0, 2**63)) * int(rng.integers(1, 3))
            value: object = {
                "int_value": big & 0xFFFFFFFF, "long_value": big, "float_value": float(np.float32(rng.normal())),
                "double_value": float(rng.normal(0, 1e9)), "boolean_value": bool(rng.integers(2)),
                "string_value": "é" * int(rng.integers(0, 200)),
            }[f]  # fmt: skip
            setattr(m, f, value)
            if rng.random() < 0.1:
                m.is_null = True
            if rng.random() < 0.1:
                m.is_historical = True
            if rng.random() < 0.1:
                m.metadata.content_type = "text/plain"
            layout = rng.random()
            if layout < 0.3:  # Shopfloor's own layout
                m.properties.keys.extend([QUALITY_PROPERTY, NANOS_PROPERTY])
                m.properties.values.add(type=DataType.INT32, int_value=int(rng.choice([0, 192, 500])))
                m.properties.values.add(type=DataType.UINT32, int_value=int(rng.integers(0, 1_000_000)))
            elif layout < 0.5:  # another writer's: an extra key, Quality as long_value, other order
                m.properties.keys.extend(["engUnit", NANOS_PROPERTY, QUALITY_PROPERTY])
                m.properties.values.add(type=DataType.STRING, string_value="kN")
                m.properties.values.add(type=DataType.UINT32, int_value=int(rng.integers(0, 1_000_000)))
                m.properties.values.add(type=DataType.INT32, long_value=int(rng.choice([0, 64, 192, 500, 7])))
        raw = p.SerializeToString()
        assert _scan_metrics(raw) is not None  # the fast path reads these (it falls back on names only)
        a = fast.feed("spBv1.0/g/DDATA/e/dev", raw)
        b = slow.feed("spBv1.0/g/DDATA/e/dev", raw)
        assert (a.unmapped, a.unsupported, a.quarantined, a.notices) == (b.unmapped, b.unsupported, [], [])
        assert by_series(a.samples) == by_series(b.samples)
        assert len(a.samples) > 0


def test_a_restarted_ingest_reads_data_with_the_snapshot_of_the_old_one() -> None:
    node, _, births = connected()
    old = HostDecoder(clock=clock())
    feed_all(old, births)
    state = old.snapshot()
    new = HostDecoder(clock=clock())
    new.restore(state)
    msg = node.data(SampleBatch.from_columns([(MILL, "roll_force")], [0], [T0], [1.0]))[0]
    r = new.feed(msg.topic, msg.payload)
    assert r.quarantined == [] and r.publish == [] and len(r.samples) == 1
    blank = HostDecoder(clock=clock())
    assert [q.reason for q in blank.feed(msg.topic, msg.payload).quarantined] == ["node-not-born"]


def test_host_state_messages_are_retained_json() -> None:
    msg = host_state("scada-1", True, 1_700_000_000_000)
    assert (msg.topic, msg.qos, msg.retain) == ("spBv1.0/STATE/scada-1", 1, True)
    assert parse_state(msg.payload) == (True, 1_700_000_000_000)
    r = HostDecoder().feed(msg.topic, msg.payload)
    assert [n.kind for n in r.notices] == [NoticeKind.HOST_STATE]
    with pytest.raises(MalformedPayload):
        parse_state(b'{"online": "yes", "timestamp": 1}')
