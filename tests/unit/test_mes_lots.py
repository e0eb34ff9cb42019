"""Lots and genealogy (mes.lots) on a real, migrated SQLite file: a copper chain (melt to slit strip, with a
merge and a split) and a gearbox chain (parts, welds, tested gearboxes with rejects), from hand-made increments.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert, select

from mes import tables as t
from mes.db import migrate, open_engine
from mes.derive import Deriver, Increment
from mes.lots import LotMaker, LotStats, lot_counters, trace
from mes.records import upsert
from shopfloor.batch import SampleBatch
from shopfloor.config.mes import LotRuleConfig, MesAssetConfig, MesConfig

NS = 1_000_000_000
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z

# Not the simulator's plant: nothing in mes.lots may depend on its names.
FURNACE = "acme/copper/melt/furnace-1"
CASTER = "acme/copper/cast/caster-1"
HOT = "acme/copper/hot/mill-1"
COLD = "acme/copper/cold/mill-2"
ANNEAL = "acme/copper/anneal/furnace-2"
SLIT = "acme/copper/slit/slitter-1"
CNC = "acme/gears/machining/cnc-1"
WELD = "acme/gears/welding/robot-1"
TEST = "acme/gears/assembly/test-1"
STRIPS_1 = [f"slitter-1-1.{i}" for i in range(1, 5)]
STRIPS_2 = [f"slitter-1-2.{i}" for i in range(1, 5)]


def at(s: float) -> int:
    return T0 + int(s * NS)


def inc(asset: str, signal: str, s: float, value: float, delta: float = 1.0) -> Increment:
    return Increment(asset, signal, at(s), float(value), float(delta))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_engine(f"sqlite:///{tmp_path / 'mes.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


def copper_cfg() -> MesConfig:
    rules = [
        LotRuleConfig(
            asset=FURNACE,
            kind="melt",
            counter="heat_count",
            quantity="tapped_weight",
            quantity_unit="t",
            serial_prefix="M",
        ),
        LotRuleConfig(asset=CASTER, kind="cast", counter="cast_count", quantity_unit="t", inputs=[FURNACE]),
        LotRuleConfig(
            asset=HOT,
            kind="coil",
            counter="coil_count",
            quantity="coil_weight",
            quantity_unit="t",
            inputs=[CASTER],
        ),
        LotRuleConfig(asset=COLD, kind="coil", counter="coil_count", quantity_unit="t", inputs=[HOT]),
        LotRuleConfig(
            asset=ANNEAL,
            kind="charge",
            counter="charge_count",
            quantity_unit="t",
            inputs=[COLD],
            consume="all",
        ),
        LotRuleConfig(
            asset=SLIT, kind="strip", counter="slit_count", quantity_unit="t", pieces=4, inputs=[ANNEAL]
        ),
    ]
    return MesConfig(
        assets=[MesAssetConfig(path=p, energy="energy") for p in (FURNACE, CASTER, ANNEAL)]
        + [MesAssetConfig(path=HOT)],
        lots=rules[::-1],  # downstream first: the maker must order the rules by flow itself
    )


def copper_increments() -> list[Increment]:
    """Chain 1: M-1 and M-2 -> two casts -> two hot coils -> two cold coils -> one anneal charge (merge)
    -> four strips (split). Chain 2: M-3 -> ... -> its own charge -> four strips."""
    return [
        # melting furnace: heats, tapped weight (t) and energy (kWh), sampled in the same poll
        inc(FURNACE, "heat_count", 100, 1),
        inc(FURNACE, "tapped_weight", 100, 25, 25),
        inc(FURNACE, "energy", 100, 1400, 400),
        inc(FURNACE, "heat_count", 200, 2),
        inc(FURNACE, "tapped_weight", 200, 52, 27),
        inc(FURNACE, "energy", 200, 1900, 500),
        # caster: one lot per cast, no weight of its own
        inc(CASTER, "cast_count", 150, 1),
        inc(CASTER, "energy", 150, 60, 10),
        inc(CASTER, "cast_count", 250, 2),
        inc(CASTER, "energy", 250, 75, 15),
        # hot mill: coils with a coil weight counter, no energy mapped
        inc(HOT, "coil_count", 300, 1),
        inc(HOT, "coil_weight", 300, 24.5, 24.5),
        inc(HOT, "coil_count", 400, 2),
        inc(HOT, "coil_weight", 400, 51, 26.5),
        # cold mill
        inc(COLD, "coil_count", 500, 1),
        inc(COLD, "coil_count", 600, 2),
        # annealing furnace: heats up (energy) then discharges the whole stack
        inc(ANNEAL, "energy", 650, 3500, 500),
        inc(ANNEAL, "charge_count", 700, 1),
        inc(ANNEAL, "energy", 700, 3800, 300),
        # slitter: one coil into four strips
        inc(SLIT, "slit_count", 800, 1),
        # chain 2; the caster's cast ends at the same instant as the heat it takes
        inc(FURNACE, "heat_count", 900, 3),
        inc(FURNACE, "tapped_weight", 900, 80, 28),
        inc(FURNACE, "energy", 900, 2500, 600),
        inc(CASTER, "cast_count", 900, 3),
        inc(CASTER, "energy", 900, 90, 15),
        inc(HOT, "coil_count", 1000, 3),
        inc(HOT, "coil_weight", 1000, 78.5, 27.5),
        inc(COLD, "coil_count", 1100, 3),
        inc(ANNEAL, "charge_count", 1200, 2),
        inc(ANNEAL, "energy", 1200, 4400, 600),
        inc(SLIT, "slit_count", 1300, 2),
    ]


def run(engine: Engine, maker: LotMaker, increments: Sequence[Increment]) -> LotStats:
    with engine.begin() as conn:
        return maker.apply(conn, increments)


def lots_by_id(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(select(t.lots))}


def parents(engine: Engine) -> dict[str, dict[str, float | None]]:
    """child -> {parent: link quantity}."""
    out: dict[str, dict[str, float | None]] = {}
    with engine.connect() as conn:
        for r in conn.execute(select(t.lot_links)):
            out.setdefault(r.child, {})[r.parent] = r.quantity
    return out


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            tbl.name: sorted((tuple(r) for r in conn.execute(select(tbl))), key=repr)
            for tbl in (t.lots, t.lot_links, t.quality_results)
        }


def shuffled(items: Sequence[Increment], seed: int = 7) -> list[Increment]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


# -- lot_counters ----------------------------------------------------------------------------------
def test_lot_counters_name_counters_quantities_energy_and_rejects() -> None:
    cfg = copper_cfg()
    got = lot_counters(cfg)
    assert got == {
        (FURNACE, "heat_count"),
        (FURNACE, "tapped_weight"),
        (FURNACE, "energy"),
        (CASTER, "cast_count"),
        (CASTER, "energy"),
        (HOT, "coil_count"),
        (HOT, "coil_weight"),  # HOT is mapped but has no energy signal
        (COLD, "coil_count"),  # COLD is not mapped in cfg.assets: no energy
        (ANNEAL, "charge_count"),
        (ANNEAL, "energy"),
        (SLIT, "slit_count"),
    }
    assert lot_counters(cfg, rejects={SLIT: "strip_reject"}) == {*got, (SLIT, "strip_reject")}
    assert LotMaker(cfg, rejects={SLIT: "strip_reject"}).counters == {*got, (SLIT, "strip_reject")}


# -- the copper chain ------------------------------------------------------------------------------
def test_copper_chain_ids_times_quantities_energy_and_links(engine: Engine) -> None:
    stats = run(engine, LotMaker(copper_cfg()), shuffled(copper_increments()))
    assert stats.lots == 3 + 3 + 3 + 3 + 2 + 8
    assert stats.links == 3 + 3 + 3 + 3 + 8
    assert (stats.untraced, stats.partial, stats.replayed, stats.refused) == (0, 0, 0, 0)
    lots = lots_by_id(engine)
    links = parents(engine)
    made = ["M-1", "M-2", "M-3", "caster-1-1", "caster-1-2", "caster-1-3", "mill-1-1", "mill-1-2"]
    made += [
        "mill-1-3",
        "mill-2-1",
        "mill-2-2",
        "mill-2-3",
        "furnace-2-1",
        "furnace-2-2",
        *STRIPS_1,
        *STRIPS_2,
    ]
    assert sorted(lots) == sorted(made)

    def check(
        lot_id: str, kind: str, start: float | None, end: float, qty: float, energy: float | None
    ) -> None:
        row = lots[lot_id]
        assert row["kind"] == kind
        assert row["start_ns"] == (None if start is None else at(start)), lot_id
        assert row["end_ns"] == at(end), lot_id
        assert row["quantity"] == pytest.approx(qty), lot_id
        assert row["unit"] == "t"
        assert row["energy_kwh"] == (None if energy is None else pytest.approx(energy)), lot_id

    # melts: quantity and energy are the counters' increase since the previous melt
    check("M-1", "melt", None, 100, 25, 400)
    check("M-2", "melt", 100, 200, 27, 500)
    check("M-3", "melt", 200, 900, 28, 600)
    assert (lots["M-2"]["qty_mark"], lots["M-2"]["energy_mark"]) == (52, 1900)
    # casts inherit the weight of the heat they take (same unit, no weight counter of their own)
    check("caster-1-1", "cast", None, 150, 25, 10)
    check("caster-1-2", "cast", 150, 250, 27, 15)
    check("caster-1-3", "cast", 250, 900, 28, 15)
    check("mill-1-1", "coil", None, 300, 24.5, None)
    check("mill-1-2", "coil", 300, 400, 26.5, None)
    check("mill-1-3", "coil", 400, 1000, 27.5, None)
    check("mill-2-1", "coil", None, 500, 24.5, None)
    check("mill-2-3", "coil", 600, 1100, 27.5, None)
    # the first charge's energy counts from before the furnace's first increment (3000 -> 3800)
    check("furnace-2-1", "charge", None, 700, 51, 800)
    check("furnace-2-2", "charge", 700, 1200, 27.5, 600)
    for s in STRIPS_1:
        check(s, "strip", None, 800, 51 / 4, None)
    for s in STRIPS_2:
        check(s, "strip", 800, 1300, 27.5 / 4, None)

    assert links["caster-1-1"] == {"M-1": 25}
    assert links["caster-1-3"] == {"M-3": 28}  # ended at the same instant as M-3
    assert links["mill-1-2"] == {"caster-1-2": 27}
    assert links["mill-2-1"] == {"mill-1-1": 24.5}
    assert links["furnace-2-1"] == {"mill-2-1": 24.5, "mill-2-2": 26.5}  # a merge: several parents
    assert links["furnace-2-2"] == {"mill-2-3": 27.5}
    for s in STRIPS_1:  # a split: every piece has the one parent, a quarter of it each
        assert links[s] == {"furnace-2-1": pytest.approx(51 / 4)}
    assert "M-1" not in links  # melts are origins
    assert all(lots[i]["consumed"] for i in lots if lots[i]["kind"] != "strip")
    assert not any(lots[i]["consumed"] for i in [*STRIPS_1, *STRIPS_2])
    assert all(lots[i]["order_id"] is None and lots[i]["verdict"] == "unknown" for i in lots)


def test_replay_changes_nothing(engine: Engine) -> None:
    maker = LotMaker(copper_cfg())
    run(engine, maker, copper_increments())
    before = snapshot(engine)
    again = run(engine, maker, shuffled(copper_increments(), seed=3))
    assert (again.lots, again.links, again.consumed, again.untraced) == (0, 0, 0, 0)
    assert again.replayed == 3 + 3 + 3 + 3 + 2 + 2
    assert snapshot(engine) == before
    # a fresh maker (a restart) replaying the second half also changes nothing
    run(engine, LotMaker(copper_cfg()), [i for i in copper_increments() if i.ts_ns >= at(800)])
    assert snapshot(engine) == before


def test_feeding_in_two_parts_gives_the_same_lots(engine: Engine, tmp_path: Path) -> None:
    incs = sorted(copper_increments(), key=lambda i: i.ts_ns)
    run(engine, LotMaker(copper_cfg()), incs)
    whole = snapshot(engine)
    other = open_engine(f"sqlite:///{tmp_path / 'parts.db'}")
    migrate(other)
    try:
        maker = LotMaker(copper_cfg())
        run(other, maker, [i for i in incs if i.ts_ns < at(450)])
        run(other, maker, [i for i in incs if i.ts_ns >= at(450)])
        assert snapshot(other) == whole
    finally:
        other.dispose()


def test_trace_forward_from_a_melt_lists_its_strips(engine: Engine) -> None:
    run(engine, LotMaker(copper_cfg()), copper_increments())
    with engine.connect() as conn:
        fw = trace(conn, "M-1", "forward")
        fw3 = trace(conn, "M-3", "forward")
        cast = trace(conn, "caster-1-2", "forward")
    assert fw.finished == STRIPS_1
    assert {n["id"]: n["depth"] for n in fw.nodes} == {
        "M-1": 0,
        "caster-1-1": 1,
        "mill-1-1": 2,
        "mill-2-1": 3,
        "furnace-2-1": 4,
        **dict.fromkeys(STRIPS_1, 5),
    }
    assert fw.origins == [] and fw.energy_kwh is None and not fw.truncated
    assert fw3.finished == STRIPS_2
    assert cast.finished == STRIPS_1  # M-2's cast went into the same charge (the merge)
    assert {(e.parent, e.child) for e in fw.edges} >= {("furnace-2-1", s) for s in STRIPS_1}


def test_trace_backward_from_a_strip_reaches_the_melts_with_embodied_energy(engine: Engine) -> None:
    run(engine, LotMaker(copper_cfg()), copper_increments())
    with engine.connect() as conn:
        bw = trace(conn, "slitter-1-1.2", "backward")
        short = trace(conn, "slitter-1-1.2", "backward", max_depth=2)
    assert bw.root == "slitter-1-1.2" and bw.direction == "backward"
    assert bw.origins == ["M-1", "M-2"]
    assert {n["id"] for n in bw.nodes} == {
        "slitter-1-1.2",
        "furnace-2-1",
        "mill-2-1",
        "mill-2-2",
        "mill-1-1",
        "mill-1-2",
        "caster-1-1",
        "caster-1-2",
        "M-1",
        "M-2",
    }
    assert len(bw.edges) == 9  # 1 + 2 (the merge) + 2 + 2 + 2
    # embodied: the charge's 800, the casts' 10 + 15, the melts' 400 + 500 (the mills have no energy)
    assert bw.energy_kwh == pytest.approx(1725)
    # allocated: the strip is a quarter of the charge, so a quarter of everything upstream of it
    assert bw.energy_allocated_kwh == pytest.approx(1725 / 4)
    assert short.truncated and max(n["depth"] for n in short.nodes) == 2
    assert short.origins == []
    json.dumps(bw.as_dict())  # JSON-ready for the API and the CLI


def test_trace_of_an_unknown_lot_is_a_lookup_error(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(LookupError):
        trace(conn, "no-such-lot", "backward")


# -- the gearbox chain ----------------------------------------------------------------------------
def gearbox_maker() -> LotMaker:
    cfg = MesConfig(
        lots=[
            LotRuleConfig(asset=CNC, kind="part", counter="part_count", serial_prefix="P"),
            LotRuleConfig(asset=WELD, kind="weldment", counter="weld_count", inputs=[CNC]),
            LotRuleConfig(
                asset=TEST, kind="gearbox", counter="gearbox_count", inputs=[WELD], serial_prefix="GB"
            ),
        ]
    )
    return LotMaker(cfg, rejects={TEST: "test_reject"})


GEARBOX_1 = [
    inc(WELD, "weld_count", 5, 1),  # a weld before any part was made: untraced
    inc(CNC, "part_count", 10, 1),
    inc(CNC, "part_count", 20, 3, 2),  # two parts in one poll
    inc(WELD, "weld_count", 30, 2),
    inc(WELD, "weld_count", 40, 3),
    inc(TEST, "gearbox_count", 50, 1),
    inc(TEST, "gearbox_count", 60, 2),
    inc(TEST, "test_reject", 60, 1),  # GB-2 failed its test
    inc(TEST, "test_reject", 65, 2),  # the next gearbox failed; it is not finished yet
]
GEARBOX_2 = [
    inc(TEST, "gearbox_count", 70, 3),
    inc(CNC, "part_count", 100, 1, 1),  # the part counter was reset
]


def add_running_order(conn: Connection) -> None:
    conn.execute(
        insert(t.work_orders).values(
            id="WO-1",
            product="gear-a",
            asset=CNC,
            quantity=100,
            unit="units",
            status="running",
            priority=0,
            description="",
            actual_start_ns=at(90),
            created_ns=at(0),
            version=2,
        )
    )


def test_gearbox_chain_fifo_untraced_rejects_reset_and_orders(engine: Engine) -> None:
    maker = gearbox_maker()
    first = run(engine, maker, shuffled(GEARBOX_1))
    assert (first.lots, first.links, first.untraced, first.rejects) == (8, 4, 1, 2)
    with engine.begin() as conn:
        add_running_order(conn)
    second = run(engine, maker, GEARBOX_2)
    assert (second.lots, second.links, second.untraced, second.rejects) == (2, 1, 0, 0)
    lots = lots_by_id(engine)
    reset_id = "P-1@20260101T000140Z"
    assert sorted(lots) == sorted(
        ["P-1", "P-2", "P-3", reset_id, "robot-1-1", "robot-1-2", "robot-1-3", "GB-1", "GB-2", "GB-3"]
    )
    assert (lots["P-2"]["start_ns"], lots["P-2"]["end_ns"]) == (at(10), at(20))
    assert (lots["P-3"]["start_ns"], lots["P-3"]["end_ns"]) == (at(10), at(20))
    assert (lots[reset_id]["start_ns"], lots[reset_id]["order_id"], lots[reset_id]["product"]) == (
        at(20),
        "WO-1",
        "gear-a",
    )
    assert lots["P-1"]["order_id"] is None
    assert all(
        r["quantity"] == 1.0 and r["unit"] == "units" and r["energy_kwh"] is None for r in lots.values()
    )
    links = parents(engine)
    assert "robot-1-1" not in links  # untraced
    assert links["robot-1-2"] == {"P-1": 1.0}
    assert links["robot-1-3"] == {"P-2": 1.0}  # FIFO: P-2 before P-3 (same poll, lower serial)
    assert links["GB-1"] == {"robot-1-1": 1.0}  # the oldest waiting weld
    assert links["GB-2"] == {"robot-1-2": 1.0}
    assert links["GB-3"] == {"robot-1-3": 1.0}
    assert not lots["P-3"]["consumed"] and not lots[reset_id]["consumed"]
    assert {i for i, r in lots.items() if r["verdict"] == "fail"} == {"GB-2", "GB-3"}

    with engine.connect() as conn:
        fw = trace(conn, "P-1", "forward")
        bw1 = trace(conn, "GB-1", "backward")
        bw3 = trace(conn, "GB-3", "backward")
        q = conn.execute(select(t.quality_results).order_by(t.quality_results.c.ts_ns)).all()
    assert [n["id"] for n in fw.nodes] == ["P-1", "robot-1-2", "GB-2"]
    assert fw.finished == ["GB-2"] and fw.failed == ["GB-2"]
    assert [(r["characteristic"], r["lot_id"], r["verdict"]) for r in fw.quality] == [
        ("test_reject", "GB-2", "fail")
    ]
    assert bw1.origins == ["robot-1-1"] and bw1.failed == [] and bw1.energy_kwh is None
    assert [n["id"] for n in bw3.nodes] == ["GB-3", "robot-1-3", "P-2"] and bw3.failed == ["GB-3"]
    assert [(r.ts_ns, r.lot_id, r.value) for r in q] == [(at(60), "GB-2", 1.0), (at(65), "GB-3", 1.0)]

    before = snapshot(engine)
    again = run(engine, gearbox_maker(), [*GEARBOX_1, *GEARBOX_2])
    assert (again.lots, again.links, again.rejects, again.replayed) == (0, 0, 0, 10), again
    assert snapshot(engine) == before


def test_split_pieces_without_waiting_input_are_untraced(engine: Engine) -> None:
    stats = run(engine, LotMaker(copper_cfg()), [inc(SLIT, "slit_count", 10, 7)])
    assert (stats.lots, stats.untraced, stats.links) == (4, 4, 0)
    assert sorted(lots_by_id(engine)) == [f"slitter-1-7.{i}" for i in range(1, 5)]


def test_counter_value_between_feeds_comes_from_the_cursor_and_resets_count_from_zero(engine: Engine) -> None:
    cfg = MesConfig(
        assets=[MesAssetConfig(path=FURNACE, energy="energy")],
        lots=[
            LotRuleConfig(
                asset=FURNACE, kind="melt", counter="heat_count", quantity="tapped_weight", quantity_unit="t"
            )
        ],
    )
    maker = LotMaker(cfg)
    with engine.begin() as conn:
        maker.apply(
            conn,
            [
                inc(FURNACE, "heat_count", 100, 1),
                inc(FURNACE, "tapped_weight", 100, 25, 25),
                inc(FURNACE, "energy", 100, 1400, 400),
                inc(FURNACE, "energy", 150, 1600, 200),  # holding the bath after the tap
            ],
        )
        # the repository saves the deriver's cursors in the same transaction
        conn.execute(
            insert(t.cursors), [{"asset": FURNACE, "signal": "energy", "ts_ns": at(150), "value": 1600}]
        )
    run(engine, maker, [inc(FURNACE, "heat_count", 200, 2), inc(FURNACE, "tapped_weight", 200, 52, 27)])
    # the weight counter was reset (52 -> 0) before the third heat: it counted 5 t from zero
    run(engine, maker, [inc(FURNACE, "heat_count", 300, 3), inc(FURNACE, "tapped_weight", 300, 5, 5)])
    lots = lots_by_id(engine)
    assert (lots["furnace-1-2"]["quantity"], lots["furnace-1-2"]["energy_kwh"]) == (27, 200)
    assert (lots["furnace-1-3"]["quantity"], lots["furnace-1-3"]["energy_kwh"]) == (5, 0)


def test_glitch_and_prefix_clash_are_refused(engine: Engine) -> None:
    stats = run(engine, LotMaker(copper_cfg()), [inc(FURNACE, "heat_count", 10, 5000, 5000)])
    assert stats.refused == 1 and lots_by_id(engine) == {}
    clash = MesConfig(
        lots=[
            LotRuleConfig(asset="acme/line-1/press", kind="part", counter="n"),
            LotRuleConfig(asset="acme/line-2/press", kind="part", counter="n"),
        ]
    )
    with pytest.raises(ValueError, match="serial_prefix"):
        LotMaker(clash)


def test_increments_from_the_deriver(engine: Engine) -> None:
    """The deriver's first sample only anchors a counter; its later rises become lots."""
    cfg = copper_cfg()
    deriver = Deriver(cfg, lot_counters=lot_counters(cfg))
    keys = [(FURNACE, "heat_count"), (FURNACE, "tapped_weight"), (FURNACE, "energy")]
    rows = [  # (series, s, value): the same poll carries all three signals
        *[(0, 0, 41), (1, 0, 1000.0), (2, 0, 5e5)],
        *[(0, 60, 42), (1, 60, 1024.0), (2, 60, 5e5 + 900)],
        *[(0, 120, 43), (1, 120, 1050.0), (2, 120, 5e5 + 1700)],
    ]
    batch = SampleBatch.from_columns(
        keys, [r[0] for r in rows], [at(r[1]) for r in rows], [r[2] for r in rows]
    )
    ch = deriver.feed(batch)
    stats = run(engine, LotMaker(cfg), ch.increments)
    assert stats.lots == 2
    lots = lots_by_id(engine)
    assert (lots["M-42"]["quantity"], lots["M-42"]["energy_kwh"], lots["M-42"]["start_ns"]) == (24, 900, None)
    assert (lots["M-43"]["quantity"], lots["M-43"]["energy_kwh"], lots["M-43"]["start_ns"]) == (
        26,
        800,
        at(60),
    )
    assert deriver.feed(batch).increments == []  # a replayed batch: no increments, no lots


