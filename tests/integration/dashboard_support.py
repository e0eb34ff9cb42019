"""A dashboard over real stores: hours of the default plant back-filled into SQLite, the MES derived from it.

``history(tmp)`` builds the stores once per module; ``serve(cfg)`` runs the dashboard behind waitress on a
free loopback port, with one user per role, and stops it after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from dashboard import auth
from dashboard.server import DashboardService
from historian.factory import open_reader, open_store
from mes.db import open_engine
from mes.lots import LotMaker
from mes.service import MesService
from plant_simulator.config_gen import plant_config
from plant_simulator.plant import Plant, default_plant
from shopfloor.app.backfill import backfill
from shopfloor.config.load import load_plant_config
from shopfloor.config.schema import PlantConfig
from shopfloor.model import now_ns

NS = 1_000_000_000
PASSWORD = {"viewer": "viewer-pass-1", "engineer": "engineer-pass-1", "admin": "admin-pass-12"}


@dataclass
class History:
    cfg: PlantConfig
    path: Path
    plant: Plant
    end_ns: int


def write_config(tmp: Path, plant: Plant, historian: str | None = None, **dashboard: object) -> Path:
    doc = json.loads(json.dumps(plant_config(plant)))
    doc["sources"] = []
    doc["historian"] = {"url": historian or f"sqlite:///{tmp / 'h.db'}", "spool": {"dir": str(tmp / "spool")}}
    doc["mes"]["database"] = f"sqlite:///{tmp / 'mes.db'}"
    doc["dashboard"] = {
        "users_file": str(tmp / "users.json"),
        "secret_key_file": str(tmp / "session.key"),
        "secure_cookies": False,  # requests does not send Secure cookies over http (Chromium does)
        **dashboard,
    }
    path = tmp / "plant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


async def _fill(cfg: PlantConfig, plant: Plant, hours: int) -> None:
    store = open_store(cfg.historian)
    await store.open()
    try:
        await backfill(store, plant, hours, every=10)
    finally:
        await store.close()
    mes = MesService(
        cfg.mes,
        open_engine(cfg.mes),
        [(a.path, a.kind, a.description) for a in cfg.assets],
        open_reader(cfg.historian),
        None,
        settle_s=0.0,
        follow_every_s=0.2,
        lot_maker=LotMaker(cfg.mes),
    )
    await mes.start()
    try:
        end = plant.start_ns + (hours * 3600 - 120) * NS
        assets = [m.path for m in cfg.mes.assets]
        for _ in range(900):  # bounded: until the MES has derived every asset up to the end of the history
            await asyncio.sleep(0.2)
            newest = await asyncio.to_thread(lambda: [mes.repo.newest_ns(a) for a in assets])
            if mes.catch_ups >= 2 and all(n is not None and n >= end for n in newest):
                break
    finally:
        await mes.stop()


def history(
    tmp: Path, hours: int = 6, seed: int = 3, historian: str | None = None, **dashboard: object
) -> History:
    """``hours`` of the default plant, ending about now, in a historian (SQLite under ``tmp`` unless
    ``historian`` is another URL) and an SQLite MES under ``tmp``."""
    start = (now_ns() // NS - hours * 3600) * NS
    plant = default_plant(seed=seed, start_ns=start)
    path = write_config(tmp, plant, historian, **dashboard)
    cfg = load_plant_config(path)
    asyncio.run(_fill(cfg, plant, hours))
    users = auth.Users(cfg.dashboard.users_file)
    for role, pw in PASSWORD.items():
        users.set(role, role, pw)  # type: ignore[arg-type]
    return History(cfg, path, plant, start + hours * 3600 * NS)


@contextlib.contextmanager
def serve(cfg: PlantConfig) -> Iterator[DashboardService]:
    svc = DashboardService(cfg, port=0)
    asyncio.run(svc.start())
    try:
        yield svc
    finally:
        svc.stop_sync()


def login(url: str, role: str) -> requests.Session:
    s = requests.Session()
    r = s.post(
        url + "login", data={"username": role, "password": PASSWORD[role]}, timeout=10, allow_redirects=False
    )
    assert r.status_code == 302, r.text[:300]
    return s
