"""`make demo`'s command runs the whole pipeline — virtual plant → OPC UA → connector → writer →
store — and every signal of the default plant lands in the embedded store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from historian.sqlite_store import SQLiteStore
from shopfloor.config import load_plant_config
from shopfloor.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_pipeline_and_stores_every_signal(tmp_path: Path) -> None:
    text = (ROOT / "examples/qijiang-plant.yaml").read_text()
    port = free_port()
    config = tmp_path / "plant.yaml"
    modbus_port = free_port()
    assert "    port: 5020\n" in text
    text = text.replace("    port: 5020\n", f"    port: {modbus_port}\n")
    config.write_text(text.replace("opc.tcp://127.0.0.1:4840/", f"opc.tcp://127.0.0.1:{port}/"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SHOPFLOOR_HISTORIAN_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "shopfloor.cli",
        "demo",
        "--config",
        str(config),
        "--duration",
        "8",
        "--speed",
        "30",
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