def test_quantity_mode_draws_coils_from_melts_oldest_first_across_units(engine: Engine) -> None:
    """Melts of 5 t and 3 t; the mill rolls 2,000 kg coils from them: coil 3 spans both melts (a merge),
    melt 1 feeds three coils (a split), and coil 5 finds only 1 t left (made partly of an untapped melt)."""
    melt_rule = LotRuleConfig(
        asset=FURNACE, kind="melt", counter="heat_count", quantity="tapped", quantity_unit="t"
    )
    coil_rule = LotRuleConfig(
        asset=HOT, kind="coil", counter="coil_count", quantity="rolled", quantity_unit="kg",
        inputs=[FURNACE], consume="quantity",
    )  # fmt: skip
    maker = LotMaker(MesConfig(lots=[melt_rule, coil_rule]))
    incs = [inc(FURNACE, "tapped", 0, 0, 0), inc(HOT, "rolled", 0, 0, 0)]  # anchors (delta 0)
    incs += [inc(FURNACE, "tapped", 100, 5.0, 5.0), inc(FURNACE, "heat_count", 100, 1)]
    incs += [inc(FURNACE, "tapped", 200, 8.0, 3.0), inc(FURNACE, "heat_count", 200, 2)]
    for n in range(1, 6):
        incs += [inc(HOT, "rolled", 300 + n, 2000.0 * n, 2000.0), inc(HOT, "coil_count", 300 + n, n)]
    stats = run(engine, maker, incs)
    links = parents(engine)
    assert links["mill-1-1"] == {"furnace-1-1": 2.0}
    assert links["mill-1-2"] == {"furnace-1-1": 2.0}
    assert links["mill-1-3"] == {"furnace-1-1": 1.0, "furnace-1-2": 1.0}  # spans two melts
    assert links["mill-1-4"] == {"furnace-1-2": 2.0}
    assert "mill-1-5" not in links  # both melts are used up: coil 5 has no known origin
    lots = lots_by_id(engine)
    assert lots["furnace-1-1"]["consumed"] and lots["furnace-1-1"]["remaining"] == 0.0
    assert lots["furnace-1-2"]["consumed"] and lots["mill-1-3"]["quantity"] == 2000.0
    assert (stats.untraced, stats.partial) == (1, 0)
    with engine.connect() as conn:
        back = trace(conn, "mill-1-3", "backward")
        fwd = trace(conn, "furnace-1-1", "forward")
    assert {n["id"] for n in back.nodes} == {"mill-1-3", "furnace-1-1", "furnace-1-2"}
    assert sorted(fwd.finished) == ["mill-1-1", "mill-1-2", "mill-1-3"]
    before = snapshot(engine)
    run(engine, LotMaker(MesConfig(lots=[melt_rule, coil_rule])), incs)  # a replay draws nothing twice
    assert snapshot(engine) == before


