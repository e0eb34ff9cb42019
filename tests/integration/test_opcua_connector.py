"""The OPC UA connector against the simulator's real asyncua server: values, timestamps, quality,
restart with gap and item checks, a vanished node, events, polling, browse, the historian."""

from __future__ import annotations

import argparse
import asyncio
import io
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from asyncua import ua
from opcua_support import (
    CNC,
    MILL,
    NS,
    STEP,
    ListSink,
    all_tags,
    connector,
    expected,
    make_plant,
    wait_for,
)

from connectors.opcua import browse
from connectors.opcua.config import OpcUaTag
from connectors.opcua.security import NoMatchingEndpoint
from plant_simulator.config_gen import plant_config
from plant_simulator.online import Publisher
from plant_simulator.opcua_server import (
    NAMESPACE_URI,
    SimOpcUaServer,
)
from plant_simulator.plant import Plant
from shopfloor.batch import SampleBatch
from shopfloor.config.load import validate_document
from shopfloor.config.sources import validate_sources
from shopfloor.config.yaml_source import parse_yaml
from shopfloor.model import Event, EventKind, Quality
from shopfloor.testing.servers import free_port

UNSECURED = ["--security-policy", "None", "--security-mode", "None"]


async def test_every_signal_arrives_with_the_simulators_value_and_timestamp(sim, tmp_path: Path) -> None:
    plant, srv, pub = sim
    tags = all_tags(plant)
    con = connector(tags, tmp_path, endpoint=srv.endpoint)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(tags))
        n_first = len(sink.batches)
        await pub.publish_step(STEP + 60)
        await wait_for(
            lambda: any(b.ts.max() == plant.start_ns + (STEP + 60) * NS for b in sink.batches[n_first:])
        )
        await asyncio.sleep(0.6)  # one more publish cycle for stragglers (no assertion on timing)
    finally:
        await con.stop()
    latest = sink.latest()
    assert set(latest) == {(t.asset, t.signal) for t in tags}
    changed = 0
    for (asset, signal), (ts, value, _q) in latest.items():
        step = (ts - plant.start_ns) // NS
        assert step in (STEP, STEP + 60), (asset, signal, step)
        want = expected(plant, asset, signal, STEP + 60)
        if step == STEP:  # no data change reported: the value must not have changed
            assert expected(plant, asset, signal, STEP) == pytest.approx(want, nan_ok=True)
        else:
            changed += 1
        assert value == pytest.approx(want, nan_ok=True), (asset, signal)
    assert changed > 50
    # one batch per publish cycle: the first notification of every item came in a handful of batches
    assert n_first <= 3


async def test_status_codes_become_quality(sim, tmp_path: Path) -> None:
    plant, srv, _ = sim
    con = connector(all_tags(plant, [CNC]), tmp_path, endpoint=srv.endpoint)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(plant.signals(CNC)))
    finally:
        await con.stop()
    latest = sink.latest()
    assert latest[(CNC, "spindle_temp")][2] == Quality.BAD and math.isnan(latest[(CNC, "spindle_temp")][1])
    assert latest[(CNC, "coolant_temp")][2] == Quality.UNCERTAIN
    assert latest[(CNC, "spindle_load")][2] == Quality.GOOD
    assert sum(1 for v in latest.values() if v[2] == Quality.GOOD) == len(latest) - 2


async def restart(
    plant: Plant, srv: SimOpcUaServer, pub: Publisher, drop: str | None = None
) -> SimOpcUaServer:
    """Stop the server and start a new one on the same port (optionally without one node)."""
    await srv.stop()
    await asyncio.sleep(0.3)
    new = SimOpcUaServer({p: plant.signals(p) for p in plant.assets}, srv.host, srv.port)
    await new.start()
    if drop is not None:
        await new.server.delete_nodes([new.server.get_node(ua.NodeId(drop, new.ns))])
    pub.sinks = [new]
    return new


