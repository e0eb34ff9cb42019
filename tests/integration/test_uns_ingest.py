"""The central ingest against a real Mosquitto and a real SQLite historian: two edges' publishers feed one
broker, ``shopfloor ingest`` stores every sample exactly once, through a SIGKILLed ingest, a killed
broker, a historian that is away, malformed messages, and two ingest processes sharing the load.

Real broker (Debian's mosquitto on a free loopback port, persistent sessions), real publishers (the
no-loss writer + MqttPublisher), the ingest in this process or as ``python -m shopfloor.app.cli ingest``;
no mocks, except a store wrapper that plays a historian outage in front of the real SQLite store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
import yaml
from mqtt_support import start_mosquitto, wait_for_file

from historian.errors import StoreUnavailable
from historian.sqlite_store import SQLiteStore
from shopfloor.batch import SampleBatch
from shopfloor.config.ingest import IngestConfig
from shopfloor.config.publish import PublishConfig
from shopfloor.model import Event, EventKind, now_ns
from shopfloor.testing.servers import MosquittoServer
from uns.ingest import Ingest
from uns.publisher import PublishWriter, publish_writer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "test-ingest"
EDGES = ("edge-a", "edge-b")
PER_BATCH = 3  # samples of every series in one submitted batch

Key = tuple[str, str, int]


def series_of(site: str) -> list[tuple[str, str]]:
    return [(f"{site}/line-{i % 2}/cell/machine-{i % 3}", f"sig_{i}") for i in range(8)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "mosquitto", persistence=True)
    yield server
    server.stop()


# -- the edges -------------------------------------------------------------------------------------
class Edge:
    """One edge box: a publisher writer of its own site, fed synthetic batches whose values are a
    function of series and timestamp; ``expected`` is every sample submitted."""

    def __init__(
        self, site: str, url: str, spool: Path, health_interval_s: float = 0, **publish: Any
    ) -> None:
        self.site = site
        self.series = series_of(site)
        self.lines = {asset.rsplit("/", 1)[0] for asset, _ in self.series}
        cfg = PublishConfig.model_validate(
            {
                "url": url,
                "client_id": f"publisher-{site}",
                "topic_prefix": PREFIX,
                "spool": {"dir": str(spool)},
                "batch": {"max_points": 2000, "max_age_ms": 50},
                "retry": {"initial_ms": 100, "max_ms": 400, "probe_interval_ms": 100},
                "timeout_s": 2.0,
                "health_interval_s": health_interval_s,
            }
            | publish
        )
        self.writer: PublishWriter = publish_writer(cfg, site)  # its counters: <site>/_system/shopfloor/...
        self.expected: dict[Key, float] = {}
        self.events: list[Event] = []
        self.t0 = now_ns() - 10**12  # in the past: nothing collides with the ingest's own health signals

    def batch(self, k: int) -> SampleBatch:
        n = len(self.series)
        series = np.tile(np.arange(n), PER_BATCH)
        ts = self.t0 + (k * PER_BATCH + np.repeat(np.arange(PER_BATCH), n)) * 1_000_000
        value = series * 1000.0 + (ts - self.t0) / 1e6 + 0.125
        return SampleBatch.from_columns(self.series, series, ts, value, 0)

    async def feed(self, start: int, count: int, every_s: float = 0.02) -> None:
        for k in range(start, start + count):
            b = self.batch(k)
            self.expected.update({(s.asset, s.signal, s.ts_ns): float(s.value) for s in b.to_samples()})
            self.writer.submit(b)
            if k % 25 == 0:
                ev = Event(self.series[0][0], EventKind.ALARM, int(b.ts[0]), "HI", f"alarm {k}", float(k),
                           {"k": k}, key="sig_0")  # fmt: skip
                self.events.append(ev)
                self.writer.submit_events([ev])
            await asyncio.sleep(every_s)


@pytest.fixture
async def edges(tmp_path: Path, broker: MosquittoServer) -> AsyncIterator[list[Edge]]:
    out = [Edge(site, broker.url, tmp_path / f"spool-{site}") for site in EDGES]
    for e in out:
        await e.writer.start()
    yield out
    for e in out:
        await e.writer.stop(timeout_s=2)


async def flushed(edges: list[Edge]) -> None:
    for e in edges:
        assert await e.writer.flush(60), f"{e.site}: the publisher's spool did not drain"


# -- the historian ---------------------------------------------------------------------------------
async def stored(db: Path, edges: list[Edge]) -> tuple[dict[Key, float], int]:
    """Every sample of the edges' series as the store's reader returns it, and how many rows it read."""
    if not db.exists():
        return {}, 0
    reader = SQLiteStore(db, create=False)
    await reader.open()
    try:
        out: dict[Key, float] = {}
        rows = 0
        for e in edges:
            for asset, sig in e.series:
                frame = await reader.query_raw(asset, sig, 0, 2**62)
                rows += len(frame)
                out.update({(asset, sig, t): v for t, v in zip(frame.ts.tolist(), frame.value.tolist())})
        return out, rows
    except StoreUnavailable:
        return {}, 0
    finally:
        await reader.close()


async def stored_events(db: Path) -> list[Event]:
    reader = SQLiteStore(db, create=False)
    await reader.open()
    try:
        return await reader.query_events(0, 2**62)
    finally:
        await reader.close()


async def wait_stored(db: Path, edges: list[Edge], timeout_s: float = 60) -> dict[Key, float]:
    """Poll the store until it holds every expected sample (bounded); what it holds then."""
    want = sum(len(e.expected) for e in edges)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    got: dict[Key, float] = {}
    while loop.time() < deadline:
        got, _ = await stored(db, edges)
        if len(got) >= want:
            break
        await asyncio.sleep(0.3)
    return got


async def assert_exactly_once(db: Path, edges: list[Edge]) -> None:
    expected = {k: v for e in edges for k, v in e.expected.items()}
    got = await wait_stored(db, edges)
    got, rows = await stored(db, edges)
    missing = set(expected) - set(got)
    assert not missing, f"{len(missing)} of {len(expected)} samples missing, e.g. {sorted(missing)[:3]}"
    assert got == expected  # same timestamps, same values, nothing else
    assert rows == len(expected)  # each stored once
    events = [ev for ev in await stored_events(db) if ev.asset.split("/", 1)[0] in EDGES]
    assert sorted(events, key=lambda ev: (ev.asset, ev.ts_ns)) == sorted(
        (ev for e in edges for ev in e.events), key=lambda ev: (ev.asset, ev.ts_ns)
    )


def ingest_settings(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "topic_prefix": PREFIX,
        "client_id": "ingest-1",
        "dir": str(tmp_path / "ingest"),
        "batch": {"max_points": 5000, "max_age_ms": 100},
        "retry": {"initial_ms": 100, "max_ms": 400, "probe_interval_ms": 100},
        "health_interval_s": 1,
        "stale_after_s": 30,
        "timeout_s": 5,
        "stop_timeout_s": 20,
    }
    return base | kw


async def settled(ing: Ingest, quiet_s: float = 0.5, timeout_s: float = 20) -> None:
    """Until nothing has arrived for ``quiet_s`` and nothing is held (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last, since = -1, loop.time()
    while loop.time() < deadline:
        s = ing.stats()
        if s.received != last:
            last, since = s.received, loop.time()
        elif s.pending == 0 and loop.time() - since >= quiet_s:
            return
        await asyncio.sleep(0.05)


async def running_ingest(cfg: IngestConfig, store: Any) -> Ingest:
    ing = Ingest(cfg, store, health_asset="central/_system/shopfloor/ingest/test", seed=1)
    await ing.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while ing.stats().connections == 0:  # subscribed: the session exists from here on
        assert loop.time() < deadline, f"ingest did not subscribe: {ing.stats().last_error}"
        await asyncio.sleep(0.05)
    return ing


# -- the ingest as a process -----------------------------------------------------------------------
STATUS_RE = re.compile(r"ingest: received=(\d+) written=(\d+) acked=(\d+) .* pending=(\d+)")
STOPPED_RE = re.compile(
    r"stopped \(mqtt-ingest\): received=(?P<received>\d+) written=(?P<written>\d+) acked=(?P<acked>\d+) "
    r"quarantined=(?P<quarantined>\d+) .* redelivered=(?P<redelivered>\d+) unacked=\d+ pending=(?P<pending>\d+)"
)


class IngestProcess:
    """``python -m shopfloor.app.cli ingest`` with a plant config of its own; its output is read
    continuously (so it never blocks on a full pipe) and kept; stopped by PID."""

    def __init__(self, tmp_path: Path, broker: MosquittoServer, db: Path, client_id: str, **kw: Any) -> None:
        doc = {
            "site": "central",
            "historian": {"url": f"sqlite:///{db}"},
            "ingest": ingest_settings(tmp_path, client_id=client_id, **kw),
        }
        self.config = tmp_path / f"plant-{client_id}.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        self.cmd = [sys.executable, "-m", "shopfloor.app.cli", "ingest", "--config", str(self.config),
                    "--from", broker.url, "--status-every", "0.3"]  # fmt: skip
        self.cwd = tmp_path
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, cwd=self.cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_line(lambda ln: "subscribed to " in ln, 30)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    async def wait_line(self, pred: Callable[[str], bool], timeout_s: float) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        seen = 0
        while loop.time() < deadline:
            for ln in self.lines[seen:]:
                if pred(ln):
                    return ln
            seen = len(self.lines)
            if (
                self.proc is not None
                and self.proc.returncode is not None
                and self._reader
                and self._reader.done()
            ):
                break  # exited, all of its output read
            await asyncio.sleep(0.05)
        raise AssertionError("no such line; output:\n" + "\n".join(self.lines[-40:]))

    async def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 20)

    async def terminate(self) -> dict[str, int]:
        """SIGTERM, wait for the exit; the counters of its last line."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        text = "\n".join(self.lines)
        assert code == 0, text[-3000:]
        m = STOPPED_RE.search(text)
        assert m, text[-3000:]
        return {k: int(v) for k, v in m.groupdict().items()}

    async def cleanup(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@pytest.fixture
async def processes() -> AsyncIterator[list[IngestProcess]]:
    """Ingest processes a test starts; every one still running is killed by PID in teardown."""
    started: list[IngestProcess] = []
    yield started
    for p in started:
        await p.cleanup()


# -- a) two edges, one ingest ----------------------------------------------------------------------
async def test_two_edges_one_ingest_every_sample_and_event_stored_exactly_once(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    db = tmp_path / "central.db"
    cfg = IngestConfig.model_validate(ingest_settings(tmp_path, url=broker.url))
    ing = await running_ingest(cfg, SQLiteStore(db))
    edges = [Edge(site, broker.url, tmp_path / f"spool-{site}", health_interval_s=0.5) for site in EDGES]
    try:
        for e in edges:
            await e.writer.start()
        await asyncio.gather(*(e.feed(0, 60) for e in edges))
        await flushed(edges)
        await assert_exactly_once(db, edges)
        s = ing.stats()
        status = ing.status()
    finally:
        for e in edges:
            await e.writer.stop(timeout_s=2)
        await settled(ing)  # the edges' last counters may still be on the way
        await ing.stop()
    final = ing.stats()
    assert s.quarantined_total == 0 and s.refused == 0
    assert final.pending == 0 and final.acked == final.received  # everything written was acknowledged
    assert s.written >= sum(len(e.expected) + len(e.events) for e in edges)
    publishers = {f"publisher-{site}" for site in EDGES}  # each edge by its own counters' asset
    assert set(ing.edges) == publishers
    assert all(ing.edges[p].publisher_pending is not None for p in publishers)  # the publisher's counters
    assert set(ing.lines) == {ln for e in edges for ln in e.lines}  # data age per line, from the data only
    assert status is not None and "edges=publisher-edge-a:" in status and "publisher-edge-b:" in status
    # the ingest's own counters went into the historian like any signal, per-edge data age included
    reader = SQLiteStore(db, create=False)
    await reader.open()
    try:
        health = {s.signal: s.value for s in await reader.latest("central/_system/shopfloor/ingest/test")}
    finally:
        await reader.close()
    assert {"received", "acked", "written", "quarantined", "edge.publisher-edge-a.age_s",
            "edge.publisher-edge-b.pending"} <= set(health)  # fmt: skip
    assert {f"line.{ln.replace('/', '.')}.age_s" for e in edges for ln in e.lines} <= set(health)
    assert health["acked"] == final.acked  # the final counters, stored at stop


# -- b) ingest SIGKILLed while messages are unacknowledged -------------------------------------------
async def test_a_sigkilled_ingest_restarted_with_its_session_loses_and_duplicates_nothing(
    tmp_path: Path, broker: MosquittoServer, edges: list[Edge], processes: list[IngestProcess]
) -> None:
    db = tmp_path / "central.db"
    # batches 3 s old: at any moment about 3 s of messages are received but not yet acknowledged
    first = IngestProcess(
        tmp_path, broker, db, "ingest-kill", batch={"max_points": 100_000, "max_age_ms": 3000}
    )
    processes.append(first)
    await first.start()
    feeding = asyncio.gather(*(e.feed(0, 400) for e in edges))  # ~8 s of data
    try:

        def stored_and_unacked(ln: str) -> bool:
            m = STATUS_RE.search(ln)
            return bool(m and int(m[2]) > 0 and int(m[4]) > 0)

        await first.wait_line(stored_and_unacked, 60)  # some stored, more received and held unacked
        await first.kill()
        await asyncio.sleep(0.5)
        second = IngestProcess(tmp_path, broker, db, "ingest-kill")  # same client id: same session
        processes.append(second)
        await second.start()
        await feeding
    finally:
        if not feeding.done():
            feeding.cancel()
    await flushed(edges)
    await assert_exactly_once(db, edges)
    after = await second.terminate()
    assert after["redelivered"] > 0  # the broker sent the killed one's unacknowledged messages again
    assert after["pending"] == 0 and after["quarantined"] == 0


# -- c) broker killed mid-stream ---------------------------------------------------------------------
async def test_a_killed_broker_loses_nothing(
    tmp_path: Path, broker: MosquittoServer, edges: list[Edge], processes: list[IngestProcess]
) -> None:
    db = tmp_path / "central.db"
    # no share group: Mosquitto 2.0's persistence does not restore shared subscriptions (docs/uns.md)
    ing = IngestProcess(tmp_path, broker, db, "ingest-broker", group="")
    processes.append(ing)
    await ing.start()
    # the broker saves after the subscription, not merely after the ingest started: a save in between
    # (the edges connecting) would leave a session without its subscription on disk
    t_subscribed = time.time()
    wait_for_file(broker.workdir / "data" / "mosquitto.db", t_subscribed)  # the session is on disk
    feeding = asyncio.gather(*(e.feed(0, 350) for e in edges))  # ~7 s of data
    try:
        await ing.wait_line(lambda ln: bool((m := STATUS_RE.search(ln)) and int(m[2]) > 0), 60)
        broker.kill()  # SIGKILL, mid-stream
        await asyncio.sleep(2.0)
        broker.restart()  # same port, same saved sessions
        await feeding
    finally:
        if not feeding.done():
            feeding.cancel()
    await flushed(edges)
    await assert_exactly_once(db, edges)
    after = await ing.terminate()
    assert after["pending"] == 0
    assert any("lost the connection" in ln for ln in ing.lines)


# -- d) malformed messages ---------------------------------------------------------------------------
async def test_malformed_messages_are_quarantined_by_reason_acknowledged_and_ingest_goes_on(
    tmp_path: Path, broker: MosquittoServer, edges: list[Edge]
) -> None:
    db = tmp_path / "central.db"
    cfg = IngestConfig.model_validate(ingest_settings(tmp_path, url=broker.url, client_id="ingest-bad"))
    ing = await running_ingest(cfg, SQLiteStore(db))
    asset = f"{PREFIX}/edge-a/line-0/cell/machine-0"
    bad = [
        (f"{asset}/sig_0", b'{"v":1,"samples":[[1,2.0,0]'),  # json
        (f"{asset}/sig_0", b"\xff\xfe\x00garbage"),  # encoding
        (f"{asset}/sig_0", b'{"v":1,"samples":[{"ts":1}]}'),  # shape
        (f"{asset}/sig_0", b'{"v":9,"samples":[]}'),  # version
        (f"{asset}/$events", b'{"v":1,"events":[{"kind":"explosion","ts_ns":1}]}'),  # event
        (f"{PREFIX}/edge-a", b'{"v":1,"samples":[[1,2.0,0]]}'),  # topic: no asset path
        (f"{PREFIX}/edge-a/line-0/cell/machine-0/$other", b"{}"),  # topic: neither signal nor $events
    ]
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="raw-publisher") as raw:
            for topic, payload in bad[:4]:
                await raw.publish(topic, payload, qos=1)
            await edges[0].feed(0, 20)  # good data in between
            for topic, payload in bad[4:]:
                await raw.publish(topic, payload, qos=1)
        await edges[1].feed(0, 20)
        await flushed(edges)
        await assert_exactly_once(db, edges)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while ing.stats().quarantined_total < len(bad) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await ing.stop()
    s = ing.stats()
    assert s.quarantined == {"json": 1, "encoding": 1, "shape": 1, "version": 1, "event": 1, "topic": 2}
    assert s.acked == s.received and s.pending == 0  # acknowledged: they will not come back
    entries = [json.loads(ln) for ln in (tmp_path / "ingest" / "malformed.jsonl").read_text().splitlines()]
    assert sorted(e["topic"] for e in entries) == sorted(t for t, _ in bad)
    undecodable = next(e for e in entries if e["reason"] == "encoding")
    assert "payload_b64" in undecodable and undecodable["bytes"] == len(bad[1][1])


# -- e) two ingest processes in one share group ------------------------------------------------------
async def test_two_ingest_processes_in_one_group_split_the_messages_and_store_everything_once(
    tmp_path: Path, broker: MosquittoServer, edges: list[Edge], processes: list[IngestProcess]
) -> None:
    db = tmp_path / "central.db"
    pair = [IngestProcess(tmp_path, broker, db, f"ingest-{i}") for i in (1, 2)]
    processes.extend(pair)
    for p in pair:
        await p.start()
    await asyncio.gather(*(e.feed(0, 150) for e in edges))
    await flushed(edges)
    await assert_exactly_once(db, edges)
    counts = [await p.terminate() for p in pair]  # SIGTERM: a clean stop, everything acknowledged
    assert all(c["received"] > 0 and c["pending"] == 0 for c in counts), counts
    assert all(c["acked"] == c["received"] for c in counts), counts


# -- f) the historian away: nothing is acknowledged ---------------------------------------------------
class DownStore:
    """The real SQLite store behind a switch: while ``down``, every write and ping fails as an
    unreachable historian's would."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.name = "flaky-sqlite"
        self.down = True

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    def encode_samples(self, batch: SampleBatch) -> Any:
        return self.store.encode_samples(batch)

    def encode_events(self, events: Any, seqs: Any = None) -> Any:
        return self.store.encode_events(events, seqs)

    async def send(self, payload: Any) -> None:
        if self.down:
            raise StoreUnavailable("historian down (test)", unreachable=True)
        await self.store.send(payload)

    async def ping(self) -> bool:
        return not self.down


