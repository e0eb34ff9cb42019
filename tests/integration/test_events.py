"""Events never overwrite each other, and a replay stores them once: real SQLite and influxd.

Identity is (asset, kind, key, ts_ns) plus the seq the store numbers events sharing those four with
within one write. Also: a SQLite file made with the old events schema is migrated in place.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

from historian.base import Store, event_seqs
from historian.influx_v1 import InfluxV1Store
from historian.influx_v2 import InfluxV2Store
from historian.sqlite_store import SQLiteStore
from historian.writer import HistorianWriter
from shopfloor.config.historian_url import parse_url
from shopfloor.config.schema import HistorianConfig
from shopfloor.model import Event, EventKind
from shopfloor.testing.servers import VictoriaMetricsServer

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000
PLC = "qijiang/copper/hot-rolling/plc-1"
MILL = "qijiang/copper/hot-rolling/mill-1"

# The events table exactly as it was created before key and seq existed.
OLD_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    asset TEXT NOT NULL,
    signal TEXT NOT NULL,
    UNIQUE (asset, signal)
);
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    asset TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    value REAL,
    data TEXT,
    PRIMARY KEY (asset, kind, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""


def burst(ts: int = T0, asset: str = PLC) -> list[Event]:
    """50 events of one asset, one kind, one instant: 20 distinct keys, 20 on one key, 10 without.

    Every message is unique, so a lost or doubled event shows.
    """
    events = []
    for i in range(50):
        if i % 5 == 4:
            key = ""  # 10 events without a key
        elif i % 2 == 0:
            key = f"string_tag_{i:02d}"  # 20 distinct keys
        else:
            key = "recipe_name"  # 20 on the same key
        events.append(
            Event(
                asset, EventKind.SYSTEM, ts, code=key or "plain", message=f"text {i}", value=float(i),
                data={"i": i}, key=key,
            )
        )  # fmt: skip
    return events


def stored_order(events: list[Event]) -> list[Event]:
    """The order query_events returns: ts, asset, kind, key, then write order within a write."""
    seqs = event_seqs(events)
    pairs = sorted(
        zip(events, seqs, strict=True), key=lambda p: (p[0].ts_ns, p[0].asset, str(p[0].kind), p[0].key, p[1])
    )
    return [e for e, _ in pairs]


async def test_fifty_events_of_one_asset_at_one_instant_all_land(store: Store) -> None:
    events = burst()
    assert Counter(e.key for e in events)["recipe_name"] == 20 and len({e.key for e in events}) == 22
    others = [
        Event(MILL, EventKind.SYSTEM, T0, "x", "same instant, other asset", key="recipe_name"),
        Event(PLC, EventKind.ALARM, T0, "HI", "same instant, other kind", 1.0, key="recipe_name"),
    ]
    await store.write_events(events + others)
    got = await store.query_events(T0, T0 + 1)
    assert len(got) == 52
    assert got == stored_order(events + others)
    assert await store.query_events(T0, T0 + 1, asset=PLC, kind=EventKind.SYSTEM) == stored_order(events)
    # the 20 that share (asset, kind, key, ts) come back in the order they were written
    same = [
        e.message for e in got if e.key == "recipe_name" and e.asset == PLC and e.kind == EventKind.SYSTEM
    ]
    assert same == [e.message for e in events if e.key == "recipe_name"]


async def test_writing_the_same_events_again_stores_nothing_twice(store: Store) -> None:
    first = burst(T0) + burst(T0 + SEC)
    await store.write_events(first)
    for _ in range(3):  # replays of the same write
        await store.write_events(first)
    await store.write_events(first[:50])  # a replay of the first half only, as its own write
    got = await store.query_events(T0, T0 + 2 * SEC)
    assert got == stored_order(first)
    assert len({(e.ts_ns, e.message) for e in got}) == 100


async def test_events_without_a_key_keep_the_series_they_always_had(store: Store) -> None:
    e = Event(MILL, EventKind.STATE_CHANGE, T0 + 7, "RUN", "running", 1.0)
    await store.write_events([e])
    await store.write_events([e])  # the old identity: asset, kind, ts
    assert await store.query_events(T0, T0 + SEC) == [e]
    if isinstance(store, InfluxV1Store):
        series = await store.query('SHOW SERIES FROM "_shopfloor_events"')
        assert [v for s in series for (v,) in s["values"]] == [
            f"_shopfloor_events,asset={MILL},kind=state_change"
        ]


async def test_writer_replaying_its_spool_after_a_crash_stores_the_events_once(
    store: Store, tmp_path: Path
) -> None:
    """A snapshot of the spool taken before the store acknowledged is replayed by a new writer."""
    cfg = HistorianConfig.model_validate(
        {"spool": {"dir": str(tmp_path / "spool")}, "batch": {"max_age_ms": 10}, "health_interval_s": 0}
    )
    events = burst(T0) + burst(T0, MILL) + burst(T0 + 3)
    first = HistorianWriter(store, cfg)
    await first.start()
    first.submit_events(events[:100])
    first.submit_events(events[100:])
    # the spool as it is on disk now, before the sender task ran: what a crash would leave behind
    shutil.copytree(tmp_path / "spool", tmp_path / "crashed")
    assert await first.flush(30)
    await first.stop()
    assert len(await store.query_events(T0, T0 + SEC)) == 150

    await store.open()  # stop() closed it
    cfg2 = cfg.model_copy(update={"spool": cfg.spool.model_copy(update={"dir": tmp_path / "crashed"})})
    replay = HistorianWriter(store, cfg2)
    await replay.start()
    assert await replay.flush(30)
    stats = replay.stats()
    await replay.stop()
    assert stats.recovered == 150 and stats.written == 150 and stats.balanced
    await store.open()
    assert await store.query_events(T0, T0 + SEC) == stored_order(events)


def test_old_sqlite_schema_is_migrated_in_place_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_EVENTS_DDL)
    old_rows = [
        (MILL, "state_change", T0 + i, f"S{i}", f"message {i}", float(i) if i % 2 else None,
         json.dumps({"i": i}) if i % 3 else None)
        for i in range(500)
    ] + [(PLC, "alarm", T0, "HI", "old alarm", 3.0, None)]  # fmt: skip
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", old_rows)
    conn.execute("INSERT INTO series (asset, signal) VALUES (?, ?)", (MILL, "speed"))
    conn.execute("INSERT INTO samples VALUES (1, ?, 1.5, 0)", (T0,))
    conn.commit()
    conn.close()

    async def run() -> None:
        # a read-only reader reads the old schema as it is, and leaves it alone
        reader = SQLiteStore(path, create=False)
        await reader.open()
        before = await reader.query_events(0, 2**62)
        assert len(before) == 501 and {e.key for e in before} == {""}
        check = sqlite3.connect(path)
        assert "key" not in {r[1] for r in check.execute("PRAGMA table_info(events)")}
        check.close()

        store = SQLiteStore(path)
        await store.open()  # migrates
        after = await store.query_events(0, 2**62)
        assert after == before
        assert next(e for e in after if e.code == "S1") == Event(
            MILL, EventKind.STATE_CHANGE, T0 + 1, "S1", "message 1", 1.0, {"i": 1}
        )
        assert len(await store.query_raw(MILL, "speed", T0, T0 + 1)) == 1  # other tables untouched
        # the new identity works on the migrated file: two events where there was room for one
        await store.write_events(
            [Event(PLC, EventKind.ALARM, T0, "HI", "new alarm", 4.0)]
        )  # overwrites, as before
        await store.write_events(burst(T0))
        got = await store.query_events(T0, T0 + 1, asset=PLC)
        assert [e.message for e in got if e.kind == EventKind.ALARM] == ["new alarm"]
        assert len([e for e in got if e.kind == EventKind.SYSTEM]) == 50
        assert len(await reader.query_events(0, 2**62)) == 551  # the reader's connection sees the new schema
        await store.close()
        await reader.close()

        again = SQLiteStore(path)  # a second open finds nothing to migrate
        await again.open()
        assert len(await again.query_events(0, 2**62)) == 551
        await again.close()

    asyncio.run(run())
    conn = sqlite3.connect(path)
    info = conn.execute("PRAGMA table_info(events)").fetchall()
    pk = [name for _, name in sorted((r[5], r[1]) for r in info if r[5])]
    assert pk == ["asset", "kind", "key", "ts", "seq"]
    assert conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
    ).fetchall() == [("events_ts",)]
    assert (
        conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'events_%' AND type = 'table'"
        ).fetchall()
        == []
    )
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


async def test_v2_write_api_keeps_key_and_seq_apart(victoria: VictoriaMetricsServer) -> None:
    """Through /api/v2/write (VictoriaMetrics stores each numeric field as <measurement>_<field>).

    VictoriaMetrics has no reads for us and keeps identical points twice (no dedup configured), so
    this checks the series: one per (key, seq), and a replay lands on the same series and instants.
    """
    ts = (time.time_ns() // SEC - 600) * SEC  # inside VictoriaMetrics' retention
    asset = "v2plant/copper/extrusion/plc-9"
    url = parse_url(f"influxdb-v2+{victoria.base_url}/shopfloor?org=qijiang")
    store = InfluxV2Store(url, token=None)
    events = burst(ts, asset)
    await store.write_events(events)
    await store.write_events(events)  # a replay
    await store.close()
    seen: dict[tuple[str, str], tuple[set[int], set[float]]] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = {}
        for line in victoria.export('{__name__="_shopfloor_events_value"}').splitlines():
            doc = json.loads(line)
            m = doc["metric"]
            if m.get("asset") == asset:
                seen[(m.get("key", ""), m.get("seq", "0"))] = (set(doc["timestamps"]), set(doc["values"]))
        if len(seen) >= 50:
            break
        await asyncio.sleep(0.2)
    expected = {
        (e.key, str(s)): ({ts // 1_000_000}, {e.value})
        for e, s in zip(events, event_seqs(events), strict=True)
    }
    assert seen == expected