def test_one_takes_the_oldest_of_parallel_machines_each_takes_one_of_every_input(engine: Engine) -> None:
    cnc_a, cnc_b, weld, asm = (f"acme/gears/l/{n}" for n in ("cnc-a", "cnc-b", "weld", "asm"))
    rules = [
        LotRuleConfig(asset=cnc_a, kind="part", counter="n"),
        LotRuleConfig(asset=cnc_b, kind="part", counter="n"),
        LotRuleConfig(asset=weld, kind="weldment", counter="n", inputs=[cnc_a, cnc_b]),  # consume: one
        LotRuleConfig(asset=asm, kind="gearbox", counter="n", inputs=[weld, cnc_b], consume="each"),
    ]
    incs = [inc(a, "n", 0, 0, 0) for a in (cnc_a, cnc_b, weld, asm)]
    incs += [inc(cnc_b, "n", 10, 1), inc(cnc_a, "n", 20, 1), inc(cnc_b, "n", 25, 2)]
    incs += [inc(weld, "n", 30, 1), inc(weld, "n", 40, 2)]
    incs += [inc(asm, "n", 50, 1)]
    run(engine, LotMaker(MesConfig(lots=rules)), incs)
    links = parents(engine)
    assert set(links["weld-1"]) == {"cnc-b-1"}  # the oldest part of either machine
    assert set(links["weld-2"]) == {"cnc-a-1"}
    assert set(links["asm-1"]) == {"weld-1", "cnc-b-2"}  # one of each input


