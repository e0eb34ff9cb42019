"""The acquisition service isolates sources: a connector that raises never stops the others.
Per-source health, failed items included, reaches the health batch."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import numpy as np
import pytest

from historian.sqlite_store import SQLiteStore
from historian.writer import HistorianWriter
from shopfloor.app.acquisition import Acquisition
from shopfloor.batch import SampleBatch
from shopfloor.bus import Bus
from shopfloor.config import parse_plant_config
from shopfloor.connector import Connector, ConnectorSpec, SettingsBase, Sink, TagBase
from shopfloor.health import HealthTracker
from shopfloor.model import EventKind, now_ns


class Settings(SettingsBase):
    period_s: float = 0.01


class Tag(TagBase):
    pass


class TickConnector(Connector[Settings, Tag]):
    """Emits a counter on every tick: gaps in the counter mean lost ticks."""

    spec = ConnectorSpec(name="tick", settings_model=Settings, tag_model=Tag)

    async def start(self, sink: Sink) -> None:
        self.n = 0
        self.task = self.spawn(self._run(sink), "tick")
        self.tracker.on_connected()

    async def _run(self, sink: Sink) -> None:
        keys = [(t.asset, t.signal) for t in self.ctx.tags]
        while True:
            sink.emit(SampleBatch.from_columns(keys, [0], [now_ns()], [float(self.n)]))
            self.tracker.on_samples(1)
            self.n += 1
            await asyncio.sleep(self.ctx.settings.period_s)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class RaisesOnStart(TickConnector):
    spec = ConnectorSpec(name="raises", settings_model=Settings, tag_model=Tag)
    attempts = 0

    async def start(self, sink: Sink) -> None:
        RaisesOnStart.attempts += 1
        raise RuntimeError("vendor library exploded")


class RaisesInLoop(TickConnector):
    spec = ConnectorSpec(name="dies", settings_model=Settings, tag_model=Tag)
    starts = 0

    async def start(self, sink: Sink) -> None:
        RaisesInLoop.starts += 1
        await super().start(sink)

    async def _run(self, sink: Sink) -> None:
        await asyncio.sleep(0.05)
        raise ZeroDivisionError("bug in the poll loop")


CONFIG = """
site: q
assets:
  - path: q/a/l/good
    signals: [{name: n}]
  - path: q/a/l/bad
    signals: [{name: n}]
historian:
  url: sqlite:///{tmp}/h.db
  spool: {dir: "{tmp}/spool"}
  batch: {max_age_ms: 20}
  health_interval_s: 0
