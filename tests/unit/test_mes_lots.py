"""Lots and genealogy (mes.lots) on a real, migrated SQLite file: a copper chain (melt to slit strip, with a
merge and a split) and a gearbox chain (parts, welds, tested gearboxes with rejects), from hand-made increments.
"""

from __future__ import annotations

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
