"""`make demo`'s command runs the whole pipeline — virtual plant → OPC UA → connector → writer →
store — and every signal of the default plant lands in the embedded store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from historian.base import Store
from historian.sqlite_store import SQLiteStore
from shopfloor.config import load_plant_config
from shopfloor.model import SignalType
from shopfloor.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def demo_config(tmp_path: Path) -> Path:
    """The default plant config with its OPC UA and Modbus sources on free ports."""
    text = (ROOT / "examples/qijiang-plant.yaml").read_text()
    assert "    port: 5020\n" in text
    text = text.replace("    port: 5020\n", f"    port: {free_port()}\n")
    assert text.rstrip().endswith("}") and "\nmes:\n" in text  # the mes section comes last
    text += f"  api: {{port: {free_port()}}}\n"
    config = tmp_path / "plant.yaml"
    config.write_text(text.replace("opc.tcp://127.0.0.1:4840/", f"opc.tcp://127.0.0.1:{free_port()}/"))
    return config


def test_demo_runs_the_pipeline_and_stores_every_signal(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    text = config.read_text()
    port = int(text.split("opc.tcp://127.0.0.1:", 1)[1].split("/", 1)[0])
    modbus_port = int(text.split("    port: ", 1)[1].split("\n", 1)[0])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SHOPFLOOR_HISTORIAN_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "shopfloor.app.cli",
        "demo",
        "--config",
        str(config),
        "--duration",
        "8",
        "--speed",
        "30",
        "--port",
        str(free_port()),
        "--history-days",
        "0",
    ]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert f"OPC UA on 127.0.0.1:{port}, Modbus TCP on 127.0.0.1:{modbus_port}" in out.stdout
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("stopped:") and "pending=0" in last and "dropped=0" in last, out.stdout

    async def read() -> set[tuple[str, str]]:
        store = SQLiteStore(tmp_path / "var/shopfloor.db")
        series = await store.list_series()
        await store.close()
        return {(k.asset, k.signal) for k in series}

    stored = asyncio.run(read())
    cfg = load_plant_config(config)
    expected = {(a.path, s.name) for a in cfg.assets for s in a.signals}
    assert len(expected) > 200
    assert expected <= stored, f"missing: {sorted(expected - stored)[:10]}"
    # the MES ran on the same stream: every mapped asset has its state interval and cursors
    import sqlite3

    with sqlite3.connect(tmp_path / "var/mes/mes.db") as db:
        derived = {a for (a,) in db.execute("SELECT DISTINCT asset FROM state_intervals")}
        counted = {a for (a,) in db.execute("SELECT DISTINCT asset FROM cursors")}
    assert derived == counted == {a.path for a in cfg.mes.assets}


def run_demo(tmp_path: Path, config: Path, url: str, seconds: int = 6) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHOPFLOOR_HISTORIAN_URL": url}
    cmd = [sys.executable, "-m", "shopfloor.app.cli", "demo", "--config", str(config), "--port", str(free_port()),
           "--history-days", "0", "--duration", str(seconds), "--speed", "30"]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


async def stored_points(
    store: Store, keys: list[tuple[str, str]]
) -> dict[tuple[str, str, int], float | None]:
    out: dict[tuple[str, str, int], float | None] = {}
    for asset, signal in keys:
        f = await store.query_raw(asset, signal, 0, 2**62)
        for t, v in zip(f.ts.tolist(), f.value.tolist()):
            out[(asset, signal, t)] = None if v != v else v
    return out


async def test_a_second_demo_run_rewrites_nothing_and_no_false_zero_is_stored(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    """Two demo runs on one store: the second resumes after the simulated time the first served, so
    every point of the first run is still there with its value; and no state signal holds the
    placeholder 0 a variable is created with (states run 1..7)."""
    url = store_url
    config = demo_config(tmp_path)
    cfg = load_plant_config(config)
    keys = [(a.path, s.name) for a in cfg.assets for s in a.signals]
    run_demo(tmp_path, config, url)
    first = await stored_points(store, keys)
    run_demo(tmp_path, config, url)
    second = await stored_points(store, keys)
    assert len(first) > 229 * 3
    changed = {k: (v, second.get(k)) for k, v in first.items() if second.get(k, "gone") != v}
    assert changed == {}, (
        f"{len(changed)} points of the first run were rewritten, e.g. {list(changed.items())[:3]}"
    )
    newest_first = max(t for (_, _, t) in first)
    added = [k for k in second if k not in first]
    assert added and min(t for (_, _, t) in added) > newest_first  # the second run is after the first
    states = {a.path: s for a in cfg.assets for s in a.signals if s.type == SignalType.STATE}
    zeros = [k for k, v in second.items() if k[0] in states and k[1] == states[k[0]].name and v == 0.0]
    assert zeros == []
