"""The deriver and the repository on a real SQLite file: intervals, micro-stops, counts, orders, replay.

Hand-made sample streams of an asset whose names are not the simulator's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from mes import tables as t
from mes.db import migrate, open_engine
from mes.derive import Deriver
from mes.losses import UNASSIGNED, StateCategory
from mes.order_spec import OrderSpec, OrderStatus
from mes.repository import Conflict, Repository
from shopfloor.batch import SampleBatch
from shopfloor.config.mes import MesConfig

NS = 1_000_000_000
T0 = 1_800_000_000 * NS  # a bucket boundary for 60 s buckets
A = "acme/press-shop/line-2/press-9"

CFG = MesConfig.model_validate(
    {
        "database": "sqlite:///unused",
        "micro_stop_s": 60,
        "state_codes": {10: "running", 20: "down", 30: "setup"},
        "reasons": [
            {"id": "failures", "en": "Failures", "zh": "故障", "loss": "breakdown"},
            {"id": "die_crack", "en": "Die crack", "zh": "模具开裂", "parent": "failures", "codes": [7]},
        ],
        "assets": [
            {
                "path": A,
                "state": "mode",
                "reason": "fault",
                "counters": {"total": "strokes", "scrap": "rejects"},
                "energy": "kwh",
                "ideal_cycle_s": 2.0,
            }
        ],
    }
)


def batch(rows: list[tuple[str, int, float]]) -> SampleBatch:
    keys = sorted({s for s, _, _ in rows})
    idx = {k: i for i, k in enumerate(keys)}
    return SampleBatch.from_columns(
        [(A, k) for k in keys],
        np.array([idx[s] for s, _, _ in rows]),
        np.array([T0 + int(ts * NS) for _, ts, _ in rows]),
        np.array([v for _, _, v in rows], dtype=float),
    )


def stream() -> list[SampleBatch]:
    """Run 0-100 s, down (code 7) 100-130 s, run 130-300 s, setup 300-400 s; 1 stroke/2 s while running."""
    out = []
    strokes = rejects = kwh = 0.0
    for sec in range(0, 400, 10):
        rows: list[tuple[str, int, float]] = []
        mode = 10 if sec < 100 or 130 <= sec < 300 else (20 if sec < 130 else 30)
        rows.append(("mode", sec, mode))
        rows.append(("fault", sec, 7 if mode == 20 else 0))
        if mode == 10 and sec > 0:
            strokes += 5
            rejects += 1 if sec % 50 == 0 else 0
        kwh += 0.5
        rows += [("strokes", sec, strokes), ("rejects", sec, rejects), ("kwh", sec, kwh)]
        out.append(batch(rows))
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    engine = open_engine(f"sqlite:///{tmp_path / 'mes.db'}")
    migrate(engine)
    r = Repository(engine, CFG)
    r.sync_plant([(A, "press", "test press")])
    return r


def run(repo: Repository, batches: list[SampleBatch]) -> Deriver:
    cursors, opens = repo.deriver_state()
    d = Deriver(CFG, cursors, opens)
    for b in batches:
        repo.apply(d.feed(b))
    return d


def snapshot(repo: Repository) -> tuple[list, list, list]:
    with repo.engine.connect() as c:
        return (
            [tuple(r) for r in c.execute(select(t.state_intervals).order_by(t.state_intervals.c.start_ns))],
            [tuple(r) for r in c.execute(select(t.count_buckets).order_by(t.count_buckets.c.bucket_ns))],
            [tuple(r) for r in c.execute(select(t.cursors).order_by(t.cursors.c.signal))],
        )


def test_intervals_reasons_and_counts(repo: Repository) -> None:
    run(repo, stream())
    page = repo.intervals(A)
    got = [
        (r["start_ns"] - T0, r["end_ns"] and r["end_ns"] - T0, r["state"], r["reason"]) for r in page.items
    ]
    assert got == [
        (0, 100 * NS, "running", None),
        (100 * NS, 130 * NS, "down", "die_crack"),
        (130 * NS, 300 * NS, "running", None),
        (300 * NS, None, "setup", UNASSIGNED),  # the PLC gives code 0 while in setup: not in the tree
    ]
    with repo.engine.connect() as c:
        total, scrap, good, kwh = c.execute(
            select(
                func.sum(t.count_buckets.c.total),
                func.sum(t.count_buckets.c.scrap),
                func.sum(t.count_buckets.c.good),
                func.sum(t.count_buckets.c.energy_kwh),
            )
        ).one()
    assert total == 5 * (9 + 17)  # running samples at 10..90 and 130..290 s
    assert scrap == 4  # rejects at 50, 150, 200 and 250 s (only while running)
    assert good == total - scrap
    assert kwh == pytest.approx(0.5 * 39)  # the first sample only anchors the counter


def test_replay_and_restart_change_nothing(repo: Repository, tmp_path: Path) -> None:
    batches = stream()
    run(repo, batches[:17])
    run(repo, batches[:25])  # a restart that replays from the historian, overlapping
    run(repo, batches)
    first = snapshot(repo)
    run(repo, batches)  # everything again
    assert snapshot(repo) == first
    fresh_engine = open_engine(f"sqlite:///{tmp_path / 'fresh.db'}")  # the same stream, derived in one go
    migrate(fresh_engine)
    other = Repository(fresh_engine, CFG)
    other.sync_plant([(A, "press", "")])
    run(other, batches)
    a, b = snapshot(repo), snapshot(other)
    assert [r[1:] for r in a[0]] == [r[1:] for r in b[0]] and a[1:] == b[1:]


def test_orders_start_and_complete_themselves(repo: Repository) -> None:
    repo.create_order(OrderSpec(id="WO-1", product="p", asset=A, quantity=50), "alice", OrderStatus.RELEASED)
    repo.create_order(
        OrderSpec(id="WO-2", product="p", asset=A, quantity=1000), "alice", OrderStatus.RELEASED
    )
    run(repo, stream())
    o1, o2 = repo.order("WO-1"), repo.order("WO-2")
    assert o1["status"] == "completed" and o2["status"] == "running"
    perf = {p.id: p for p in repo.performance()}
    # counts belong to orders by bucket: WO-1 keeps the rest of the bucket in which it reached 50
    assert 50 <= perf["WO-1"].good <= 50 + 30 and perf["WO-1"].good + perf["WO-2"].good == 130 - 4
    assert o1["actual_end_ns"] <= o2["actual_start_ns"]
    actions = [(r["entity_id"], r["action"], r["actor"]) for r in repo.audit("order").items]
    assert ("WO-1", "running", "mes") in actions and ("WO-1", "completed", "mes") in actions


def test_transition_guards_and_audit(repo: Repository) -> None:
    repo.create_order(OrderSpec(id="WO-9", product="p", asset=A, quantity=5), "bob")
    with pytest.raises(Conflict, match="planned: cannot become running"):
        repo.transition("WO-9", OrderStatus.RUNNING, "bob")
    repo.transition("WO-9", OrderStatus.RELEASED, "bob")
    repo.transition("WO-9", OrderStatus.CANCELLED, "bob")
    with pytest.raises(Conflict, match="allowed: none"):
        repo.transition("WO-9", OrderStatus.RELEASED, "bob")
    with pytest.raises(Conflict, match="already exist"):
        repo.create_order(OrderSpec(id="WO-9", product="p", asset=A, quantity=5), "bob")
    trail = repo.audit("order", "WO-9").items
    assert [(r["action"], r["before"] and r["before"]["status"]) for r in trail] == [
        ("create", None),
        ("released", "planned"),
        ("cancelled", "released"),
    ]


def test_person_reason_survives_derivation_and_split(repo: Repository) -> None:
    batches = stream()
    run(repo, batches[:12])  # into the stop at 100 s
    stop = next(r for r in repo.intervals(A, stops_only=True).items)
    repo.assign_reason(stop["id"], "failures", "carol")
    run(repo, batches)
    after = repo.interval(stop["id"])
    assert (
        after["reason"] == "failures" and after["reason_by"] == "carol" and after["end_ns"] == T0 + 130 * NS
    )
    first, second = repo.split_stop(stop["id"], T0 + 115 * NS, "carol", reason="die_crack")
    assert (first["end_ns"], second["start_ns"], second["end_ns"]) == (
        T0 + 115 * NS,
        T0 + 115 * NS,
        T0 + 130 * NS,
    )
    with pytest.raises(Conflict, match="strictly inside"):
        repo.split_stop(stop["id"], T0 + 200 * NS, "carol")
    assert [r["action"] for r in repo.audit("stop").items] == ["assign_reason", "split"]


def test_micro_stops_and_unknown_codes_from_kpi_inputs(repo: Repository) -> None:
    rows = [("mode", 0, 10), ("mode", 30, 20), ("mode", 50, 10), ("mode", 100, 99), ("mode", 200, 10)]
    run(repo, [batch(rows)])
    intervals, _ = repo.kpi_inputs([A], T0, T0 + 300 * NS, now=T0 + 300 * NS)
    from mes.losses import Loss

    assert intervals.loss.tolist() == [
        Loss.RUNNING,
        Loss.MINOR_STOP,
        Loss.RUNNING,
        Loss.UNPLANNED_STOP,
        Loss.RUNNING,
    ]
    states = [r["state"] for r in repo.intervals(A).items]
    assert states[3] == StateCategory.UNKNOWN.value  # code 99 is in no state table: shown as unknown