# -- a plant of every consume mode, many lots: batching must not change what is made ----------------
MELT, ROLL, FINISH, CHARGE = (
    f"acme/copper/{n}" for n in ("melt/furnace-7", "hot/mill-7", "cold/mill-8", "anneal/f-9")
)
CUT, PACK = "acme/copper/slit/slitter-9", "acme/copper/pack/packer-9"
PART_A, PART_B, PART_C = (f"acme/gears/machining/cnc-{n}" for n in "abc")
JOIN, BOX = "acme/gears/welding/robot-9", "acme/gears/assembly/test-9"
PLANT_REJECTS = {(PACK, "bad_packs"), (PART_A, "scrap"), (JOIN, "scrap")}


def plant_maker() -> LotMaker:
    """Quantity draws across units, a 'one' that inherits weight, a merge into split charges, a split into
    threes (pages of waiting lots end inside an instant), parallel machines (one with a counter reset)
    into a 'one', an 'each' assembly, rejects on three rules; each input feeds one rule. More parts are
    made than welded, so parts wait for days."""
    rules = [
        LotRuleConfig(asset=MELT, kind="melt", counter="heats", quantity="tapped", quantity_unit="t"),
        LotRuleConfig(
            asset=ROLL, kind="coil", counter="coils", quantity="rolled", quantity_unit="kg",
            inputs=[MELT], consume="quantity",
        ),
        LotRuleConfig(asset=FINISH, kind="coil", counter="coils", quantity_unit="kg", inputs=[ROLL]),
        LotRuleConfig(
            asset=CHARGE, kind="charge", counter="charges", quantity_unit="kg", pieces=2,
            inputs=[FINISH], consume="all",
        ),
        LotRuleConfig(asset=CUT, kind="strip", counter="cuts", quantity_unit="kg", pieces=3, inputs=[CHARGE]),
        LotRuleConfig(asset=PACK, kind="pack", counter="packs", inputs=[CUT], reject="bad_packs"),
        LotRuleConfig(asset=PART_A, kind="part", counter="n", reject="scrap"),
        LotRuleConfig(asset=PART_B, kind="part", counter="n"),
        LotRuleConfig(asset=PART_C, kind="cover", counter="n"),
        LotRuleConfig(asset=JOIN, kind="weldment", counter="n", inputs=[PART_A, PART_B], reject="scrap"),
        LotRuleConfig(asset=BOX, kind="gearbox", counter="n", inputs=[JOIN, PART_C], consume="each"),
    ]  # fmt: skip
    assets = [MesAssetConfig(path=p, energy="kwh") for p in (MELT, CHARGE, PART_A)]
    return LotMaker(MesConfig(assets=assets, lots=rules[::-1]))


