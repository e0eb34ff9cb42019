"""`make demo`'s command runs the plant end to end and the data lands in the embedded store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from historian.sqlite_store import SQLiteStore
from shopfloor.config import load_plant_config

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_and_stores_every_signal_of_the_default_plant(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SHOPFLOOR_HISTORIAN_URL", None)
    cmd = [sys.executable, "-m", "shopfloor.cli", "demo", "--config", str(ROOT / "examples/qijiang-plant.yaml"),
           "--duration", "3", "--speed", "30"]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("stopped:") and "pending=0" in last and "dropped=0" in last, out.stdout

    async def read() -> tuple[int, int]:
        store = SQLiteStore(tmp_path / "var/shopfloor.db")
        series = await store.list_series()
        latest = await store.latest()
        await store.close()
        return len(series), len(latest)

    n_series, n_latest = asyncio.run(read())
    cfg = load_plant_config(ROOT / "examples/qijiang-plant.yaml")
    n_signals = sum(len(a.signals) for a in cfg.assets)
    assert n_series == n_latest >= n_signals > 200
