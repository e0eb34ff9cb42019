"""The MES API served by real uvicorn on loopback, on SQLite and on a real PostgreSQL: orders and their
guards, validation (4xx with reasons), auth on every write, imports, B2MML export, stops, KPIs, audit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from mes.api import ApiService, Tokens, create_app
from mes.db import migrate, open_engine
from mes.derive import Deriver
from mes.repository import Repository
from shopfloor.batch import SampleBatch
from shopfloor.config.mes import ApiConfig, MesConfig, TimeRangeConfig
from shopfloor.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
T0 = 1_800_000_000 * NS
LINE = "acme/rolling/line-7"
A = f"{LINE}/stand-1"
B = f"{LINE}/stand-2"
TOKEN = "s3cret-token-for-tests-only"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CFG = MesConfig.model_validate(
    {
        "micro_stop_s": 60,
        "reasons": [
            {"id": "failures", "en": "Failures", "zh": "故障", "loss": "breakdown"},
            {"id": "roll_change", "en": "Roll change", "zh": "换辊", "loss": "setup", "codes": [5]},
        ],
        "assets": [
            {"path": p, "reason": "why", "counters": {"total": "coils"}, "ideal_cycle_s": 30.0}
            for p in (A, B)
        ],
        "products": [{"id": "cu-strip", "ideal_cycle_s": {A: 20.0}}],
    }
)


@pytest.fixture(params=["sqlite", "postgresql"])
def mes_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mes.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def api(mes_url: str) -> AsyncIterator[tuple[str, Repository]]:
    engine = open_engine(mes_url)
    migrate(engine)
    repo = Repository(engine, CFG)
    repo.sync_plant([(A, "mill", ""), (B, "mill", "")])
    service = ApiService(
        create_app(
            repo,
            Tokens({"alice": Tokens.from_config(_api_with(TOKEN)).digests["alice"]}),
            max_body_bytes=64 * 1024,
        ),
        ApiConfig(port=free_port()),
    )
    await service.start()
    try:
        yield f"http://127.0.0.1:{service.port}/api/v1", repo
    finally:
        await service.stop()
        engine.dispose()


def _api_with(token: str) -> ApiConfig:
    import os

    os.environ["SHOPFLOOR_TEST_TOKENS"] = f"alice:{token}"
    return ApiConfig(tokens_env="SHOPFLOOR_TEST_TOKENS")


def order(oid: str, **kw: object) -> dict[str, object]:
    return {"id": oid, "product": "cu-strip", "asset": A, "quantity": 10, **kw}


async def test_orders_lifecycle_guards_and_audit(api: tuple[str, Repository]) -> None:
    base, _ = api
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(f"{base}/orders", json=order("WO-1"))
        assert r.status_code == 401  # no token: nothing changes
        r = await c.post(
            f"{base}/orders", json=order("WO-1"), headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}
        )
        assert r.status_code == 401
        r = await c.post(f"{base}/orders", json=order("WO-1"), headers=AUTH)
        assert r.status_code == 201 and r.json()["status"] == "planned"
        assert (await c.post(f"{base}/orders", json=order("WO-1"), headers=AUTH)).status_code == 409
        r = await c.post(f"{base}/orders/WO-1/transition", json={"to": "running"}, headers=AUTH)
        assert r.status_code == 409 and "planned: cannot become running" in r.json()["detail"]
        for to in ("released", "running", "completed"):
            r = await c.post(f"{base}/orders/WO-1/transition", json={"to": to}, headers=AUTH)
            assert r.status_code == 200 and r.json()["status"] == to
        r = await c.patch(f"{base}/orders/WO-1", json={"quantity": 20}, headers=AUTH)
        assert r.status_code == 409 and "final" in r.json()["detail"]
        assert (await c.get(f"{base}/orders/WO-404")).status_code == 404
        trail = (await c.get(f"{base}/audit", params={"entity": "order", "entity_id": "WO-1"})).json()
        assert [(i["action"], i["actor"]) for i in trail["items"]] == [
            ("create", "alice"),
            ("released", "alice"),
            ("running", "alice"),
            ("completed", "alice"),
        ]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (order("WO-2", quantity=-3), "quantity"),
        (order("WO-2", planned_start="2026-13-01T00:00:00Z"), "planned_start"),
        (order("WO-2", planned_start="2026-12-01T08:00:00"), "time zone"),
        (order("WO-2", planned_start="2026-12-02T08:00:00Z", planned_end="2026-12-01T08:00:00Z"), "after"),
        (order("WO 2"), "order ids"),
        (order("WO-2", colour="red"), "colour"),
    ],
)
async def test_bad_orders_are_refused_with_the_reason(
    api: tuple[str, Repository], body: dict, where: str
) -> None:
    base, repo = api
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(f"{base}/orders", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert where in r.text
    assert repo.orders().total == 0


async def test_unknown_asset_oversize_body_and_pagination(api: tuple[str, Repository]) -> None:
    base, _ = api
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(f"{base}/orders", json=order("WO-3", asset="acme/nowhere/x/y"), headers=AUTH)
        assert r.status_code == 404 and "unknown asset acme/nowhere/x/y" in r.text
        big = order("WO-4", description="x" * 100) | {"pad": "y" * 100_000}
        r = await c.post(f"{base}/orders", json=big, headers=AUTH)
        assert r.status_code == 413
        for i in range(7):
            assert (await c.post(f"{base}/orders", json=order(f"P-{i}"), headers=AUTH)).status_code == 201
        p1 = (await c.get(f"{base}/orders", params={"limit": 3, "offset": 0})).json()
        p3 = (await c.get(f"{base}/orders", params={"limit": 3, "offset": 6})).json()
        assert p1["total"] == 7 and len(p1["items"]) == 3 and len(p3["items"]) == 1
        assert (await c.get(f"{base}/orders", params={"limit": 0})).status_code == 422


async def test_imports_are_all_or_nothing_and_performance_exports(api: tuple[str, Repository]) -> None:
    base, repo = api
    csv_ok = f"id,product,asset,quantity\nC-1,cu-strip,{A},5\nC-2,cu-strip,{B},6\n".encode()
    csv_bad = f"id,product,asset,quantity\nC-3,cu-strip,{A},5\nC-4,cu-strip,{B},-6\n".encode()
    async with httpx.AsyncClient(timeout=10) as c:
        hdr = {**AUTH, "Content-Type": "text/csv"}
        r = await c.post(f"{base}/orders/import", content=csv_bad, headers=hdr)
        assert r.status_code == 422 and "line 3" in r.text
        assert repo.orders().total == 0  # refused whole
        r = await c.post(f"{base}/orders/import", content=csv_ok, headers=hdr, params={"release": True})
        assert r.status_code == 201 and r.json()["created"] == 2
        xml = b"<ProductionSchedule><ProductionRequest><ID>X-1</ID></ProductionRequest"
        r = await c.post(
            f"{base}/orders/import", content=xml, headers={**AUTH, "Content-Type": "application/xml"}
        )
        assert r.status_code == 422
        r = await c.get(f"{base}/orders/performance.xml")
        assert r.status_code == 200 and b"ProductionPerformance" in r.content and b"C-2" in r.content


def feed(repo: Repository, rows: list[tuple[str, str, int, float]]) -> None:
    keys = sorted({(a, s) for a, s, _, _ in rows})
    idx = {k: i for i, k in enumerate(keys)}
    batch = SampleBatch.from_columns(
        keys,
        np.array([idx[(a, s)] for a, s, _, _ in rows]),
        np.array([T0 + t * NS for _, _, t, _ in rows]),
        np.array([v for *_, v in rows], dtype=float),
    )
    cursors, opens = repo.deriver_state()
    repo.apply(Deriver(CFG, cursors, opens).feed(batch))


async def test_stops_reasons_and_kpis(api: tuple[str, Repository]) -> None:
    """Stand 1 runs 0-600 s, stops for a roll change 600-1200 s, runs to 3600 s; 90 coils at ideal 30 s."""
    base, repo = api
    rows = [
        (A, "state", 0, 1),
        (A, "state", 600, 6),
        (A, "why", 600, 5),
        (A, "state", 1200, 1),
        (A, "why", 1200, 0),
    ]
    running = [t for t in range(0, 3601, 30) if not 600 <= t < 1200]  # the counter moves only while running
    rows += [(A, "coils", t, i) for i, t in enumerate(running)]
    rows += [(A, "state", 3600, 1)]
    feed(repo, rows)
    async with httpx.AsyncClient(timeout=10) as c:
        stops = (await c.get(f"{base}/stops", params={"asset": LINE})).json()["items"]
        assert [(s["state"], s["reason"], s["end_ns"] - s["start_ns"]) for s in stops] == [
            ("down", "roll_change", 600 * NS)
        ]
        sid = stops[0]["id"]
        assert (await c.post(f"{base}/stops/{sid}/reason", json={"reason": "failures"})).status_code == 401
        r = await c.post(f"{base}/stops/{sid}/reason", json={"reason": "no-such"}, headers=AUTH)
        assert r.status_code == 409 and "unknown reason" in r.text
        r = await c.post(f"{base}/stops/{sid}/reason", json={"reason": "failures"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["reason_by"] == "alice"
        start, end = "2027-01-15T08:00:00Z", "2027-01-15T09:00:00Z"  # T0 = 2027-01-15T08:00:00Z
        k = (await c.get(f"{base}/kpi", params={"asset": A, "start": start, "end": end})).json()
        assert k["breakdown_s"] == pytest.approx(600) and k["running_s"] == pytest.approx(3000)
        assert k["availability"] == pytest.approx(3000 / 3600)
        # 100 coils after the anchoring first sample; the one counted at 09:00 belongs to the next hour
        assert k["total_units"] == pytest.approx(99)
        assert k["effectiveness"] == pytest.approx(99 * 30 / 3000)
        bad = await c.get(f"{base}/kpi", params={"asset": A, "start": end, "end": start})
        assert bad.status_code == 422
        assert (
            await c.get(f"{base}/kpi", params={"asset": "acme/x", "start": start, "end": end})
        ).status_code == 404
        spec = (await c.get(f"{base}/openapi.json")).json()
        assert "/api/v1/orders" in spec["paths"] and "/api/v1/kpi" in spec["paths"]


async def test_an_order_runs_by_itself_and_has_its_own_kpis(api: tuple[str, Repository]) -> None:
    """A released order on stand 2 starts with production, counts at the product's ideal (20 s), and
    completes at its quantity; its KPIs cover the time it ran."""
    base, repo = api
    async with httpx.AsyncClient(timeout=10) as c:
        body = {"id": "WO-7", "product": "cu-strip", "asset": B, "quantity": 60}
        assert (
            await c.post(f"{base}/orders", json=body, headers=AUTH, params={"release": True})
        ).status_code == 201
        assert (await c.get(f"{base}/orders/WO-7/kpi")).status_code == 409  # not started
        # stand 2 runs the hour; a coil every 30 s; the product's ideal on stand 2 is not set, so 30 s
        rows = [(B, "state", 0, 1)] + [(B, "coils", t, t // 30) for t in range(0, 3601, 30)]
        feed(repo, rows)
        o = (await c.get(f"{base}/orders/WO-7")).json()
        assert o["status"] == "completed" and o["actual_start_ns"] == T0
        k = (await c.get(f"{base}/orders/WO-7/kpi")).json()
        assert k["order"] == "WO-7" and k["start_ns"] == T0 and k["end_ns"] == o["actual_end_ns"]
        assert 60 <= k["total_units"] <= 62  # completed in the bucket it reached 60
        assert k["effectiveness"] == pytest.approx(1.0, abs=0.02)


async def test_kpis_per_shift_split_a_stop_at_the_shift_boundary(
    api: tuple[str, Repository], mes_url: str
) -> None:
    """Shifts 06-14 and 14-22 UTC; stand 1 is down 13:30-14:30 (a breakdown across the boundary)."""
    base, repo = api
    repo.cfg = CFG.model_copy(
        update={
            "shifts": [
                TimeRangeConfig(name="early", start="06:00", end="14:00"),
                TimeRangeConfig(name="late", start="14:00", end="22:00"),
            ]
        }
    )
    day = T0 - 2 * 3600 * NS  # 2027-01-15T06:00:00Z
    down, up = day + 7 * 3600 * NS + 1800 * NS, day + 8 * 3600 * NS + 1800 * NS
    feed(repo, [(A, "state", (day - T0) // NS, 1), (A, "state", (down - T0) // NS, 6), (A, "why", (down - T0) // NS, 99),
                (A, "state", (up - T0) // NS, 1), (A, "state", (day - T0) // NS + 16 * 3600, 1)])  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(
            f"{base}/kpi/shifts",
            params={"asset": A, "start": "2027-01-15T00:00:00Z", "end": "2027-01-16T00:00:00Z"},
        )
        assert r.status_code == 200, r.text
        shifts = {s["shift"]: s for s in r.json()["shifts"]}
    assert set(shifts) == {"2027-01-15 early", "2027-01-15 late"}  # the shifts of the day asked for
    early, late = shifts["2027-01-15 early"], shifts["2027-01-15 late"]
    assert early["breakdown_s"] == pytest.approx(1800) and late["breakdown_s"] == pytest.approx(1800)
    assert early["n_failures"] == 1 and late["n_failures"] == 0  # counted where it started
    assert early["availability"] == pytest.approx((8 * 3600 - 1800) / (8 * 3600))


async def test_product_kpis_take_its_orders_together(api: tuple[str, Repository]) -> None:
    base, repo = api
    async with httpx.AsyncClient(timeout=10) as c:
        for oid, asset in (("P-A", A), ("P-B", B)):
            body = {"id": oid, "product": "cu-strip", "asset": asset, "quantity": 1e6}
            assert (
                await c.post(f"{base}/orders", json=body, headers=AUTH, params={"release": True})
            ).status_code == 201
        # stand 1 makes a coil every 20 s (its ideal for cu-strip), stand 2 every 60 s (ideal 30 s)
        feed(repo, [(A, "state", 0, 1)] + [(A, "coils", t, t // 20) for t in range(0, 3601, 20)])
        feed(repo, [(B, "state", 0, 1)] + [(B, "coils", t, t // 60) for t in range(0, 3601, 60)])
        window = {"start": "2027-01-15T08:00:00Z", "end": "2027-01-15T10:00:00Z"}  # beyond the data
        k = (await c.get(f"{base}/kpi/products/cu-strip", params=window)).json()
        assert sorted(k["orders"]) == ["P-A", "P-B"]
        a = (await c.get(f"{base}/orders/P-A/kpi")).json()
        b = (await c.get(f"{base}/orders/P-B/kpi")).json()
        assert k["total_units"] == a["total_units"] + b["total_units"]
        assert a["effectiveness"] == pytest.approx(1.0, abs=0.01) and b["effectiveness"] == pytest.approx(
            0.5, abs=0.02
        )
        expected = (a["net_productive_s"] + b["net_productive_s"]) / (
            a["actual_production_s"] + b["actual_production_s"]
        )
        assert k["effectiveness"] == pytest.approx(expected)
        assert (await c.get(f"{base}/kpi/products/nothing", params=window)).status_code == 404


async def test_trace_endpoint_walks_the_genealogy(api: tuple[str, Repository]) -> None:
    from mes.derive import Increment
    from mes.lots import LotMaker
    from shopfloor.config.mes import LotRuleConfig

    base, repo = api
    rules = [
        LotRuleConfig(asset=A, kind="coil", counter="coils"),
        LotRuleConfig(asset=B, kind="strip", counter="coils", inputs=[A], pieces=2),
    ]
    incs = [Increment(A, "coils", T0, 0, 0), Increment(B, "coils", T0, 0, 0)]
    incs += [Increment(A, "coils", T0 + 10 * NS, 1, 1), Increment(B, "coils", T0 + 20 * NS, 1, 1)]
    with repo.engine.begin() as conn:
        LotMaker(MesConfig(lots=rules)).apply(conn, incs)
    async with httpx.AsyncClient(timeout=10) as c:
        fwd = (await c.get(f"{base}/lots/stand-1-1/trace", params={"direction": "forward"})).json()
        back = (await c.get(f"{base}/lots/stand-2-1.2/trace")).json()
        assert (await c.get(f"{base}/lots/nope/trace")).status_code == 404
        assert (
            await c.get(f"{base}/lots/stand-1-1/trace", params={"direction": "sideways"})
        ).status_code == 422
    assert sorted(fwd["finished"]) == ["stand-2-1.1", "stand-2-1.2"]
    assert {n["id"] for n in back["nodes"]} == {"stand-2-1.2", "stand-1-1"}