def plant_increments(seed: int = 11, minutes: int = 3 * 1440) -> list[Increment]:
    """A poll a minute: each machine finishes a lot with its own probability (now and then two in one
    poll, and lots 9 and 10 of PART_A and PART_C in one), quantity and energy counters move in the same
    poll, PART_B's counter is reset once; rejects fall in a poll or between two."""
    rng = random.Random(seed)
    p = {MELT: 0.01, ROLL: 0.05, FINISH: 0.05, CHARGE: 0.006, CUT: 0.02, PACK: 0.05}
    p |= {PART_A: 0.3, PART_B: 0.3, PART_C: 0.15, JOIN: 0.2, BOX: 0.12}
    counter = {MELT: "heats", ROLL: "coils", FINISH: "coils", CHARGE: "charges", CUT: "cuts", PACK: "packs"}
    value, reset = dict.fromkeys(p, 0.0), False
    moved = {
        (MELT, "tapped"): 0.0,
        (ROLL, "rolled"): 0.0,
        **{(a, "kwh"): 1000.0 for a in (MELT, CHARGE, PART_A)},
    }
    out = [inc(a, s, 0, v, 0) for (a, s), v in moved.items()]  # the first samples: anchors (delta 0)

    def move(asset: str, signal: str, s: float, by: float) -> None:
        moved[(asset, signal)] += by
        out.append(inc(asset, signal, s, moved[(asset, signal)], by))

    for m in range(1, minutes):
        s = 60.0 * m
        for a, prob in p.items():
            if rng.random() >= prob:
                continue
            k = 2 if rng.random() < 0.05 and a not in (MELT, CHARGE) else 1
            if a in (PART_A, PART_C) and value[a] == 8:
                k = 2  # lots 9 and 10 end together: FIFO takes 9 first
            if a == PART_B and m >= minutes // 2 and not reset:
                value[a], k, reset = 0.0, 1, True  # a counter reset: its next lots' ids are taken
            value[a] += k
            out.append(inc(a, counter.get(a, "n"), s, value[a], k))
            if a == MELT:
                move(MELT, "tapped", s, rng.choice([20.5, 24.25, 27.0, 30.125]))
            if a == ROLL:
                move(ROLL, "rolled", s, rng.choice([1500.0, 4250.5, 9000.0]) * k)
        for a in (MELT, CHARGE, PART_A):
            if rng.random() < 0.5:
                move(a, "kwh", s, rng.choice([0.5, 12.25, 40.0]))
        for a, sig in sorted(PLANT_REJECTS):
            if rng.random() < 0.01:
                out.append(inc(a, sig, s + rng.choice([0, 30]), m, 1))
    return out