async def test_server_restart_restores_every_item_and_records_the_gap(sim, tmp_path: Path) -> None:
    plant, srv, pub = sim
    tags = all_tags(plant)
    con = connector(tags, tmp_path, endpoint=srv.endpoint)
    sink = ListSink()
    await con.start(sink)
    new = None
    try:
        await wait_for(lambda: len(sink.latest()) == len(tags))
        new = await restart(plant, srv, pub)
        await wait_for(lambda: not con.health().connected, 10)
        await pub.publish_step(STEP + 120)
        n_before = len(sink.batches)
        await wait_for(lambda: con.supervisor.sessions == 2, 20)
        await wait_for(lambda: len(sink.latest(n_before)) == len(tags))
    finally:
        await con.stop()
        if new is not None:
            await new.stop()
    h = con.health()
    assert h.reconnects == 1 and h.gaps == 1
    restore = con.describe()["last_restore"]
    assert restore["restored"] == restore["expected"] == len(tags) and restore["failed"] == {}
    gaps = [e for e in sink.events if e.kind is EventKind.GAP]
    assert sorted(e.asset for e in gaps) == sorted(plant.assets)
    for e in gaps:  # marked at the last sample before the loss, never backfilled
        assert e.ts_ns == plant.start_ns + STEP * NS
        assert e.data["restored_at_ns"] > e.data["lost_at_ns"]
        assert e.key == "sim-opcua"  # a gap is about its source
    after = sink.latest(n_before)
    assert {(ts - plant.start_ns) // NS for ts, _, _ in after.values()} == {STEP + 120}
    for (asset, signal), (_, value, _) in after.items():
        assert value == pytest.approx(expected(plant, asset, signal, STEP + 120), nan_ok=True)


async def test_node_missing_after_restart_is_listed_and_the_others_continue(sim, tmp_path: Path) -> None:
    plant, srv, pub = sim
    tags = all_tags(plant, [CNC, MILL])
    gone = f"nsu={NAMESPACE_URI};s={MILL}/roll_force"
    con = connector(tags, tmp_path, endpoint=srv.endpoint, item_retry_s=0)
    sink = ListSink()
    await con.start(sink)
    new = None
    try:
        await wait_for(lambda: len(sink.latest()) == len(tags))
        new = await restart(plant, srv, pub, drop=f"{MILL}/roll_force")
        await pub.publish_step(STEP + 120)
        n_before = len(sink.batches)
        await wait_for(lambda: con.supervisor.sessions == 2, 20)
        await wait_for(lambda: len(sink.latest(n_before)) == len(tags) - 1)
        await pub.publish_step(STEP + 180)
        await wait_for(lambda: any(b.ts.max() == plant.start_ns + (STEP + 180) * NS for b in sink.batches))
    finally:
        await con.stop()
        if new is not None:
            await new.stop()
    assert con.failed_items == {gone: "BadNodeIdUnknown"}
    h = con.health()
    assert h.failed_items == {gone: "BadNodeIdUnknown"}
    assert h.errors.get("item_failed") == 1
    restore = con.describe()["last_restore"]
    assert (restore["restored"], restore["expected"]) == (len(tags) - 1, len(tags))
    assert (MILL, "roll_force") not in sink.latest(n_before)
    flagged = [e for e in sink.events if e.kind is EventKind.SYSTEM and e.code == "BadNodeIdUnknown"]
    assert [(e.asset, e.data["node_id"]) for e in flagged] == [(MILL, gone)]
    assert [e.key for e in flagged] == ["roll_force"]  # an item failure is about its signal


async def test_poll_mode_reads_values(sim, tmp_path: Path) -> None:
    plant, srv, _ = sim
    tags = all_tags(plant, [MILL])
    con = connector(tags, tmp_path, endpoint=srv.endpoint, mode="poll", poll_interval_ms=200)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.batches) >= 2)
    finally:
        await con.stop()
    assert all(len(b) == len(tags) for b in sink.batches)  # one batch per read cycle
    for (asset, signal), (ts, value, _) in sink.latest().items():
        assert ts == plant.start_ns + STEP * NS
        assert value == pytest.approx(expected(plant, asset, signal, STEP), nan_ok=True)