"""


async def test_a_failing_connector_does_not_stop_the_others(tmp_path: Path) -> None:
    cfg = parse_plant_config(CONFIG.replace("{tmp}", str(tmp_path)))
    writer = HistorianWriter(SQLiteStore(tmp_path / "h.db"), cfg.historian)
    await writer.start()
    bus = Bus()
    bus.attach("historian", writer.submit, writer.submit_events)
    good = Tag(asset="q/a/l/good", signal="n")
    bad = Tag(asset="q/a/l/bad", signal="n")
    sources = {
        "good": (TickConnector, Settings(), [good]),
        "raises": (RaisesOnStart, Settings(), [bad]),
        "dies": (RaisesInLoop, Settings(), [bad]),
    }
    acq = Acquisition(cfg, sources, bus, state_dir=tmp_path / "state", health_interval_s=0.1,
                      restart_initial_s=0.05, restart_max_s=0.2, watch_interval_s=0.05)  # fmt: skip
    await acq.start()
    await asyncio.sleep(1.5)
    for _ in range(300):  # a loaded machine: give the restarts their time, bounded
        h = acq.health()
        if (
            RaisesOnStart.attempts >= 3
            and RaisesInLoop.starts >= 3
            and h["dies"].errors.get("crashed", 0) >= 2
        ):
            break
        await asyncio.sleep(0.1)
    batch = acq.health_batch()
    await acq.stop()
    health = acq.health()  # after stop: nothing is emitted any more
    assert await writer.flush(10)
    await writer.stop()
    frame = await SQLiteStore(tmp_path / "h.db").query_raw("q/a/l/good", "n", 0, 2**62)
    print(
        f"\n[isolation] good source: {len(frame)} ticks in 1.5 s; 'raises' start attempts {RaisesOnStart.attempts}"
    )
    # the healthy source kept ticking, every tick stored, no gap in its counter
    assert len(frame) > 20
    assert np.array_equal(frame.value, np.arange(len(frame), dtype=float))
    assert health["good"].samples == len(frame)
    # the broken one is reported, and was retried with backoff rather than given up on
    assert health["raises"].state == "failed" and "vendor library exploded" in health["raises"].last_error
    assert RaisesOnStart.attempts >= 3
    # a connector whose poll task crashed after a good start is noticed and restarted
    assert RaisesInLoop.starts >= 3
    assert "bug in the poll loop" in health["dies"].last_error
    assert health["dies"].errors["crashed"] >= 2  # counted across restarts, not forgotten
    assert health["raises"].errors["start_failed"] == RaisesOnStart.attempts
    assert {k.signal for k in batch.keys} >= {
        "connected",
        "samples_per_s",
        "errors",
        "data_age_s",
        "failed_items",
    }
    assert any(k.asset == "q/_system/sources/raises" for k in batch.keys)


class OneItemFails(TickConnector):
    """Runs, but one of its items is not delivering (as an OPC UA node gone after a restart)."""

    spec = ConnectorSpec(name="one_item_fails", settings_model=Settings, tag_model=Tag)

    async def start(self, sink: Sink) -> None:
        await super().start(sink)
        self.tracker.on_item_failed("ns=2;s=gone", "BadNodeIdUnknown")
        self.tracker.on_item_failed("ns=2;s=gone", "BadNodeIdUnknown")  # no change: not counted again


async def test_failed_items_are_in_health_and_in_the_health_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = parse_plant_config(CONFIG.replace("{tmp}", str(tmp_path)))
    writer = HistorianWriter(SQLiteStore(tmp_path / "h.db"), cfg.historian)
    await writer.start()
    bus = Bus()
    bus.attach("historian", writer.submit, writer.submit_events)
    sources = {"opc": (OneItemFails, Settings(), [Tag(asset="q/a/l/good", signal="n")])}
    acq = Acquisition(cfg, sources, bus, state_dir=tmp_path / "state", health_interval_s=0)
    await acq.start()
    for _ in range(200):
        if acq.health()["opc"].state == "connected":
            break
        await asyncio.sleep(0.01)
    h = acq.health()["opc"]
    batch = acq.health_batch()
    await acq.stop()
    await writer.stop()
    assert h.failed_items == {"ns=2;s=gone": "BadNodeIdUnknown"} and h.errors == {"item_failed": 1}
    values = {(k.asset, k.signal): v for k, v in zip(batch.keys, batch.value.tolist(), strict=True)}
    assert values[("q/_system/sources/opc", "failed_items")] == 1.0
    assert values[("q/_system/sources/opc", "errors")] == 1.0
    logged = [r.getMessage() for r in caplog.records if "ns=2;s=gone" in r.getMessage()]
    assert logged == ["source opc: item ns=2;s=gone not delivering: BadNodeIdUnknown"]


def test_item_restored_leaves_failed_items_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    tracker = HealthTracker("plc")
    tracker.on_item_failed("a", "timeout")
    tracker.on_item_failed("a", "exception_02")  # reason changed: a new transition
    tracker.on_item_restored("a")
    tracker.on_item_restored("a")  # already restored: nothing
    assert tracker.snapshot().failed_items == {} and tracker.errors == {"item_failed": 2}
    assert [r.getMessage() for r in caplog.records] == [
        "source plc: item a not delivering: timeout",
        "source plc: item a not delivering: exception_02",
        "source plc: item a restored",
    ]


async def test_a_restart_of_acquisition_records_the_hole_as_a_gap_per_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = parse_plant_config(CONFIG.replace("{tmp}", str(tmp_path)))
    sources = {"good": (TickConnector, Settings(), [Tag(asset="q/a/l/good", signal="n")])}

    async def run_once(seconds: float) -> None:
        writer = HistorianWriter(SQLiteStore(tmp_path / "h.db"), cfg.historian)
        await writer.start()
        bus = Bus()
        bus.attach("historian", writer.submit, writer.submit_events)
        acq = Acquisition(
            cfg, sources, bus, state_dir=tmp_path / "state", health_interval_s=0, mark_interval_s=0.05
        )
        await acq.start()
        await asyncio.sleep(seconds)
        await acq.stop()
        await writer.stop()

    await run_once(0.3)
    await asyncio.sleep(0.5)  # acquisition is not running: nobody reads the source
    await run_once(0.3)
    store = SQLiteStore(tmp_path / "h.db")
    frame = await store.query_raw("q/a/l/good", "n", 0, 2**62)
    gaps = [e for e in await store.query_events(0, 2**62) if e.kind == EventKind.GAP]
    await store.close()
    restart = int(np.flatnonzero(np.diff(frame.value) < 0)[0]) + 1  # the counter starts again at 0
    (gap,) = gaps
    assert gap.asset == "q/a/l/good" and gap.code == "acquisition_restart" and gap.key == "good"
    assert gap.data["from_ns"] == int(frame.ts[restart - 1])  # the last sample before the stop
    assert gap.data["to_ns"] == gap.ts_ns == int(frame.ts[restart])  # the first one after the restart
    assert gap.data["to_ns"] - gap.data["from_ns"] >= 500_000_000
    assert sum("acquisition was not running" in r.getMessage() for r in caplog.records) == 1
