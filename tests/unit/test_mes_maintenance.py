"""Maintenance requests on a real SQLite file: idempotent opening (also from two engines at once), guarded
transitions, the audit trail, listing, and the 0002 migration of a database made at revision 0001.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select

from mes import tables as t
from mes.db import current_revision, migrate, open_engine
from mes.maintenance import ANALYTICS_ACTOR, MaintenanceRequest
from mes.order_spec import OrderSpec
from mes.repository import Conflict, NotFound, Repository
from shopfloor.config.mes import MesConfig

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
A = "acme/press-shop/line-2/press-9"
B = "acme/press-shop/line-3/press-1"
CFG = MesConfig.model_validate(
    {"database": "sqlite:///unused", "assets": [{"path": p, "state": "mode"} for p in (A, B)]}
)


def alert(asset: str = A, mode: str = "die_wear", at: int = T0, **kw: Any) -> MaintenanceRequest:
    base = MaintenanceRequest(
        key=f"pdm:equipment:{asset}:{mode}:{at}",
        asset=asset,
        kind="equipment",
        subject=mode,
        opened_ns=at,
        rul_hours=40.0,
        rul_low_hours=25.0,
        rul_high_hours=60.0,
        score=0.8,
        evidence=("force_rms", "vibration_kurtosis"),
        detail="progress 0.8 of a typical die_wear",
    )
    return replace(base, **kw)


def new_repo(engine: Engine) -> Repository:
    r = Repository(engine, CFG)
    r.sync_plant([(A, "press", ""), (B, "press", "")])
    return r


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'mes.db'}"
    engine = open_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture
def repo(db: str) -> Repository:
    return new_repo(open_engine(db))


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def test_opening_twice_with_the_same_key_keeps_one_row(repo: Repository) -> None:
    rid, created = repo.open_request(alert())
    again, created_again = repo.open_request(alert(rul_hours=10.0, detail="a later estimate"))
    assert created and not created_again and again == rid
    assert count(repo.engine, t.maintenance_requests) == 1
    row = repo.request(rid)
    assert row["status"] == "open" and row["rul_hours"] == 40.0  # the first opening stands
    assert row["evidence"] == ["force_rms", "vibration_kurtosis"] and row["updated_by"] == ANALYTICS_ACTOR
    assert repo.open_request_exists(alert().key)
    assert not repo.open_request_exists(alert(at=T0 + NS).key)
    trail = repo.audit("maintenance", str(rid)).items
    assert [(a["action"], a["actor"], a["before"]) for a in trail] == [("open", ANALYTICS_ACTOR, None)]
    assert trail[0]["after"]["key"] == alert().key


def test_concurrent_opens_from_two_engines_make_one_row_per_key(db: str) -> None:
    repos = [new_repo(open_engine(db)), new_repo(open_engine(db))]
    keys = 25
    barrier = threading.Barrier(len(repos))
    created: list[list[int]] = [[] for _ in repos]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            for k in range(keys):
                rid, new = repos[i].open_request(alert(at=T0 + k * NS))
                if new:
                    created[i].append(rid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(repos))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert sorted(created[0] + created[1]) == sorted(set(created[0] + created[1]))  # each id created once
    assert len(created[0]) + len(created[1]) == keys
    assert count(repos[0].engine, t.maintenance_requests) == keys
    assert repos[0].audit("maintenance").total == keys  # one "open" line per request, none for repeats


def test_sensor_fault_without_estimates_stores_nulls(repo: Repository) -> None:
    nan = math.nan
    req = MaintenanceRequest(
        key=f"pdm:sensor_fault:{A}:force_rms:{T0}",
        asset=A,
        kind="sensor_fault",
        subject="force_rms",
        opened_ns=T0,
        rul_hours=nan,
        rul_low_hours=nan,
        rul_high_hours=nan,
        score=1.0,
        evidence=(),
        detail="stuck",
    )
    rid, _ = repo.open_request(req)
    row = repo.request(rid)
    assert row["rul_hours"] is None and row["rul_low_hours"] is None and row["rul_high_hours"] is None
    assert row["kind"] == "sensor_fault" and row["subject"] == "force_rms" and row["evidence"] == []


def test_unknown_asset_and_bad_requests_are_refused(repo: Repository) -> None:
    with pytest.raises(NotFound, match="unknown asset acme/nowhere"):
        repo.open_request(alert(asset="acme/nowhere/x/y"))
    assert count(repo.engine, t.maintenance_requests) == 0
    assert repo.audit("maintenance").total == 0
    with pytest.raises(ValueError, match="kind 'quality'"):
        alert(kind="quality")
    with pytest.raises(ValueError, match="subject"):
        alert(subject="")
    with pytest.raises(ValueError, match="key"):
        alert(key="k" * 256)
    with pytest.raises(NotFound, match="no maintenance request 999"):
        repo.request(999)
    with pytest.raises(NotFound):
        repo.acknowledge_request(999, "alice")


def test_an_alert_raised_again_while_its_request_is_open_adds_no_request(repo: Repository) -> None:
    first, created = repo.open_request(alert(at=T0), once_per_subject=True)
    assert created
    again, created_again = repo.open_request(alert(at=T0 + 3600 * NS, score=0.9), once_per_subject=True)
    assert again == first and not created_again
    other, created_other = repo.open_request(
        alert(at=T0 + 3600 * NS, mode="seal_leak"), once_per_subject=True
    )
    assert created_other and other != first  # another subject is another request
    assert count(repo.engine, t.maintenance_requests) == 2
    trail = repo.audit("maintenance", str(first)).items
    assert [x["action"] for x in trail] == ["open", "raised-again"]
    assert trail[1]["after"] == {
        "key": alert(at=T0 + 3600 * NS).key,
        "opened_ns": T0 + 3600 * NS,
        "score": 0.9,
    }
    repo.acknowledge_request(first, "alice")
    assert repo.open_request(alert(at=T0 + 7200 * NS), once_per_subject=True) == (first, False)
    repo.close_request(first, "alice")
    # once the request is closed, the next raise is a new request
    later, created_later = repo.open_request(alert(at=T0 + 9000 * NS), once_per_subject=True)
    assert created_later and later not in (first, other)
    # without once_per_subject every key is its own request, as before
    assert repo.open_request(alert(at=T0 + 9500 * NS))[1]


def test_transitions_allowed_and_refused_with_the_audit_trail(repo: Repository) -> None:
    a, _ = repo.open_request(alert(at=T0))
    b, _ = repo.open_request(alert(at=T0 + NS))
    row = repo.acknowledge_request(a, "alice", "bearing ordered")
    assert (row["status"], row["updated_by"], row["note"]) == ("acknowledged", "alice", "bearing ordered")
    with pytest.raises(Conflict, match=f"request {a} is acknowledged: cannot become acknowledged"):
        repo.acknowledge_request(a, "bob")
    row = repo.close_request(a, "bob")
    assert (row["status"], row["updated_by"], row["note"]) == ("closed", "bob", "bearing ordered")
    assert repo.close_request(b, "carol", "false alarm")["status"] == "closed"  # open -> closed
    for move in (repo.acknowledge_request, repo.close_request):
        with pytest.raises(Conflict, match=r"is closed: .*\(allowed: none \(final\)\)"):
            move(a, "alice")
    trail = repo.audit("maintenance", str(a)).items
    assert [(x["action"], x["actor"]) for x in trail] == [
        ("open", ANALYTICS_ACTOR),
        ("acknowledged", "alice"),
        ("closed", "bob"),
    ]
    assert trail[1]["before"] == {"status": "open", "updated_by": ANALYTICS_ACTOR, "note": ""}
    assert trail[1]["after"] == {"status": "acknowledged", "updated_by": "alice", "note": "bearing ordered"}
    assert trail[2]["before"]["status"] == "acknowledged" and trail[2]["after"]["status"] == "closed"
    assert repo.audit("maintenance", str(b)).total == 2


def test_two_people_acknowledging_at_once_one_wins(db: str) -> None:
    repos = [new_repo(open_engine(db)), new_repo(open_engine(db))]
    for round_ in range(10):
        rid, _ = repos[0].open_request(alert(at=T0 + round_ * NS))
        barrier = threading.Barrier(2)
        results: list[str] = []

        def ack(r: Repository, who: str, rid: int = rid, out: list[str] = results, go: Any = barrier) -> None:
            go.wait()
            try:
                r.acknowledge_request(rid, who)
                out.append("ok")
            except Conflict:
                out.append("conflict")

        threads = [threading.Thread(target=ack, args=(r, f"p{i}")) for i, r in enumerate(repos)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert sorted(results) == ["conflict", "ok"]
        assert repos[0].audit("maintenance", str(rid)).total == 2  # open + one acknowledgement


def test_listing_filters_newest_first_and_pages_by_cursor(repo: Repository) -> None:
    ids = [repo.open_request(alert(asset=A if i % 2 == 0 else B, at=T0 + i * NS))[0] for i in range(7)]
    repo.acknowledge_request(ids[0], "alice")
    repo.close_request(ids[1], "alice")
    assert [r["id"] for r in repo.requests().items] == ids[::-1]
    assert [r["id"] for r in repo.requests(status="open").items] == [ids[i] for i in (6, 5, 4, 3, 2)]
    assert [r["id"] for r in repo.requests(status="open", asset=A).items] == [ids[i] for i in (6, 4, 2)]
    assert repo.requests(asset="acme/press-shop/line-3").total == 3  # a line: its assets' requests
    assert repo.requests(asset="acme/press-shop/line").total == 0  # a prefix is not a line
    seen: list[int] = []
    cursor = None
    while True:
        page = repo.requests(limit=3, cursor=cursor)
        seen += [r["id"] for r in page.items]
        if page.total <= len(page.items):
            break
        cursor = page.items[-1]["id"]
    assert seen == ids[::-1]


def _schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), t.metadata)
        )


def test_migrate_upgrades_a_revision_0001_database_in_place(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert migrate(engine, "0001") == (None, "0001")
    assert "maintenance_requests" not in inspect(engine).get_table_names()
    old = new_repo(engine)  # what a 0001 MES wrote: the plant, an order and its audit line
    old.create_order(OrderSpec(id="WO-1", product="p", asset=A, quantity=5), "alice")
    before = {name: count(engine, getattr(t, name)) for name in ("equipment", "work_orders", "audit")}

    assert migrate(engine) == ("0001", "0002")
    assert current_revision(engine) == "0002"
    assert {name: count(engine, getattr(t, name)) for name in before} == before
    assert _schema_diff(engine) == []  # the migration builds exactly what mes.tables declares
    repo = new_repo(engine)
    assert repo.order("WO-1")["quantity"] == 5
    rid, created = repo.open_request(alert())
    assert created and repo.request(rid)["status"] == "open"

    assert migrate(engine) == ("0002", "0002")  # a second migrate changes nothing
    assert count(engine, t.maintenance_requests) == 1 and repo.order("WO-1")["status"] == "planned"


def test_a_fresh_database_matches_the_tables(db: str) -> None:
    engine = open_engine(db)
    assert current_revision(engine) == "0002" and _schema_diff(engine) == []
