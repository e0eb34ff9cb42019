"""The maintenance-request API served by real uvicorn on loopback, on SQLite and on a real PostgreSQL:
idempotent opening (also many at once), filters and paging, auth on every write, guarded transitions.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mes.api import ApiService, Tokens, create_app
from mes.db import migrate, open_engine
from mes.repository import Repository
from shopfloor.config.mes import ApiConfig, MesConfig
from shopfloor.testing.servers import free_port

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
LINE = "acme/rolling/line-7"
A = f"{LINE}/stand-1"
B = f"{LINE}/stand-2"
TOKEN = "s3cret-token-for-tests-only"  # the analytics' token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALICE = {"Authorization": "Bearer alice-token-for-tests-only"}  # a person's
CFG = MesConfig.model_validate({"assets": [{"path": p, "state": "state"} for p in (A, B)]})


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
    os.environ["SHOPFLOOR_TEST_TOKENS"] = f"analytics:{TOKEN},alice:{ALICE['Authorization'][7:]}"
    tokens = Tokens.from_config(ApiConfig(tokens_env="SHOPFLOOR_TEST_TOKENS"))
    service = ApiService(create_app(repo, tokens, max_body_bytes=64 * 1024), ApiConfig(port=free_port()))
    await service.start()
    try:
        yield f"http://127.0.0.1:{service.port}/api/v1", repo
    finally:
        await service.stop()
        engine.dispose()


def request_body(asset: str = A, mode: str = "roll_wear", at: int = T0, **kw: Any) -> dict[str, Any]:
    return {
        "key": f"pdm:equipment:{asset}:{mode}:{at}",
        "asset": asset,
        "kind": "equipment",
        "subject": mode,
        "opened_ns": at,
        "rul_hours": 30.0,
        "rul_low_hours": 20.0,
        "rul_high_hours": 45.0,
        "score": 0.9,
        "evidence": ["torque_rms", "vibration_crest"],
        "detail": "progress 0.9 of a typical roll_wear",
        **kw,
    }


async def test_open_list_acknowledge_close(api: tuple[str, Repository]) -> None:
    base, repo = api
    url = f"{base}/maintenance/requests"
    async with httpx.AsyncClient(timeout=10) as c:
        assert (await c.post(url, json=request_body())).status_code == 401
        r = await c.post(url, json=request_body(), headers=AUTH)
        assert r.status_code == 201, r.text
        first = r.json()
        assert first["status"] == "open" and first["evidence"] == ["torque_rms", "vibration_crest"]
        assert first["updated_by"] == "analytics" and first["opened_ns"] == T0
        r = await c.post(url, json=request_body(rul_hours=5.0), headers=AUTH)
        assert r.status_code == 200 and r.json() == first  # the same key: the row already opened
        r = await c.post(url, json=request_body(asset=B, at=T0 + NS, rul_hours=None), headers=AUTH)
        assert r.status_code == 201 and r.json()["rul_hours"] is None
        second = r.json()["id"]
        rid = first["id"]

        r = await c.post(f"{url}/{rid}/acknowledge", json={"note": "roll change planned"})
        assert r.status_code == 401
        r = await c.post(
            f"{url}/{rid}/acknowledge",
            json={"note": "roll change planned"},
            headers={"Authorization": "Bearer x"},
        )
        assert r.status_code == 401 and repo.request(rid)["status"] == "open"
        r = await c.post(f"{url}/{rid}/acknowledge", json={"note": "roll change planned"}, headers=ALICE)
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["note"]) == ("acknowledged", "roll change planned")
        assert r.json()["updated_by"] == "alice"

        listed = (await c.get(url, params={"status": "open"})).json()
        assert [i["id"] for i in listed["items"]] == [second] and listed["total"] == 1
        listed = (await c.get(url, params={"status": "acknowledged", "asset": LINE})).json()
        assert [i["id"] for i in listed["items"]] == [rid]
        assert [i["id"] for i in (await c.get(url)).json()["items"]] == [second, rid]  # newest first
        assert (await c.get(url, params={"status": "done"})).status_code == 422
        assert (await c.get(f"{url}/{rid}")).json()["status"] == "acknowledged"
        assert (await c.get(f"{url}/99999")).status_code == 404

        r = await c.post(f"{url}/{rid}/close", headers=ALICE)  # the note is optional
        assert r.status_code == 200 and r.json()["status"] == "closed"
        assert r.json()["note"] == "roll change planned"
        r = await c.post(f"{url}/{rid}/close", json={"note": "again"}, headers=AUTH)
        assert r.status_code == 409 and f"request {rid} is closed" in r.json()["detail"]
        r = await c.post(f"{url}/{rid}/acknowledge", headers=AUTH)
        assert r.status_code == 409 and "is closed" in r.json()["detail"]
        r = await c.post(f"{url}/{second}/close", json={"note": "false alarm"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "closed"  # open -> closed directly
        assert (await c.post(f"{url}/99999/close", headers=AUTH)).status_code == 404

        trail = (await c.get(f"{base}/audit", params={"entity": "maintenance", "entity_id": rid})).json()
        assert [(i["action"], i["actor"]) for i in trail["items"]] == [
            ("open", "analytics"),
            ("acknowledged", "alice"),
            ("closed", "alice"),
        ]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"kind": "quality"}, "kind"),
        ({"subject": ""}, "subject"),
        ({"opened_ns": "soon"}, "opened_ns"),
        ({"evidence": "torque_rms"}, "evidence"),
        ({"colour": "red"}, "colour"),
        ({"key": "k" * 256}, "key"),
    ],
)
async def test_bad_requests_are_refused_with_the_reason(
    api: tuple[str, Repository], change: dict[str, Any], where: str
) -> None:
    base, repo = api
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(f"{base}/maintenance/requests", json=request_body(**change), headers=AUTH)
        assert r.status_code == 422, r.text
        assert where in r.text
        body = request_body()
        del body["asset"]
        r = await c.post(f"{base}/maintenance/requests", json=body, headers=AUTH)
        assert r.status_code == 422 and "asset" in r.text and "missing" in r.text
        r = await c.post(f"{base}/maintenance/requests", json=request_body(asset="acme/x/y/z"), headers=AUTH)
        assert r.status_code == 404 and "unknown asset acme/x/y/z" in r.text
        r = await c.post(f"{base}/maintenance/requests/1/acknowledge", json={"nope": 1}, headers=AUTH)
        assert r.status_code == 422 and "nope" in r.text
    assert repo.requests().total == 0


async def test_many_opens_of_one_alert_at_once_make_one_request(api: tuple[str, Repository]) -> None:
    base, repo = api
    async with httpx.AsyncClient(timeout=20) as c:
        rs = await asyncio.gather(
            *(c.post(f"{base}/maintenance/requests", json=request_body(), headers=AUTH) for _ in range(12))
        )
    assert sorted(r.status_code for r in rs) == [200] * 11 + [201]
    assert len({r.json()["id"] for r in rs}) == 1
    assert repo.requests().total == 1 and repo.audit("maintenance").total == 1


async def test_paging_by_cursor_and_openapi(api: tuple[str, Repository]) -> None:
    base, _ = api
    url = f"{base}/maintenance/requests"
    async with httpx.AsyncClient(timeout=10) as c:
        made = []
        for i in range(5):
            r = await c.post(url, json=request_body(at=T0 + i * NS), headers=AUTH)
            made.append(r.json()["id"])
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            p = (await c.get(url, params=params)).json()
            seen += [i["id"] for i in p["items"]]
            if p["next_cursor"] is None:
                break
            params["cursor"] = p["next_cursor"]
        assert seen == made[::-1]
        doc = (await c.get(f"{base}/openapi.json")).json()
    for path in (
        "/api/v1/maintenance/requests",
        "/api/v1/maintenance/requests/{request_id}",
        "/api/v1/maintenance/requests/{request_id}/acknowledge",
        "/api/v1/maintenance/requests/{request_id}/close",
    ):
        assert path in doc["paths"]
    assert set(doc["paths"]["/api/v1/maintenance/requests"]) == {"get", "post"}
    assert "MaintenanceOpen" in doc["components"]["schemas"]