def add_orders(conn: Connection) -> None:
    """Two orders on PART_A, the first ending as a part is made (the part is its) and the next starting
    an hour later; one still running on ROLL."""
    cut = min(
        i.ts_ns for i in plant_increments() if (i.asset, i.signal) == (PART_A, "n") and i.ts_ns >= at(30_000)
    )
    base = {"unit": "units", "priority": 0, "description": "", "created_ns": at(0), "version": 2}
    conn.execute(
        insert(t.work_orders),
        [
            {**base, "id": "WO-A1", "product": "gear-a", "asset": PART_A, "quantity": 50, "status": "completed",
             "actual_start_ns": at(3600), "actual_end_ns": cut},
            {**base, "id": "WO-A2", "product": "gear-b", "asset": PART_A, "quantity": 50, "status": "running",
             "actual_start_ns": cut + 3600 * NS, "actual_end_ns": None},
            {**base, "id": "WO-R1", "product": "strip-8", "asset": ROLL, "quantity": 90, "status": "running",
             "actual_start_ns": at(7200), "actual_end_ns": None},
        ],
    )  # fmt: skip


def genealogy(engine: Engine) -> dict[str, list[Any]]:
    """Every lot, link and quality result (without the results' autoincrement ids), sorted."""
    q = t.quality_results.c
    with engine.connect() as conn:
        lots = sorted(tuple(r) for r in conn.execute(select(t.lots)))
        links = sorted(tuple(r) for r in conn.execute(select(t.lot_links)))
        quality = sorted(
            tuple(r) for r in conn.execute(select(q.asset, q.ts_ns, q.characteristic, q.value, q.lot_id))
        )
    return {"lots": lots, "links": links, "quality": quality}