async def test_state_change_events_are_subscribed(sim, tmp_path: Path) -> None:
    plant, srv, pub = sim
    states = {a: plant.block(0).values[a][plant.signal_index(a, "state")] for a in plant.assets}
    step, asset = next(
        (s, a) for s in range(STEP + 1, STEP + 3000) for a in plant.assets if states[a][s] != states[a][STEP]
    )
    con = connector(
        all_tags(plant, [asset]),
        tmp_path,
        endpoint=srv.endpoint,
        events=[{"node_id": f"nsu={NAMESPACE_URI};s={asset}", "kind": "state_change"}],
    )
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(plant.signals(asset)))
        # data items are created before the event item: publish only once the session is fully set up
        await wait_for(lambda: con.describe()["last_restore"].get("session") == 1)
        await pub.publish_step(step)
        await wait_for(lambda: any(e.kind is EventKind.STATE_CHANGE for e in sink.events))
    finally:
        await con.stop()
    (ev,) = [e for e in sink.events if e.kind is EventKind.STATE_CHANGE]
    assert ev.asset == asset and ev.ts_ns == plant.start_ns + step * NS
    assert ev.key == ev.code == "i=2041"  # keyed by its OPC UA event type (BaseEventType)
    assert f"-> {int(states[asset][step])}" in ev.message


async def test_browse_prints_a_snippet_that_validates_as_a_source(sim, tmp_path: Path) -> None:
    plant, srv, _ = sim
    parser = argparse.ArgumentParser()
    browse.add_arguments(parser)
    args = parser.parse_args(
        [
            srv.endpoint,
            "--pattern",
            "qijiang/copper/**",
            "--state-dir",
            str(tmp_path),
            "--name",
            "sim",
            *UNSECURED,
        ]
    )
    out = io.StringIO()
    assert await browse.browse(args, out, io.StringIO()) == 0
    text = out.getvalue()
    assert f"{MILL.rsplit('/', 1)[-1]}  (Object)" in text  # the tree
    snippet = text[text.index(browse.SNIPPET_MARK) :]
    doc = parse_yaml(snippet, "snippet.yaml")
    cfg = validate_document(doc)
    (source,) = validate_sources(cfg, doc).values()
    _cls, settings, tags = source
    assert settings.endpoint == srv.endpoint and settings.namespace_uri == NAMESPACE_URI
    # the same tags the simulator's own generated config names for the copper area
    generated = plant_config(plant)
    (gen,) = [s for s in generated["sources"] if s["connector"] == "opcua"]
    want = {
        (t["asset"], t["signal"], t["node_id"])
        for t in gen["tags"]
        if t["asset"].startswith("qijiang/copper/")
    }
    assert {(t.asset, t.signal, t.node_id) for t in tags} == want