async def test_nothing_is_acknowledged_while_the_historian_is_away_and_the_broker_sends_it_again(
    tmp_path: Path, broker: MosquittoServer, edges: list[Edge]
) -> None:
    db = tmp_path / "central.db"
    inflight = 16  # Receive Maximum: the broker sends no more than this many unacknowledged messages
    cfg = IngestConfig.model_validate(
        ingest_settings(tmp_path, url=broker.url, client_id="ingest-away", receive_maximum=inflight)
    )
    first = await running_ingest(cfg, DownStore(SQLiteStore(db)))
    try:
        await asyncio.gather(*(e.feed(0, 30) for e in edges))
        await flushed(edges)  # the broker has every message
        published = sum(e.writer.store.messages for e in edges)  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while first.stats().pending < inflight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        held = first.stats()
    finally:
        await first.stop(timeout_s=1)
    assert published > 2 * inflight
    assert held.pending == held.received == inflight  # bounded by the Receive Maximum, all held
    assert held.acked == 0 and held.written == 0 and held.retries > 0
    second = await running_ingest(cfg.with_overrides(receive_maximum=2000), SQLiteStore(db))  # same session
    try:
        await assert_exactly_once(db, edges)
    finally:
        await second.stop()
    s = second.stats()
    assert s.redelivered >= inflight  # the first one's unacknowledged messages, sent again
    assert s.acked == s.received and s.pending == 0


