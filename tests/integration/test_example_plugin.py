"""The example plugin installs like any third-party package, is discovered, passes the contract,
and `shopfloor acquire` streams its data into the historian."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from historian.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples/plugins/shopfloor-connector-csv"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pip-install the plugin (no network: --no-deps, no build isolation) into its own folder."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / PLUGIN.name  # build from a copy: keep the tree clean
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path_factory.mktemp("build"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{ROOT}"}


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_installed_plugin_is_listed_with_its_distribution(installed: dict[str, str], tmp_path: Path) -> None:
    out = run(["-m", "shopfloor.app.cli", "connectors", "list"], installed, tmp_path)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("csv-replay"))
    assert (
        "shopfloor-connector-csv" in line and "0.1.0" in line and "shopfloor_connector_csv.connector" in line
    )


def test_plugin_passes_the_connector_contract(installed: dict[str, str]) -> None:
    out = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")], installed, PLUGIN)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "6 passed" in out.stdout  # 5 contract tests + the plugin's own


def test_acquire_streams_the_plugin_source_into_the_historian(
    installed: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "press.csv").write_text("p,t\n" + "".join(f"{100 + i},{20 + i}\n" for i in range(50)))
    (tmp_path / "plant.yaml").write_text(
        f"""site: demo
assets:
  - path: demo/extrusion/line-1/press-1
    signals: [{{name: pressure, unit: bar}}, {{name: temp, unit: degC}}]
sources:
  - name: press-log
    connector: csv-replay
    settings: {{path: {tmp_path}/press.csv, rows_per_s: 100, loop: false}}
    tags:
      - {{asset: demo/extrusion/line-1/press-1, signal: pressure, column: p}}
      - {{asset: demo/extrusion/line-1/press-1, signal: temp, column: t}}
historian:
  url: sqlite:///{tmp_path}/h.db
  spool: {{dir: {tmp_path}/spool}}
"""
    )
    out = run(["-m", "shopfloor.app.cli", "acquire", "--config", "plant.yaml", "--duration", "2", "--status-every", "0.5"],
              installed, tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "source press-log: connected" in out.stderr

    async def read() -> list[float]:
        store = SQLiteStore(tmp_path / "h.db")
        frame = await store.query_raw("demo/extrusion/line-1/press-1", "pressure", 0, 2**62)
        await store.close()
        return frame.value.tolist()

    assert asyncio.run(read()) == [float(100 + i) for i in range(50)]


def test_sigterm_stops_acquire_cleanly_with_everything_flushed(
    installed: dict[str, str], tmp_path: Path
) -> None:
    import signal
    import time

    (tmp_path / "press.csv").write_text("p\n" + "".join(f"{i}\n" for i in range(1000)))
    (tmp_path / "plant.yaml").write_text(
        f"""site: demo
assets:
  - path: demo/extrusion/line-1/press-1
    signals: [{{name: pressure, unit: bar}}]
sources:
  - name: press-log
    connector: csv-replay
    settings: {{path: {tmp_path}/press.csv, rows_per_s: 200, loop: false}}
    tags:
      - {{asset: demo/extrusion/line-1/press-1, signal: pressure, column: p}}
historian:
  url: sqlite:///{tmp_path}/h.db
  spool: {{dir: {tmp_path}/spool}}
  batch: {{max_age_ms: 2000}}
"""
    )
    proc = subprocess.Popen([sys.executable, "-m", "shopfloor.app.cli", "acquire", "--config", "plant.yaml"],
                            env=installed, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (tmp_path / "spool").exists():
            time.sleep(0.1)
        time.sleep(2.0)  # mid-stream: rows are still being replayed, some not yet sent (max_age 2 s)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err[-3000:]
    stopped = next(ln for ln in err.splitlines() if "stopped: produced=" in ln)
    assert "pending=0" in stopped and "dropped=0" in stopped

    async def read() -> list[float]:
        store = SQLiteStore(tmp_path / "h.db")
        frame = await store.query_raw("demo/extrusion/line-1/press-1", "pressure", 0, 2**62)
        await store.close()
        return frame.value.tolist()

    values = asyncio.run(read())
    produced = int(stopped.split("produced=")[1].split()[0])
    assert 0 < len(values) < 1000  # stopped mid-stream
    assert values == [float(i) for i in range(len(values))]  # nothing lost, in order
    assert produced >= len(values)  # the writer's own health points are in `produced` too
