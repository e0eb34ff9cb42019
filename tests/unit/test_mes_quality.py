"""Inspection results on a real SQLite MES: each lands on the lot made at its time, a fail fails the lot once
with an audit row, reruns store nothing twice, a result from before its lot is attached later.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select

from mes import tables as t
from mes.db import migrate, open_engine
from mes.quality import InspectionResult
from mes.records import NotFound
from mes.repository import Repository
from shopfloor.config.mes import MesConfig

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
A = "acme/strip/finishing/slitter-2"
CFG = MesConfig.model_validate({"database": "sqlite:///unused", "assets": [{"path": A, "state": "mode"}]})


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    engine = open_engine(CFG.model_copy(update={"database": f"sqlite:///{tmp_path / 'mes.db'}"}))
    migrate(engine)
    r = Repository(engine, CFG)
    r.sync_plant([(A, "slitting_line", "")])
    return r


def add_lot(repo: Repository, lot: str, start: int, end: int) -> None:
    with repo.engine.begin() as conn:
        conn.execute(
            insert(t.lots), {"id": lot, "kind": "coil", "asset": A, "start_ns": start, "end_ns": end}
        )


def verdict(repo: Repository, lot: str) -> str:
    with repo.engine.connect() as conn:
        return conn.execute(select(t.lots.c.verdict).where(t.lots.c.id == lot)).scalar_one()


def test_results_land_on_the_lot_of_their_time_and_a_fail_fails_it_once(repo: Repository) -> None:
    add_lot(repo, "C1", T0, T0 + 900 * NS)
    add_lot(repo, "C2", T0 + 900 * NS, T0 + 1800 * NS)
    results = [
        InspectionResult(A, T0 + 900 * NS, "surface", "pass"),  # at C1's end: C1
        InspectionResult(A, T0 + 1200 * NS, "surface_hole", "fail", 0.93, "probability"),
        InspectionResult(A, T0 + 1300 * NS, "surface_scratch", "fail", 0.71, "probability"),
    ]
    assert repo.record_inspections(results) == [("C1", True), ("C2", True), ("C2", True)]
    assert verdict(repo, "C2") == "fail" and verdict(repo, "C1") == "unknown"
    assert repo.record_inspections(results) == [("C1", False), ("C2", False), ("C2", False)]
    with repo.engine.connect() as conn:
        audits = conn.execute(select(t.audit).where(t.audit.c.entity == "lot")).all()
        rows = conn.execute(select(t.quality_results)).all()
    assert len(audits) == 1 and len(rows) == 3
    assert [r["characteristic"] for r in repo.quality_of_lot("C2")] == ["surface_hole", "surface_scratch"]


def test_a_result_stored_before_its_lot_existed_is_attached_on_the_next_run(repo: Repository) -> None:
    res = InspectionResult(A, T0 + 100 * NS, "surface_inclusion", "fail", 0.8, "probability")
    assert repo.record_inspection(res) == (None, True)
    add_lot(repo, "C7", T0, T0 + 900 * NS)  # the MES makes the coil's lot when the coil ends
    assert repo.record_inspection(res) == ("C7", False)
    assert verdict(repo, "C7") == "fail"
    assert [r["lot_id"] for r in repo.quality_of_lot("C7")] == ["C7"]


def test_an_unknown_asset_stores_nothing_of_the_batch(repo: Repository) -> None:
    add_lot(repo, "C1", T0, T0 + 900 * NS)
    batch = [
        InspectionResult(A, T0 + 10 * NS, "surface", "pass"),
        InspectionResult("acme/strip/finishing/nobody", T0, "surface", "pass"),
    ]
    with pytest.raises(NotFound, match="nobody"):
        repo.record_inspections(batch)
    with repo.engine.connect() as conn:
        assert conn.execute(select(t.quality_results)).all() == []
    with pytest.raises(ValueError, match="verdict must be one of"):
        InspectionResult(A, T0, "surface", "maybe")
