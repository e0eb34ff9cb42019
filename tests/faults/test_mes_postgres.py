"""The MES on a real PostgreSQL under faults: the database killed mid-stream and brought back, and many
writers at once (derivation from the historian, API-style order changes, imports, reason edits).

Nothing may be lost or counted twice: the MES's figures must equal the ones computed from the data.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from historian.sqlite_store import SQLiteStore
from mes import tables as t
from mes.db import migrate, open_engine
from mes.order_spec import OrderSpec, OrderStatus
from mes.repository import Conflict, Repository
from mes.service import MesService
from shopfloor.batch import SampleBatch
from shopfloor.config.mes import MesConfig
from shopfloor.testing.servers import PostgresServer

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
ASSETS = [f"acme/press-shop/line-{i}/press" for i in range(1, 4)]
CFG = MesConfig.model_validate(
    {
        "micro_stop_s": 30,
        "reasons": [{"id": "jam", "en": "Jam", "zh": "卡料", "loss": "breakdown", "codes": [3]}],
        "assets": [
            {"path": a, "reason": "why", "counters": {"total": "n"}, "ideal_cycle_s": 5.0} for a in ASSETS
        ],
    }
)


def minute(k: int) -> SampleBatch:
    """Minute ``k`` of every press: one stroke every 5 s while running; each press stops for 60 s every
    10 minutes (at a different offset), with reason code 3."""
    keys, series, ts, val = [], [], [], []
    for j, a in enumerate(ASSETS):
        base = len(keys)
        keys += [(a, "state"), (a, "why"), (a, "n")]
        for s in range(0, 60, 5):
            sec = k * 60 + s
            down = (sec // 60) % 10 == j
            count = sum(1 for x in range(5, sec + 1, 5) if (x // 60) % 10 != j)
            series += [base, base + 1, base + 2]
            ts += [T0 + sec * NS] * 3
            val += [6.0 if down else 1.0, 3.0 if down else 0.0, float(count)]
    return SampleBatch.from_columns(keys, np.array(series), np.array(ts), np.array(val))


def expected_total(minutes: int, j: int) -> float:
    last = (minutes - 1) * 60 + 55
    return float(sum(1 for x in range(5, last + 1, 5) if (x // 60) % 10 != j))


async def wait(cond, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s / 0.1)):
        if cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.postgres
async def test_postgres_killed_mid_stream_loses_and_duplicates_nothing(
    postgres_private: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_private.create_database("mes")
    store = SQLiteStore(tmp_path / "h.db")
    engine = open_engine(url)
    mes = MesService(
        CFG,
        engine,
        [(a, "press", "") for a in ASSETS],
        SQLiteStore(tmp_path / "h.db"),
        None,
        follow_every_s=0.2,
    )
    await mes.start()
    try:
        for k in range(20):  # 20 minutes reach the MES
            await store.write_samples(minute(k))
        await wait(lambda: mes.samples_used >= 20 * 12 * 3 * 3)
        postgres_private.kill()  # SIGKILL, mid-stream
        for k in range(20, 40):  # the plant goes on; the MES cannot write
            await store.write_samples(minute(k))
        await wait(lambda: "Error" in mes.last_error or "error" in mes.last_error.lower(), 30)
        postgres_private.start()
        for k in range(40, 60):
            await store.write_samples(minute(k))
        await wait(lambda: mes.samples_used >= 60 * 12 * 3 * 3, 90)
    finally:
        await mes.stop()
        await store.close()
    with engine.connect() as conn:
        for j, a in enumerate(ASSETS):
            total = conn.scalar(select(func.sum(t.count_buckets.c.total)).where(t.count_buckets.c.asset == a))
            assert total == expected_total(60, j), a
            stops = conn.execute(
                select(t.state_intervals.c.start_ns, t.state_intervals.c.end_ns, t.state_intervals.c.reason)
                .where(t.state_intervals.c.asset == a, t.state_intervals.c.state == "down")
                .order_by(t.state_intervals.c.start_ns)
            ).all()
            want = [(T0 + m * 60 * NS, T0 + (m + 1) * 60 * NS) for m in range(60) if m % 10 == j]
            assert [(s, e) for s, e, _ in stops] == want, a  # every stop once, none twice, none lost
            assert {r for *_, r in stops} == {"jam"}
    engine.dispose()


@pytest.mark.postgres
async def test_concurrent_writers_neither_lose_nor_duplicate(pg_url: str, tmp_path: Path) -> None:
    """Derivation, order traffic from four threads and reason edits, all at once, on one database."""
    engine = open_engine(pg_url)
    migrate(engine)
    store = SQLiteStore(tmp_path / "h.db")
    mes = MesService(
        CFG,
        engine,
        [(a, "press", "") for a in ASSETS],
        SQLiteStore(tmp_path / "h.db"),
        None,
        follow_every_s=0.1,
    )
    await mes.start()
    repo = Repository(engine, CFG)
    errors: list[BaseException] = []
    conflicts = [0]

    def orders(worker: int) -> None:
        try:
            for i in range(25):
                oid = f"W{worker}-{i}"
                repo.create_order(
                    OrderSpec(id=oid, product="p", asset=ASSETS[i % 3], quantity=1e9), f"u{worker}"
                )
                repo.transition(oid, OrderStatus.RELEASED, f"u{worker}")
                if i % 2:
                    repo.transition(oid, OrderStatus.CANCELLED, f"u{worker}")
                # everyone also races for the same shared id: exactly one may win
                try:
                    repo.create_order(
                        OrderSpec(id=f"shared-{i}", product="p", asset=ASSETS[0], quantity=1), f"u{worker}"
                    )
                except Conflict:
                    conflicts[0] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    def reasons() -> None:
        try:
            for _ in range(40):
                for stop in repo.intervals(stops_only=True, limit=5).items:
                    repo.assign_reason(stop["id"], "jam", "carol")
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=orders, args=(w,)) for w in range(4)] + [
            threading.Thread(target=reasons)
        ]
        for th in threads:
            th.start()
        for k in range(30):
            await store.write_samples(minute(k))
            await asyncio.sleep(0.02)
        for th in threads:
            await asyncio.to_thread(th.join, 120)
        await wait(lambda: mes.samples_used >= 30 * 12 * 3 * 3, 90)
    finally:
        await mes.stop()
        await store.close()
    assert errors == []
    with engine.connect() as conn:
        ids = list(conn.scalars(select(t.work_orders.c.id)))
        assert len(ids) == len(set(ids)) == 4 * 25 + 25
        assert conflicts[0] == 3 * 25  # every shared id won once, refused three times
        audit = conn.execute(
            select(t.audit.c.entity_id, t.audit.c.action).where(t.audit.c.entity == "order")
        ).all()
        created = [i for i, a in audit if a == "create"]
        assert sorted(created) == sorted(ids)  # one audit line per order, none lost, none twice
        for j, a in enumerate(ASSETS):
            total = conn.scalar(select(func.sum(t.count_buckets.c.total)).where(t.count_buckets.c.asset == a))
            assert total == expected_total(30, j), a
            n_stops = conn.scalar(
                select(func.count())
                .select_from(t.state_intervals)
                .where(t.state_intervals.c.asset == a, t.state_intervals.c.state == "down")
            )
            assert n_stops == len([m for m in range(30) if m % 10 == j])
    engine.dispose()