async def test_above_max_pending_points_ingest_stops_reading_and_keeps_its_connection(
    tmp_path: Path, broker: MosquittoServer, edges: list[Edge]
) -> None:
    """Mosquitto 2.0 sends past the Receive Maximum once acknowledgements flow, so the bound on what ingest
    holds is its own: it stops reading the socket (TCP back-pressure), nothing is dropped or sent twice."""
    db = tmp_path / "central.db"
    limit = 300  # points: a few messages' worth
    cfg = IngestConfig.model_validate(
        ingest_settings(tmp_path, url=broker.url, client_id="ingest-bound", max_pending_points=limit)
    )
    store = DownStore(SQLiteStore(db))
    ing = await running_ingest(cfg, store)
    try:
        await asyncio.gather(*(e.feed(0, 40) for e in edges))
        await flushed(edges)  # the broker has every message: far more than the limit
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while ing.stats().pending_points < limit and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # let anything still on the way arrive: reading must stay paused
        held = ing.stats()
        biggest = max(len(e.series) * PER_BATCH for e in edges) * 40  # no message holds more
        assert limit <= held.pending_points < limit + biggest
        assert held.connections == 1 and held.connected  # paused, not disconnected
        store.down = False  # the historian is back: everything arrives, once
        await assert_exactly_once(db, edges)
        s = ing.stats()
    finally:
        await ing.stop()
    assert s.connections == 1 and s.redelivered == 0  # never disconnected, so nothing was sent twice
    assert s.acked == s.received and s.pending == 0