def parts(incs: Sequence[Increment], rng: random.Random, longest: int) -> Iterator[list[Increment]]:
    """The increments in parts of 1 to ``longest`` polls. The first part reaches every rule's first lot
    (whose start values are those before the first increments of its feed). A reject in the poll of a
    lot of its asset comes with the part before: before the lot it falls in is made (a split poll)."""
    rules = {(r.cfg.asset, r.cfg.counter) for r in plant_maker().rules}
    stamps = sorted({i.ts_ns for i in incs})
    lot_polls = {(i.asset, i.ts_ns) for i in incs if (i.asset, i.signal) in rules and i.delta}
    split = {
        i.ts_ns for i in incs if (i.asset, i.signal) in PLANT_REJECTS and (i.asset, i.ts_ns) in lot_polls
    }
    firsts: dict[tuple[str, str], int] = {}
    for i in sorted(incs, key=lambda i: i.ts_ns):
        if (i.asset, i.signal) in rules and i.delta:
            firsts.setdefault((i.asset, i.signal), i.ts_ns)
    pos = 0
    while pos < len(stamps):
        if pos == 0:
            end = stamps.index(max(firsts.values()))
        else:
            end = min(pos + rng.randint(1, longest), len(stamps)) - 1
            end = next((j - 1 for j in range(pos + 1, end + 1) if stamps[j] in split), end)
        lo, hi = stamps[pos], stamps[end]
        nxt = stamps[end + 1] if end + 1 < len(stamps) else None

        def here(
            i: Increment, lo: int = lo, hi: int = hi, nxt: int | None = nxt, first: bool = pos == 0
        ) -> bool:
            if (i.asset, i.signal) not in PLANT_REJECTS:
                return lo <= i.ts_ns <= hi
            return i.ts_ns == nxt or (lo <= i.ts_ns <= hi and (i.ts_ns != lo or first))

        yield [i for i in incs if here(i)]
        pos = end + 1