def test_sink_batches_share_one_key_table(tmp_path: Path) -> None:
    plant = make_plant()
    con = connector(all_tags(plant, [CNC]), tmp_path, endpoint="opc.tcp://127.0.0.1:1")
    sink = ListSink()
    con._sink = sink
    from datetime import UTC, datetime

    dv = ua.DataValue(
        ua.Variant(1.5),
        ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    note = ua.DataChangeNotification(
        MonitoredItems=[ua.MonitoredItemNotification(ClientHandle=3, Value=dv)] * 2
    )
    result = ua.PublishResult(NotificationMessage=ua.NotificationMessage(NotificationData=[note]))
    con._on_data(result)
    con._on_data(result)
    a, b = sink.batches
    assert a.keys is b.keys and len(a) == 2
    assert a.ts.tolist() == [1767225600 * NS] * 2 and a.quality.tolist() == [Quality.UNCERTAIN] * 2
    assert np.array_equal(a.series, [3, 3])


@pytest.mark.influxdb
async def test_default_plant_lands_in_influxdb_with_values_and_source_timestamps(
    sim, influxd, influx_db: str, tmp_path: Path
) -> None:
    from historian.influx_v1 import InfluxV1Store
    from historian.writer import HistorianWriter
    from shopfloor.config.historian_url import parse_url
    from shopfloor.config.schema import HistorianConfig

    plant, srv, pub = sim
    tags = all_tags(plant)
    cfg = HistorianConfig.model_validate(
        {
            "url": f"influxdb-v1+http://127.0.0.1:{influxd.port}/{influx_db}",
            "spool": {"dir": str(tmp_path / "spool")},
            "health_interval_s": 0,
        }
    )

    def store() -> InfluxV1Store:
        return InfluxV1Store(parse_url(cfg.url), None, None, cfg.timeout_s, True)

    writer = HistorianWriter(store(), cfg)
    await writer.start()

    class WriterSink(ListSink):
        def emit(self, batch: SampleBatch) -> None:
            super().emit(batch)
            writer.submit(batch)

        def emit_events(self, events: list[Event]) -> None:
            super().emit_events(events)
            writer.submit_events(events)

    sink = WriterSink()
    con = connector(tags, tmp_path, endpoint=srv.endpoint)
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(tags))
        await pub.publish_step(STEP + 60)
        await wait_for(lambda: any(b.ts.max() == plant.start_ns + (STEP + 60) * NS for b in sink.batches))
    finally:
        await con.stop()
    assert await writer.flush(30)
    stats = writer.stats()
    await writer.stop()
    assert stats.written == sink.rows() and stats.balanced
    reader = store()
    try:
        stored = {(s.asset, s.signal): s for s in await reader.latest()}
    finally:
        await reader.close()
    latest = sink.latest()
    # a NaN (Bad, no reading) is stored as a quality-only line; latest() returns it as Bad, no value
    no_reading = {k for k, (_, v, q) in latest.items() if math.isnan(v)}
    assert no_reading == {(CNC, "spindle_temp")} and latest[(CNC, "spindle_temp")][2] == Quality.BAD
    assert set(stored) == {(t.asset, t.signal) for t in tags}
    bad = stored[(CNC, "spindle_temp")]
    assert (
        bad.quality == Quality.BAD and math.isnan(bad.value) and bad.ts_ns == latest[(CNC, "spindle_temp")][0]
    )
    for key, (ts, value, quality) in latest.items():
        if key in no_reading:
            continue
        s = stored[key]
        assert (s.ts_ns, int(s.quality)) == (ts, quality), key
        assert s.value == pytest.approx(value, nan_ok=True), key
        assert s.value == pytest.approx(expected(plant, *key, STEP + 60), nan_ok=True), key


# -- before its first value, a variable is stored Bad, never as a Good zero -------------------------
async def test_a_variable_without_its_first_value_is_stored_bad_not_as_zero(tmp_path: Path) -> None:
    plant = make_plant()
    srv = SimOpcUaServer({CNC: plant.signals(CNC)}, "127.0.0.1", free_port())
    await srv.start()  # serving, but the model has published nothing yet
    con = connector(all_tags(plant, [CNC]), tmp_path, endpoint=srv.endpoint)
    sink = ListSink()
    await con.start(sink)
    try:
        await wait_for(lambda: len(sink.latest()) == len(plant.signals(CNC)))
    finally:
        await con.stop()
        await srv.stop()
    for (_asset, signal), (_ts, value, quality) in sink.latest().items():
        assert quality == Quality.BAD and math.isnan(value), signal


# -- error texts ----------------------------------------------------------------------------------
async def test_a_secure_source_against_an_unsecured_server_names_the_endpoints_readably(
    sim, tmp_path: Path
) -> None:
    plant, srv, _ = sim
    con = connector(
        all_tags(plant, [CNC]),
        tmp_path,
        endpoint=srv.endpoint,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
    )
    await con.start(ListSink())
    try:
        await wait_for(lambda: "no_matching_endpoint" in con.health().errors)
    finally:
        await con.stop()
    msg = con.health().last_error
    assert "offers no Basic256Sha256/SignAndEncrypt endpoint (it offers None/None)" in msg
    assert "None_" not in msg