async def test_two_edges_through_a_broker_restart_and_an_ingest_sigkill_in_one_run(
    tmp_path: Path, broker: MosquittoServer, edges: list[Edge], processes: list[IngestProcess]
) -> None:
    """The issue's "done when": both faults in one stream, every sample and event stored exactly once."""
    db = tmp_path / "central.db"
    settings: dict[str, Any] = {"group": "", "batch": {"max_points": 100_000, "max_age_ms": 2000}}
    first = IngestProcess(tmp_path, broker, db, "ingest-both", **settings)
    processes.append(first)
    await first.start()
    t_subscribed = time.time()
    wait_for_file(broker.workdir / "data" / "mosquitto.db", t_subscribed)  # the session is on disk
    feeding = asyncio.gather(*(e.feed(0, 500) for e in edges))  # ~10 s of data
    try:
        await first.wait_line(lambda ln: bool((m := STATUS_RE.search(ln)) and int(m[2]) > 0), 60)
        broker.kill()  # SIGKILL mid-stream: the edges spool, the ingest reconnects
        await asyncio.sleep(2.0)
        broker.restart()
        mark = len(first.lines)
        await first.wait_line(lambda ln: first.lines.index(ln) >= mark and "subscribed to " in ln, 60)

        def stored_and_unacked(ln: str) -> bool:
            m = STATUS_RE.search(ln)
            return first.lines.index(ln) >= mark and bool(m and int(m[2]) > 0 and int(m[4]) > 0)

        await first.wait_line(stored_and_unacked, 60)
        await first.kill()  # SIGKILL with received messages held unacknowledged
        second = IngestProcess(tmp_path, broker, db, "ingest-both", **settings)
        processes.append(second)
        await second.start()
        await feeding
    finally:
        if not feeding.done():
            feeding.cancel()
    await flushed(edges)
    await assert_exactly_once(db, edges)
    after = await second.terminate()
    assert after["redelivered"] > 0 and after["quarantined"] == 0
    assert any("lost the connection" in ln for ln in first.lines)
