"""The live-stream bus on the real data path: the virtual plant's Modbus server → the Modbus connector →
acquisition → bus → historian writer → SQLite, with a test subscriber that must see every sample the
historian stores, and a deliberately stalled one that must cost the historian nothing."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from pathlib import Path

import yaml

from historian.sqlite_store import SQLiteStore
from plant_simulator.config_gen import plant_config
from plant_simulator.plant import default_plant
from plant_simulator.service import SimulatorOptions, SimulatorService
from shopfloor.app.acquisition import Acquisition, load_plant
from shopfloor.app.pipeline import live_stream
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, now_ns
from shopfloor.service import ServiceRunner
from shopfloor.testing.servers import free_port

Row = tuple[str, str, int, float | None, int]


def rows(batch: SampleBatch) -> list[Row]:
    return [
        (s.asset, s.signal, s.ts_ns, None if math.isnan(s.value) else s.value, int(s.quality))
        for s in batch.to_samples()
    ]


class Recording:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.events = 0

    async def on_batch(self, batch: SampleBatch) -> None:
        self.rows += rows(batch)

    async def on_events(self, events: Sequence[Event]) -> None:
        self.events += len(events)


class Stalled:
    """Takes its first item and never comes back."""

    async def on_batch(self, batch: SampleBatch) -> None:
        await asyncio.Event().wait()

    async def on_events(self, events: Sequence[Event]) -> None:
        await asyncio.Event().wait()


async def test_a_subscriber_sees_every_stored_sample_while_a_stalled_one_costs_nothing(
    tmp_path: Path,
) -> None:
    plant = default_plant(seed=3, start_ns=now_ns())
    port = free_port()
    doc = json.loads(json.dumps(plant_config(plant, modbus_port=port)))  # plain dicts for safe_dump
    for src in doc["sources"]:
        src["enabled"] = src["connector"] == "modbus"
        if src["connector"] == "modbus":
            src["settings"]["groups"] = {"fast": 0.1}
            src["settings"]["default_group"] = "fast"
    doc["historian"] = {
        "url": f"sqlite:///{tmp_path / 'h.db'}",
        "spool": {"dir": str(tmp_path / "spool")},
        "health_interval_s": 0.5,
    }
    (tmp_path / "plant.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg, sources = load_plant(tmp_path / "plant.yaml")

    writer, bus = live_stream(cfg)
    recording = Recording()
    bus.subscribe("test", recording)
    bus.subscribe("stalled", Stalled(), max_points=1000)
    simulator = SimulatorService(
        plant, SimulatorOptions(speed=30, opcua_port=0, modbus_port=port, tick_s=0.1)
    )
    acquisition = Acquisition(cfg, sources, bus, state_dir=tmp_path / "state", health_interval_s=0.5)
    runner = ServiceRunner(
        [writer, bus, simulator, acquisition], status_every_s=0, duration_s=4.0, handle_signals=False
    )
    assert await runner.run() == 0

    health = bus.health()
    stats = writer.stats()
    store = SQLiteStore(tmp_path / "h.db")
    stored: list[Row] = []
    for key in await store.list_series():
        if key.asset == writer.health_asset:  # the writer stores its own counters, not via the bus
            continue
        frame = await store.query_raw(key.asset, key.signal, 0, 2**62)
        assert frame.quality is not None
        stored += [
            (key.asset, key.signal, t, None if math.isnan(v) else v, q)
            for t, v, q in zip(frame.ts.tolist(), frame.value.tolist(), frame.quality.tolist())
        ]
    await store.close()
    print(
        f"\n[bus] published {bus.published_points} points; test subscriber {len(recording.rows)} samples "
        f"+ {recording.events} events; historian {len(stored)} samples, writer {stats.written} written; "
        f"stalled: delivered {health['stalled'].delivered}, dropped {health['stalled'].dropped}"
    )
    assert len(recording.rows) > 229 * 20  # the plant was read for real, many polls
    # the test subscriber saw exactly what the historian holds: every sample, same value and quality
    assert sorted(recording.rows, key=repr) == sorted(stored, key=repr)
    assert len(recording.rows) + recording.events == bus.published_points == health["test"].delivered
    # the stalled subscriber lost everything after its first item, counted; the historian lost nothing
    assert health["stalled"].delivered == 0
    assert health["stalled"].dropped == bus.published_points
    assert stats.dropped_total == 0 and stats.quarantined == 0 and stats.pending == 0
    own = stats.produced - health["historian"].delivered  # the writer's own counter samples
    assert stats.written == stats.produced and 0 < own <= 10 * 10
    assert health["historian"].delivered == bus.published_points
