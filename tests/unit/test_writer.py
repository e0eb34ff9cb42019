"""The writer's delivery logic against the real SQLite store and, for fault shapes SQLite cannot
produce (refusals, Retry-After), a scripted store; the same paths run against real InfluxDB in
tests/integration/test_influx_v1.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from historian.base import SeriesFrame, Store, event_seqs
from historian.errors import StoreRejected, StoreUnavailable
from historian.sqlite_store import SQLiteStore
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import HistorianConfig
from shopfloor.model import Event, EventKind

T0 = 1_700_000_000_000_000_000


def config(tmp_path: Path, **over: Any) -> HistorianConfig:
    raw: dict[str, Any] = {
        "url": f"sqlite:///{tmp_path}/h.db",
        "batch": {"max_points": 500, "max_age_ms": 20},
        "spool": {"dir": str(tmp_path / "spool"), "segment_bytes": 65536, "max_bytes": 64 << 20},
        "retry": {"initial_ms": 5, "max_ms": 50},
        "health_interval_s": 0,
    }
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return HistorianConfig.model_validate(raw)


def seq_batch(start: int, n: int, key: tuple[str, str] = ("s/a/l/m", "x")) -> SampleBatch:
    idx = np.arange(start, start + n)
    return SampleBatch.from_columns([key], np.zeros(n), T0 + idx * 1_000_000, idx.astype(float))


async def test_everything_submitted_lands_in_sqlite_once_in_order(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = SQLiteStore(tmp_path / "h.db")
    w = HistorianWriter(store, cfg)
    await w.start()
    for i in range(50):
        w.submit(seq_batch(i * 100, 100))
        if i % 7 == 0:
            await asyncio.sleep(0.005)
    w.submit_events([Event("s/a/l/m", EventKind.STATE_CHANGE, T0 + 5, "RUN", "running")])
    assert await w.flush(20)
    s = w.stats()
    assert s.produced == s.written == 5001 and s.pending == 0 and s.balanced
    frame = await store.query_raw("s/a/l/m", "x", 0, 2**62)
    assert frame.value.tolist() == list(range(5000))
    events = await store.query_events(0, 2**62)
    assert [e.code for e in events] == ["RUN"]
    await w.stop()


class ScriptedStore(Store):
    """A store whose failures are scripted: down for a while, or refusing marked values."""

    name = "scripted"

    def __init__(self) -> None:
        self.down = False
        self.retry_after: float | None = None
        self.poison: set[float] = set()
        self.rows: dict[int, float] = {}
        self.events: dict[tuple[str, str, str, int, int], Event] = {}
        self.sends = 0

    def encode_samples(self, batch: SampleBatch) -> Any:
        return batch

    def encode_events(self, events: Sequence[Event], seqs: Sequence[int] | None = None) -> Any:
        return list(zip(events, seqs if seqs is not None else event_seqs(events)))

    async def send(self, payload: Any) -> None:
        self.sends += 1
        await asyncio.sleep(0)
        if self.down:
            raise StoreUnavailable("connection refused", self.retry_after)
        if isinstance(payload, SampleBatch):
            bad = [v for v in payload.value.tolist() if v in self.poison]
            good = ~np.isin(payload.value, list(self.poison))
            for t, v in zip(payload.ts[good].tolist(), payload.value[good].tolist()):
                self.rows[t] = v  # like InfluxDB: a partial write keeps the good points
            if bad:
                raise StoreRejected(f"field type conflict on {len(bad)} points")
        else:  # events, keyed like the real stores: (asset, kind, key, ts, seq)
            refused = [e for e, _ in payload if e.value in self.poison]
            for e, seq in payload:
                if e.value not in self.poison:
                    self.events[(e.asset, str(e.kind), e.key, e.ts_ns, seq)] = e
            if refused:
                raise StoreRejected(f"refused {len(refused)} events")

    async def query_raw(self, *a: Any, **k: Any) -> SeriesFrame:
        raise NotImplementedError

    async def query_agg(self, *a: Any, **k: Any) -> SeriesFrame:
        raise NotImplementedError

    async def latest(self, asset: str | None = None) -> list:
        return []

    async def list_series(self) -> list:
        return []

    async def query_events(self, *a: Any, **k: Any) -> list:
        return []


async def test_refused_points_are_quarantined_and_batch_mates_land(tmp_path: Path) -> None:
    store = ScriptedStore()
    store.poison = {123.0, 4567.0}
    w = HistorianWriter(store, config(tmp_path, batch={"max_points": 5000}))
    await w.start()
    w.submit(seq_batch(0, 5000))
    assert await w.flush(20)
    s = w.stats()
    assert s.quarantined == 2 and s.written == 4998 and s.balanced
    assert sorted(store.rows.values()) == [float(v) for v in range(5000) if v not in (123, 4567)]
    entries = w.quarantine.entries()
    assert sorted(e.sample.value for e in entries) == [123.0, 4567.0]
    assert "field type conflict" in entries[0].reason
    # the operator fixes the cause and retries
    store.poison = set()
    assert await w.quarantine.retry(store) == (2, 0)
    assert len(store.rows) == 5000 and len(w.quarantine) == 0
    await w.stop()


async def test_refused_events_keep_their_numbers_when_bisected_and_retried(tmp_path: Path) -> None:
    """Eight events share asset, kind, key and timestamp; the store refuses the 6th. The halves sent
    during bisection keep the numbers they had in the whole write, so none overwrites another, and
    the quarantined one lands on its own identity when retried."""
    store = ScriptedStore()
    store.poison = {5.0}
    w = HistorianWriter(store, config(tmp_path))
    await w.start()
    w.submit_events(
        [Event("s/a/l/m", EventKind.ALARM, T0, "A", "alarm", float(i), key="x") for i in range(8)]
    )
    assert await w.flush(20)
    s = w.stats()
    assert s.quarantined == 1 and s.written == 7 and s.balanced
    assert sorted((k[4], e.value) for k, e in store.events.items()) == [
        (i, float(i)) for i in range(8) if i != 5
    ]
    store.poison = set()
    assert await w.quarantine.retry(store) == (1, 0)
    assert sorted((k[4], e.value) for k, e in store.events.items()) == [(i, float(i)) for i in range(8)]
    await w.stop()


async def test_outage_spools_then_replays_in_order_with_invariant_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    store = ScriptedStore()
    w = HistorianWriter(store, config(tmp_path))
    await w.start()
    w.submit(seq_batch(0, 1000))
    assert await w.flush(10)
    store.down = True
    for i in range(1, 30):
        w.submit(seq_batch(i * 1000, 1000))
        await asyncio.sleep(0.002)
        s = w.stats()
        assert s.balanced, s
    await asyncio.sleep(0.1)
    s = w.stats()
    assert s.state == "outage" and s.retries >= 2 and s.spooled > 0 and s.pending >= s.spooled
    waiting = s.pending
    store.down = False
    assert await w.flush(20)
    s = w.stats()
    assert s.written == 30_000 and s.replayed >= s.spooled and s.balanced and s.state == "online"
    assert list(store.rows.values()) == [float(v) for v in range(30_000)]
    await w.stop()
    # what the log says agrees with the counters (it once said 2,876 where they said 7,812)
    lines = [r.getMessage() for r in caplog.records]
    (back,) = [x for x in lines if "reachable again" in x]
    assert f"sending the {waiting} points waiting in the spool" in back
    (drained,) = [x for x in lines if "spool drained" in x]
    assert f"{s.replayed} points replayed since the outage began ({s.spooled} of them accepted" in drained
    assert f"written={s.written} replayed={s.replayed} spooled={s.spooled}" in drained


async def test_stop_during_outage_keeps_data_for_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ScriptedStore()
    store.down = True
    cfg = config(tmp_path)
    w = HistorianWriter(store, cfg)
    await w.start()
    w.submit(seq_batch(0, 777))
    await asyncio.sleep(0.05)
    caplog.set_level(logging.WARNING)
    await w.stop(timeout_s=30)  # the store is down: nothing to wait for, it stops at once
    s = w.stats()
    assert s.pending == 777 and s.written == 0 and s.balanced  # after stop too (it said 0 before)
    assert any(
        f"stopped with 777 points spooled in {cfg.spool.dir}" in r.getMessage()
        and "sent on the next start" in r.getMessage()
        for r in caplog.records
    )
    store.down = False
    w2 = HistorianWriter(store, cfg)
    await w2.start()
    assert w2.stats().recovered == 777
    assert await w2.flush(10)
    s = w2.stats()
    assert s.written == 777 and s.replayed == 777 and s.balanced
    await w2.stop()


def test_submit_before_start_is_an_error(tmp_path: Path) -> None:
    w = HistorianWriter(ScriptedStore(), config(tmp_path))
    with pytest.raises(RuntimeError, match="before start"):
        w.submit(seq_batch(0, 1))


async def test_health_signals_are_stored_in_the_historian(tmp_path: Path) -> None:
    cfg = config(tmp_path, health_interval_s=0.05, spool={"fsync_interval_ms": 20})
    store = SQLiteStore(tmp_path / "h.db")
    w = HistorianWriter(store, cfg, health_asset="s/_system/shopfloor/historian-writer")
    await w.start()
    w.submit(seq_batch(0, 10))
    await asyncio.sleep(0.3)
    assert await w.flush(10)
    await w.stop()
    latest = {
        s.signal: s.value
        for s in await SQLiteStore(tmp_path / "h.db").latest("s/_system/shopfloor/historian-writer")
    }
    assert {
        "produced",
        "written",
        "pending",
        "spooled",
        "replayed",
        "quarantined",
        "dropped",
        "online",
    } <= set(latest)
    assert latest["written"] >= 10 and latest["online"] == 1.0
    final = w.stats()  # the last stored counters are the final ones, the final batch included
    assert (latest["produced"], latest["written"], latest["pending"]) == (final.produced, final.written, 0)
    assert final.balanced and final.pending == 0


async def test_writer_starts_on_a_torn_spool_and_replays_the_intact_records(tmp_path: Path) -> None:
    store = ScriptedStore()
    store.down = True
    cfg = config(tmp_path)
    w = HistorianWriter(store, cfg)
    await w.start()
    for i in range(10):
        w.submit(seq_batch(i * 100, 100))
    await w.stop(timeout_s=0.1)
    segment = max((tmp_path / "spool").glob("*.seg"))
    with open(segment, "ab") as f:
        f.write(b"\x50\x53\x46\x53" + b"\x00" * 13)  # a crash in the middle of the next record
    store.down = False
    w2 = HistorianWriter(store, cfg)
    await w2.start()
    s = w2.stats()
    assert s.recovered == 1000 and s.torn_bytes == 17
    assert await w2.flush(10)
    assert list(store.rows.values()) == [float(v) for v in range(1000)]
    await w2.stop()


async def test_an_unexpected_backend_error_is_retried_not_fatal(tmp_path: Path) -> None:
    class Flaky(ScriptedStore):
        fails = 3

        async def send(self, payload: Any) -> None:
            if Flaky.fails:
                Flaky.fails -= 1
                raise KeyError("bug in a backend")
            await super().send(payload)

    store = Flaky()
    w = HistorianWriter(store, config(tmp_path))
    await w.start()
    w.submit(seq_batch(0, 300))
    assert await w.flush(10)
    s = w.stats()
    assert s.written == 300 and s.retries == 3 and "KeyError" in s.last_error and s.balanced
    assert list(store.rows.values()) == [float(v) for v in range(300)]
    await w.stop()