async def test_a_missing_namespace_names_the_servers_namespaces(sim, tmp_path: Path) -> None:
    _, srv, _ = sim
    tag = OpcUaTag(asset=CNC, signal="state", node_id=f"nsu=urn:shopfloor:plant-simulater;s={CNC}/state")
    con = connector([tag], tmp_path, endpoint=srv.endpoint)
    await con.start(ListSink())
    try:
        await wait_for(lambda: bool(con.failed_items))
    finally:
        await con.stop()
    (reason,) = con.failed_items.values()
    assert reason.startswith("BadNamespaceUnknown: namespace 'urn:shopfloor:plant-simulater' is not on")
    assert f"'{NAMESPACE_URI}'" in reason and "did you mean" in reason


async def test_browse_is_secure_by_default_and_says_how_to_browse_unsecured(sim, tmp_path: Path) -> None:
    _, srv, _ = sim
    parser = argparse.ArgumentParser()
    browse.add_arguments(parser)
    args = parser.parse_args([srv.endpoint, "--state-dir", str(tmp_path)])
    assert (args.security_policy, args.security_mode) == ("Basic256Sha256", "SignAndEncrypt")
    with pytest.raises(NoMatchingEndpoint) as err:
        await browse.browse(args, io.StringIO(), io.StringIO())
    assert "(it offers None/None)" in str(err.value)
    assert browse.UNSECURED_FLAGS in browse.no_endpoint_hint(err.value)
    # asked for explicitly, it browses unsecured and says so
    err_out = io.StringIO()
    args = parser.parse_args([srv.endpoint, "--state-dir", str(tmp_path), "--format", "yaml", *UNSECURED])
    assert await browse.browse(args, io.StringIO(), err_out) == 0
    assert "without security" in err_out.getvalue()


async def test_browse_pattern_without_a_slash_matches_any_path_segment(sim, tmp_path: Path) -> None:
    _, srv, _ = sim
    parser = argparse.ArgumentParser()
    browse.add_arguments(parser)
    args = parser.parse_args(
        [
            srv.endpoint,
            "--pattern",
            "*hot-rolling*",
            "--state-dir",
            str(tmp_path),
            "--format",
            "yaml",
            *UNSECURED,
        ]
    )
    out = io.StringIO()
    assert await browse.browse(args, out, io.StringIO()) == 0
    doc = yaml.safe_load(out.getvalue())
    (source,) = doc["sources"]
    assets = {t["asset"] for t in source["tags"]}
    assert assets == {MILL}  # the README example: everything of the hot-rolling line, nothing else


async def test_browse_pattern_matching_nothing_says_so_with_an_example(sim, tmp_path: Path) -> None:
    _, srv, _ = sim
    parser = argparse.ArgumentParser()
    browse.add_arguments(parser)
    args = parser.parse_args(
        [
            srv.endpoint,
            "--pattern",
            "qijiang/*rolling*",
            "--state-dir",
            str(tmp_path),
            "--format",
            "yaml",
            *UNSECURED,
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    assert await browse.browse(args, out, err) == 0
    assert "matched 0 of 231 number, boolean or text variables" in err.getvalue()
    assert "matched 0 of 231" in out.getvalue()
    example = err.getvalue().split("--pattern '", 1)[1].split("'", 1)[0]
    args = parser.parse_args(
        [srv.endpoint, "--pattern", example, "--state-dir", str(tmp_path), "--format", "yaml", *UNSECURED]
    )
    again = io.StringIO()
    assert await browse.browse(args, again, io.StringIO()) == 0
    assert yaml.safe_load(again.getvalue())["sources"][0]["tags"]  # the example matches
