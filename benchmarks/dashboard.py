"""Benchmark of the dashboard over days of one-second data: first render of every page in Chromium, and the
round trip of the live plant-map update beside the bare historian reads that callback needs.

Run: .venv/bin/python benchmarks/dashboard.py [--days 7] [--assets 2]   (needs Debian's chromium)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from browser_support import chromium  # noqa: E402
from dashboard_support import PASSWORD, serve, write_config  # noqa: E402

from dashboard import auth  # noqa: E402
from historian.factory import open_reader, open_store  # noqa: E402
from historian.reader import SyncReader  # noqa: E402
from mes.db import open_engine  # noqa: E402
from mes.lots import LotMaker  # noqa: E402
from mes.service import MesService  # noqa: E402
from plant_simulator.layout import qijiang_assets  # noqa: E402
from plant_simulator.plant import Plant  # noqa: E402
from shopfloor.app.backfill import backfill  # noqa: E402
from shopfloor.config.load import load_plant_config  # noqa: E402
from shopfloor.model import EventKind, now_ns  # noqa: E402

NS = 1_000_000_000
PAGES = ("", "line", "asset", "maintenance", "quality", "mes", "system")
LOADED = (
    "return document.querySelector('h2') !== null"
    " && document.querySelectorAll('[data-dash-is-loading=\"true\"]').length === 0"
)


async def fill(cfg: object, plant: Plant, hours: int) -> int:
    store = open_store(cfg.historian)  # type: ignore[attr-defined]
    await store.open()
    try:
        n = await backfill(store, plant, hours, every=1)
    finally:
        await store.close()
    mes = MesService(
        cfg.mes,  # type: ignore[attr-defined]
        open_engine(cfg.mes),  # type: ignore[attr-defined]
        [(a.path, a.kind, a.description) for a in cfg.assets],  # type: ignore[attr-defined]
        open_reader(cfg.historian),  # type: ignore[attr-defined]
        None,
        settle_s=0.0,
        lot_maker=LotMaker(cfg.mes),  # type: ignore[attr-defined]
    )
    await mes.start()
    for _ in range(3000):
        await asyncio.sleep(0.2)
        if mes.catch_ups >= 2:
            break
    await mes.stop()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--assets", type=int, default=2, help="assets of the default plant (one per line first)")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    models = qijiang_assets()
    order = [models[0], models[9], *[m for i, m in enumerate(models) if i not in (0, 9)]]
    hours = int(args.days * 24)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plant = Plant(
            order[: args.assets], seed=1, start_ns=(now_ns() // NS - hours * 3600) * NS, site="qijiang"
        )
        cfg = load_plant_config(write_config(tmp, plant))
        t0 = time.monotonic()
        n = asyncio.run(fill(cfg, plant, hours))
        print(f"history: {n:,} samples ({args.assets} assets, {args.days:g} days of 1 s data) in "
              f"{time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip
        users = auth.Users(cfg.dashboard.users_file)
        users.set("viewer", "viewer", PASSWORD["viewer"])
        with serve(cfg) as svc:
            url = svc.url
            with chromium(tmp / "profile") as d:
                d.get(url + "login")
                d.find_element("id", "username").send_keys("viewer")
                d.find_element("id", "password").send_keys(PASSWORD["viewer"])
                d.find_element("id", "login-submit").click()
                for page in PAGES:  # once to warm the caches and the browser, then timed
                    for timed in (False, True):
                        t = time.monotonic()
                        d.get(url + page)
                        for _ in range(600):
                            if d.execute_script(LOADED):
                                break
                            time.sleep(0.02)
                        if timed:
                            print(
                                f"first render /{page}: {time.monotonic() - t:.2f} s (goal < 1.5 s)",
                                flush=True,
                            )
            s = requests.Session()
            s.post(url + "login", data={"username": "viewer", "password": PASSWORD["viewer"]}, timeout=10)
            body = {
                "output": "plant-map.children",
                "outputs": {"id": "plant-map", "property": "children"},
                "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
                "changedPropIds": ["tick.n_intervals"],
                "state": [],
            }
            trips = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                r = s.post(url + "_dash-update-component", json=body, timeout=30)
                r.raise_for_status()
                trips.append(time.perf_counter() - t)
                time.sleep(cfg.dashboard.refresh_s)  # as a browser does: one update per interval
            with SyncReader(open_reader(cfg.historian)) as reader:
                bare = []
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    reader.latest()
                    now = now_ns()
                    reader.query_events(now - 30 * 86400 * NS, now, None, EventKind.ALARM)
                    bare.append(time.perf_counter() - t)
        a, b = statistics.median(trips), statistics.median(bare)
        print(f"live update plant-map round trip median {a * 1000:.0f} ms (goal < 300 ms) vs bare historian "
              f"reads {b * 1000:.0f} ms ratio {a / b:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
