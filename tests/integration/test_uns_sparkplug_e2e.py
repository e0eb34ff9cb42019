"""Sparkplug B end to end with a real Mosquitto and SQLite: edges publishing ``format: sparkplug`` and the
central ingest as a Sparkplug host store every sample exactly once, through a SIGKILLed ingest (births kept on
disk decode the redelivered DDATA), a rebirth asked for by a host, and an edge restarted (bdSeq goes on).

Also the JSON tree and the Sparkplug namespace on one broker with no topic prefix: each message is read once,
by the subscription it belongs to. Shared fixtures and the edge/ingest helpers come from test_uns_ingest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest
from mqtt_support import Recorder, start_mosquitto
from test_uns_ingest import (
    EDGES,
    STATUS_RE,
    Edge,
    IngestProcess,
    assert_exactly_once,
    flushed,
    ingest_settings,
    running_ingest,
)

from historian.sqlite_store import SQLiteStore
from shopfloor.config.ingest import IngestConfig
from shopfloor.testing.servers import MosquittoServer
from uns.sparkplug import HostDecoder, MessageType, NoticeKind, Topic, parse_payload, rebirth_request
from uns.sparkplug_edge import STATE_FILE

pytestmark = pytest.mark.slow

SPARKPLUG = {"format": "sparkplug"}  # group id: the site; edge node id: the client id (publisher-<site>)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "mosquitto", persistence=True)
    yield server
    server.stop()


@pytest.fixture
async def processes() -> AsyncIterator[list[IngestProcess]]:
    started: list[IngestProcess] = []
    yield started
    for p in started:
        await p.cleanup()  # killed by PID if still running


def sparkplug_edges(tmp_path: Path, url: str) -> list[Edge]:
    return [Edge(site, url, tmp_path / f"spool-{site}", **SPARKPLUG) for site in EDGES]


async def test_two_sparkplug_edges_through_a_sigkilled_ingest_stored_exactly_once(
    tmp_path: Path, broker: MosquittoServer, processes: list[IngestProcess]
) -> None:
    db = tmp_path / "central.db"
    wire = Recorder(broker.port, "spBv1.0/#", client_id="sparkplug-wire")  # every Sparkplug message, in order
    await wire.start()
    first = IngestProcess(
        tmp_path, broker, db, "ingest-sp", batch={"max_points": 100_000, "max_age_ms": 3000}
    )
    processes.append(first)
    await first.start()
    edges = sparkplug_edges(tmp_path, broker.url)
    for e in edges:
        await e.writer.start()
    feeding = asyncio.gather(*(e.feed(0, 300) for e in edges))
    try:

        def stored_and_unacked(ln: str) -> bool:
            m = STATUS_RE.search(ln)
            return bool(m and int(m[2]) > 0 and int(m[4]) > 0)

        await first.wait_line(stored_and_unacked, 60)
        await first.kill()  # received DDATA held unacknowledged: the broker sends it again
        await asyncio.sleep(0.5)
        second = IngestProcess(tmp_path, broker, db, "ingest-sp")
        processes.append(second)
        await second.start()
        await feeding
        await flushed(edges)
        await assert_exactly_once(db, edges)  # samples from DDATA, events from the JSON tree
        for e in edges:
            await e.writer.stop(timeout_s=5)
        await wire.wait_until(lambda: sum("/NDEATH/" in t for t, _ in wire.messages) >= len(edges), 10)
    finally:
        if not feeding.done():
            feeding.cancel()
        for e in edges:
            await e.writer.stop(timeout_s=5)
        await wire.stop()
    # the edges' last messages (their NDEATH) may still be on the way: let the ingest store them first
    mark = len(second.lines)
    await second.wait_line(lambda ln: second.lines.index(ln) >= mark and bool(
        (m := STATUS_RE.search(ln)) and int(m[4]) == 0), 30)  # fmt: skip
    after = await second.terminate()
    assert after["redelivered"] > 0 and after["quarantined"] == 0 and after["pending"] == 0
    # the restarted ingest read the redelivered DDATA with the births the first one saved
    assert any("restored the births of 2 edge nodes" in ln for ln in second.lines), second.lines[-20:]

    # the wire is Sparkplug: per edge node an NBIRTH (bdSeq, seq 0) then DBIRTHs, DDATA in sequence ...
    decoder = HostDecoder()
    kinds: dict[str, list[MessageType]] = {}
    for topic, payload in wire.messages:
        t = Topic.parse(topic)
        if t.message_type is MessageType.STATE:
            continue
        kinds.setdefault(t.edge_node_id, []).append(t.message_type)
        res = decoder.feed(topic, payload)
        assert not res.quarantined, res.quarantined
    for site in EDGES:
        seen = kinds[f"publisher-{site}"]
        first_data = seen.index(MessageType.DDATA)
        assert seen[0] is MessageType.NBIRTH and MessageType.DBIRTH in seen[:first_data]
        status = decoder.node(site, f"publisher-{site}")
        assert status is not None and status.seq_gaps == 0  # in order, no message missing
        # ... and a clean stop ends the session with its NDEATH
        assert seen[-1] is MessageType.NDEATH and not status.online


async def test_a_host_asking_for_a_rebirth_gets_one_and_a_restarted_edge_counts_bdseq_on(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    spool = tmp_path / "spool-edge-a"
    wire = Recorder(broker.port, "spBv1.0/#", client_id="sparkplug-wire")
    await wire.start()
    edge = Edge("edge-a", broker.url, spool, **SPARKPLUG)
    await edge.writer.start()
    try:
        await edge.feed(0, 5)
        await flushed([edge])
        # no devices declared up front here: an empty NBIRTH, then a rebirth with the devices at the first data
        births = len([t for t, _ in wire.messages if "/NBIRTH/" in t])
        assert births >= 1
        cmd = rebirth_request("edge-a", "publisher-edge-a")
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="a-host") as host:
            await host.publish(cmd.topic, cmd.payload, qos=1)
        await wire.wait_until(lambda: len([t for t, _ in wire.messages if "/NBIRTH/" in t]) == births + 1, 10)
        await edge.feed(5, 5)  # data goes on after the rebirth
        await flushed([edge])
    finally:
        await edge.writer.stop(timeout_s=5)
    decoder = HostDecoder()
    for topic, payload in wire.messages:
        res = decoder.feed(topic, payload)
        assert not res.quarantined
        assert not [n for n in res.notices if n.kind is NoticeKind.SEQ_GAP]  # the rebirth restarts seq at 0
    kinds = [t.split("/")[2] for t, _ in wire.messages]
    asked = kinds.index("NCMD")
    assert kinds[asked + 1] == "NBIRTH" and "DDATA" in kinds[asked + 1 :]  # answered, then data goes on
    nbirths = [parse_payload(p) for t, p in wire.messages if "/NBIRTH/" in t]
    # the publisher's own counters were declared in the first birth: no rebirth for them at the stop
    assert len(nbirths) == births + 1 and all(b.seq == 0 for b in nbirths)
    bd = [next(m.long_value for m in b.metrics if m.name == "bdSeq") for b in nbirths]
    assert len(set(bd)) == 1  # a rebirth stays in its session

    state = json.loads((spool / STATE_FILE).read_text())
    mark = len(wire.messages)
    restarted = Edge("edge-a", broker.url, spool, **SPARKPLUG)
    await restarted.writer.start()
    try:
        await restarted.feed(10, 3)
        await flushed([restarted])
    finally:
        await restarted.writer.stop(timeout_s=5)
        await wire.stop()
    nbirths = [parse_payload(p) for t, p in wire.messages if "/NBIRTH/" in t]
    bd_next = next(m.long_value for m in nbirths[-1].metrics if m.name == "bdSeq")
    assert bd_next == state["next_bd_seq"] != bd[0]  # a new session, numbered on from the last process
    # the restarted edge kept every alias: its DBIRTHs name each series with the alias it had before
    aliases = {(a, s): n for a, s, n in state["aliases"]}
    again = {
        (m.name, m.alias)
        for t, p in wire.messages[mark:]
        if "/DBIRTH/" in t
        for m in parse_payload(p).metrics
    }
    assert set(edge.series) <= set(aliases)  # the data's series and the publisher's own counters
    assert {(sig, aliases[(a, sig)]) for a, sig in edge.series} <= again


async def test_json_and_sparkplug_on_one_broker_without_a_prefix_each_read_once(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    db = tmp_path / "central.db"
    cfg = IngestConfig.model_validate(ingest_settings(tmp_path, url=broker.url, topic_prefix=""))
    ing = await running_ingest(cfg, SQLiteStore(db))
    edges = [
        Edge("edge-a", broker.url, tmp_path / "spool-a", topic_prefix=""),
        Edge("edge-b", broker.url, tmp_path / "spool-b", topic_prefix="", **SPARKPLUG),
    ]
    try:
        for e in edges:
            await e.writer.start()
        await asyncio.gather(*(e.feed(0, 30) for e in edges))
        await flushed(edges)
        await assert_exactly_once(db, edges)
        s = ing.stats()
    finally:
        for e in edges:
            await e.writer.stop(timeout_s=5)
        await ing.stop()
    # the Sparkplug messages the tree's '#' also delivers are not read as malformed JSON
    assert s.quarantined_total == 0, s.quarantined
    assert ing.sparkplug is not None
    node = ing.sparkplug.decoder.node("edge-b", "publisher-edge-b")
    assert node is not None and node.births >= 1 and node.seq_gaps == 0
