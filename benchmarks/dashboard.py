"""Benchmark of the dashboard over days of one-second data: first render of every page in Chromium, and the
round trip of the live plant-map update beside the bare historian reads that callback needs.

Run: .venv/bin/python benchmarks/dashboard.py [--days 7] [--assets N] [--keep DIR] [--profile]   (needs Debian's
chromium). The whole default plant (231 signals, 140 M samples) takes about 7 minutes to write; --keep DIR
keeps that history for the next run, --assets 2 is a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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


class Profiler:
    """Profiles every request the app serves while ``page`` is set, summed per page (--profile)."""

    def __init__(self, server: Any) -> None:
        self.page: str | None = None
        self.stats: dict[str, pstats.Stats] = {}
        self.lock = threading.Lock()
        inner = server.wsgi_app

        def wsgi(environ: Any, start_response: Any) -> Any:
            page = self.page
            if page is None:
                return inner(environ, start_response)
            p = cProfile.Profile()
            out = p.runcall(lambda: list(inner(environ, start_response)))
            with self.lock:
                if page in self.stats:
                    self.stats[page].add(p)
                else:
                    self.stats[page] = pstats.Stats(p)
            return out

        server.wsgi_app = wsgi

    def report(self) -> None:
        for page, st in self.stats.items():
            print(f"--- profile of /{page} (server side, all requests of its first render)")
            st.sort_stats("cumulative").print_stats(25)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument(
        "--assets",
        type=int,
        default=0,
        help="assets of the default plant, one per line first (0: all of them)",
    )
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--keep", type=Path, help="keep the history in this folder and reuse it on the next run")
    ap.add_argument("--profile", action="store_true", help="print where each page's first render spends")
    args = ap.parse_args()
    models = qijiang_assets()
    order = [models[0], models[9], *[m for i, m in enumerate(models) if i not in (0, 9)]]
    hours = int(args.days * 24)
    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = args.keep.resolve()
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        done = tmp / "history-done"
        if done.exists():
            cfg = load_plant_config(tmp / "plant.yaml")
            print(f"history: reused from {tmp} ({done.read_text().strip()})", flush=True)
        else:
            start = (now_ns() // NS - hours * 3600) * NS
            plant = Plant(order[: args.assets or len(order)], seed=1, start_ns=start, site="qijiang")
            cfg = load_plant_config(write_config(tmp, plant, clock="data"))
            t0 = time.monotonic()
            n = asyncio.run(fill(cfg, plant, hours))
            what = f"{n:,} samples ({args.assets or len(order)} assets, {args.days:g} days of 1 s data)"
            print(f"history: {what} in {time.monotonic() - t0:.0f} s", flush=True)
            if args.keep:
                done.write_text(what + "\n")
        users = auth.Users(cfg.dashboard.users_file)
        users.set("viewer", "viewer", PASSWORD["viewer"])
        with serve(cfg) as svc:
            url = svc.url
            prof = Profiler(svc.app.server) if args.profile else None
            with chromium(tmp / "profile") as d:
                d.get(url + "login")
                d.find_element("id", "username").send_keys("viewer")
                d.find_element("id", "password").send_keys(PASSWORD["viewer"])
                d.find_element("id", "login-submit").click()
                for page in PAGES:  # once to warm the caches and the browser, then timed
                    for timed in (False, True):
                        if prof:
                            prof.page = page if timed else None
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
            if prof:
                prof.report()
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
