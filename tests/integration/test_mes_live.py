"""The MES on the live path: the virtual plant's OPC UA server → connector → acquisition → bus → writer
and MES. The MES starts late (it must rebuild what it missed from the historian), and its intervals and
counts must equal the simulator's ground truth at every sampled instant.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from sqlalchemy import func, select

from historian.factory import open_reader
from historian.sqlite_store import SQLiteStore
from mes import tables as t
from mes.db import open_engine
from mes.lots import LotMaker, trace
from mes.service import MesService
from plant_simulator.config_gen import plant_config
from plant_simulator.plant import default_plant
from plant_simulator.service import SimulatorOptions, SimulatorService
from shopfloor.app.acquisition import Acquisition, load_plant
from shopfloor.app.pipeline import live_stream
from shopfloor.model import now_ns
from shopfloor.service import ServiceRunner
from shopfloor.testing.servers import free_port

NS = 1_000_000_000
SPEED = 240.0
LONG_NS = 600 * NS  # a state this long (2.5 s of wall time) cannot fall between two publications


class Late:
    """Starts the wrapped service once the historian holds ``points`` (the MES was down meanwhile)."""

    name = "late-mes"

    def __init__(self, service: MesService, written: Callable[[], int], points: int) -> None:
        self.service = service
        self.written = written
        self.points = points
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async def later() -> None:
            for _ in range(600):  # bounded: 60 s
                if self.written() >= self.points:
                    break
                await asyncio.sleep(0.1)
            await self.service.start()

        self.task = asyncio.create_task(later())

    async def stop(self) -> None:
        assert self.task is not None and self.task.done(), "the MES never started"
        await self.service.stop()

    def status(self) -> str | None:
        return None


async def test_mes_intervals_and_counts_equal_the_simulators_ground_truth(tmp_path: Path) -> None:
    start = now_ns() // NS * NS
    plant = default_plant(seed=11, start_ns=start)
    port = free_port()
    doc = json.loads(json.dumps(plant_config(plant, opcua_port=port)))
    for src in doc["sources"]:  # OPC UA: samples carry the plant's own (source) timestamps
        src["enabled"] = src["connector"] == "opcua"
    doc["historian"] = {"url": f"sqlite:///{tmp_path / 'h.db'}", "spool": {"dir": str(tmp_path / "spool")}}
    doc["mes"]["database"] = f"sqlite:///{tmp_path / 'mes.db'}"
    (tmp_path / "plant.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    cfg, sources = load_plant(tmp_path / "plant.yaml")

    writer, bus = live_stream(cfg)
    engine = open_engine(cfg.mes)
    mes = MesService(
        cfg.mes, engine, [(a.path, a.kind, a.description) for a in cfg.assets], open_reader(cfg.historian), bus,
        settle_s=1.0, lot_maker=LotMaker(cfg.mes),
    )  # fmt: skip
    simulator = SimulatorService(
        plant, SimulatorOptions(speed=SPEED, opcua_port=port, modbus_port=0, tick_s=0.1)
    )
    acquisition = Acquisition(cfg, sources, bus, state_dir=tmp_path / "state")
    runner = ServiceRunner(
        [writer, bus, simulator, acquisition, Late(mes, lambda: writer.stats().written, 800)],
        status_every_s=0,
        duration_s=20.0,
        handle_signals=False,
    )
    assert await runner.run() == 0
    assert mes.caught_up_samples > 0  # it rebuilt its first seconds from the historian
    assert mes.samples_used > mes.caught_up_samples  # and then derived live from the bus

    truth = default_plant(seed=11, start_ns=start)  # a twin: same seed and start, same data
    store = SQLiteStore(tmp_path / "h.db")
    served_s = int(
        (
            max(
                f.ts.max() for f in [await store.query_raw(a.path, "state", 0, 2**62) for a in cfg.mes.assets]
            )
            - start
        )
        // NS
    )
    served_end = start + served_s * NS
    blocks = [truth.block(k) for k in range(served_s // 3600 + 1)]  # the twin's data up to the served time
    transitions = 0
    lots_checked = 0
    with engine.connect() as conn:
        for a in cfg.mes.assets:
            frame = await store.query_raw(a.path, "state", 0, 2**62)  # OPC UA reports changes only
            rows = conn.execute(
                select(t.state_intervals)
                .where(t.state_intervals.c.asset == a.path)
                .order_by(t.state_intervals.c.start_ns)
            ).all()
            assert rows, a.path
            begin = np.array([r.start_ns for r in rows], np.int64)
            assert begin[0] == frame.ts[0]  # the first interval starts at the first sample
            # each interval's state is the plant's true state at the instant it starts (exact: the
            # server stamps each value with the simulated second it belongs to)
            true_state, true_reason = truth.assets[a.path].schedule.states((begin - start) // NS)
            assert [r.plc_state for r in rows] == true_state.tolist(), a.path
            reasons = [r.plc_reason for r in rows]
            assert reasons == [None if st == 1 else int(rc) for st, rc in zip(true_state, true_reason)], (
                a.path
            )
            # and no true state that lasted well beyond the sampling resolution was missed: the MES has
            # an interval of that state starting inside it (how soon after its true start depends on how
            # promptly the server published under load, so that is not asserted)
            seg_start, seg_state, _ = truth.assets[a.path].schedule.arrays()
            seg_a = start + seg_start.astype(np.int64) * NS
            seg_b = np.append(seg_a[1:], np.iinfo(np.int64).max)
            plc = np.array([r.plc_state for r in rows])
            for sa, sb, st in zip(seg_a.tolist(), seg_b.tolist(), seg_state.tolist(), strict=True):
                if sa > frame.ts[0] and sb < served_end and sb - sa >= LONG_NS:
                    hit = (begin >= sa) & (begin < sb) & (plc == st)
                    assert hit.any(), (
                        f"{a.path}: state {st} from {(sa - start) // NS} s to {(sb - start) // NS} s missed"
                    )
            transitions += len(rows) - 1
            # counts: the MES total equals the simulator's counter between the first and last sample
            if a.counters.total:
                c = await store.query_raw(a.path, a.counters.total, 0, 2**62)
                k = truth.signal_index(a.path, a.counters.total)
                s0, s1 = int((c.ts[0] - start) // NS), int((c.ts[-1] - start) // NS)
                v0 = _value_at(blocks, a.path, k, s0)
                v1 = _value_at(blocks, a.path, k, s1)
                total = conn.scalar(
                    select(func.coalesce(func.sum(t.count_buckets.c.total), 0.0)).where(
                        t.count_buckets.c.asset == a.path
                    )
                )
                assert total == v1 - v0, f"{a.path}: MES counted {total}, the simulator made {v1 - v0}"
                rule = next(
                    (r for r in cfg.mes.lots if r.asset == a.path and r.counter == a.counters.total), None
                )
                if rule is not None:  # one lot per unit counted (or `pieces` of them)
                    made = conn.scalar(
                        select(func.count()).select_from(t.lots).where(t.lots.c.asset == a.path)
                    )
                    assert made == total * rule.pieces, f"{a.path}: {made} lots for {total} units"
                    lots_checked += 1
        # a weld made after the CNCs had housings waiting traces back to one of them (three CNCs make
        # a housing every ~32 s, the weld cell takes one every 150 s)
        weld = conn.scalar(
            select(t.lot_links.c.child)
            .join(t.lots, t.lots.c.id == t.lot_links.c.child)
            .where(t.lots.c.kind == "welded_housing")
            .order_by(t.lots.c.end_ns.desc())
        )
        assert weld is not None, "no weld was linked to a machined housing"
        back = trace(conn, weld, "backward")
        assert {n["kind"] for n in back.nodes} == {"welded_housing", "housing"}
        assert {n["asset"] for n in back.nodes if n["kind"] == "housing"} <= {a.path for a in cfg.mes.assets}
    await store.close()
    engine.dispose()
    assert lots_checked >= 5
    print(
        f"\n[mes live] {transitions} state changes derived; {mes.caught_up_samples} samples caught up from the historian, {mes.samples_used} in all"
    )
    assert transitions >= 3, "the run should cross some state changes"


def _value_at(blocks: list, path: str, k: int, second: int) -> float:  # type: ignore[type-arg]
    block = blocks[second // 3600]
    return float(block.values[path][k][second - block.t0])