def feed_in_parts(engine: Engine, incs: Sequence[Increment], seed: int, by_asset: bool) -> LotStats:
    """Apply the increments in parts (see ``parts``), in time order or asset by asset in flow order (as
    the MES catches up on the historian), each part in its own transaction with the counters' cursors
    (as the repository saves them), with a fresh maker now and then (a restart)."""
    rng = random.Random(seed)
    total, maker = LotStats(), plant_maker()
    groups = [[i for i in incs if i.asset == r.cfg.asset] for r in maker.rules] if by_asset else [incs]
    for group in groups:
        for part in parts(group, rng, 360 if by_asset else 60):
            last = {(i.asset, i.signal): i for i in sorted(part, key=lambda i: i.ts_ns)}
            with engine.begin() as conn:
                got = maker.apply(conn, shuffled(part, seed=len(part)))
                ins = upsert(conn, t.cursors)
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["asset", "signal"],
                        set_={"ts_ns": ins.excluded.ts_ns, "value": ins.excluded.value},
                    ),
                    [
                        {"asset": a, "signal": s, "ts_ns": i.ts_ns, "value": i.value}
                        for (a, s), i in last.items()
                    ],
                )
            total = LotStats(**{k: v + getattr(got, k) for k, v in total.as_dict().items()})
            if rng.random() < 0.1:
                maker = plant_maker()
    return total


@pytest.mark.parametrize("by_asset", [False, True], ids=["in-time-order", "asset-by-asset"])
def test_a_plant_fed_at_once_or_in_parts_makes_the_same_genealogy(
    engine: Engine, tmp_path: Path, by_asset: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One apply of three days, or hundreds of small ones: the same lots, ids, times, quantities, marks,
    links, consumption, verdicts and claimed rejects; replaying all of it then changes nothing. Waiting
    lots are read in pages of 2 to 8, so that pages end inside instants (splits, two lots in a poll)."""
    monkeypatch.setattr("mes.lots._PAGE", (2, 8))
    incs = plant_increments()
    with engine.begin() as conn:
        add_orders(conn)
    whole = run(engine, plant_maker(), shuffled(incs))
    assert whole.lots > 5000 and whole.untraced and whole.partial and whole.rejects  # the plant is busy
    other = open_engine(f"sqlite:///{tmp_path / 'parts.db'}")
    migrate(other)
    try:
        with other.begin() as conn:
            add_orders(conn)
        got = feed_in_parts(other, incs, seed=5, by_asset=by_asset)
        assert genealogy(other) == genealogy(engine)
        assert got == whole
    finally:
        other.dispose()
    before = genealogy(engine)
    again = run(engine, plant_maker(), incs)
    assert (again.lots, again.links, again.consumed, again.rejects) == (0, 0, 0, 0) and again.replayed
    assert genealogy(engine) == before


def test_the_plant_genealogy_is_the_one_recorded(engine: Engine) -> None:
    """The plant's lots, links and rejects as mes.lots made them before it was batched (one query per
    read, per lot): a digest of every value, recorded then. A change here is a change of semantics
    (ids, FIFO, quantities, energy, orders, verdicts): make it on purpose and record the new digest."""
    with engine.begin() as conn:
        add_orders(conn)
    stats = run(engine, plant_maker(), shuffled(plant_increments()))
    assert stats == LotStats(
        lots=5941, links=3348, consumed=2803, untraced=144, partial=14, replayed=0, rejects=138, refused=0
    )
    digest = hashlib.sha256(json.dumps(genealogy(engine)).encode()).hexdigest()
    assert digest == "9fd0a5195fe6d68b134798446870ab951b3b3bffa9d5e7d51fe2ef7082476085"


@pytest.mark.parametrize("consume", ["all", "one"])
def test_waiting_lots_read_page_by_page_are_taken_as_if_read_at_once(
    engine: Engine, consume: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upstream lots made earlier (three at a time now and then) wait in the database; a later feed of
    closes takes them oldest first up to each close's end, while they are read in pages of 2 to 4."""
    monkeypatch.setattr("mes.lots._PAGE", (2, 4))
    up, down = "acme/x/line/up", "acme/x/line/down"
    rules = [
        LotRuleConfig(asset=up, kind="part", counter="n"),
        LotRuleConfig(asset=down, kind="kit", counter="n", inputs=[up], consume=consume),  # type: ignore[arg-type]
    ]
    rng = random.Random(3)
    made: list[tuple[int, str]] = []  # (end, id) of the upstream lots
    incs, n = [], 0
    for s in sorted(rng.sample(range(1, 2000), 150)):
        k = 3 if rng.random() < 0.2 else 1
        n += k
        incs.append(inc(up, "n", s, n, k))
        made += [(at(s), f"up-{m}") for m in range(n - k + 1, n + 1)]
    run(engine, LotMaker(MesConfig(lots=rules)), incs)
    closes = sorted(rng.sample(range(1, 2100), 40))
    run(engine, LotMaker(MesConfig(lots=rules)), [inc(down, "n", s, j) for j, s in enumerate(closes, 1)])
    waiting = sorted(made, key=lambda e: (e[0], len(e[1]), e[1]))
    expected: dict[str, set[str]] = {}
    for j, s in enumerate(closes, 1):
        ready = [i for end, i in waiting if end <= at(s)]
        took = ready if consume == "all" else ready[:1]
        if took:
            expected[f"down-{j}"] = set(took)
        waiting = [e for e in waiting if e[1] not in took]
    assert {c: set(p) for c, p in parents(engine).items()} == expected
