"""``shopfloor mes …`` as a user runs it: migrate, import the shipped B2MML schedule, list, refuse a bad
file whole, move an order, export performance, KPIs and trace, all on the demo plant's config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shopfloor(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "shopfloor.app.cli", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_the_mes_commands(tmp_path: Path) -> None:
    cfg = str(ROOT / "examples/qijiang-plant.yaml")  # its MES database is var/mes/mes.db under cwd
    out = shopfloor(tmp_path, "mes", "migrate", "--config", cfg)
    assert out.returncode == 0 and "schema empty -> 0002" in out.stdout, out.stderr
    assert "schema 0002 -> 0002" in shopfloor(tmp_path, "mes", "migrate", "--config", cfg).stdout

    bad = tmp_path / "bad.xml"
    bad.write_text(
        (ROOT / "examples/mes/schedule.b2mml.xml")
        .read_text()
        .replace("<QuantityString>", "<QuantityString>-", 1)
    )
    out = shopfloor(tmp_path, "mes", "orders", "import", str(bad), "--config", cfg)
    assert out.returncode == 2 and "refused, nothing imported" in out.stderr and "Quantity" in out.stderr
    out = shopfloor(tmp_path, "mes", "orders", "list", "--config", cfg)
    assert "(0 of 0)" in out.stdout

    out = shopfloor(
        tmp_path,
        "mes",
        "orders",
        "import",
        str(ROOT / "examples/mes/schedule.b2mml.xml"),
        "--config",
        cfg,
        "--release",
        "--actor",
        "planner",
    )
    assert out.returncode == 0 and "imported" in out.stdout, out.stderr
    listed = shopfloor(tmp_path, "mes", "orders", "list", "--config", cfg, "--status", "released").stdout
    first = listed.split()[0]
    assert "released" in listed
    out = shopfloor(tmp_path, "mes", "orders", "transition", first, "completed", "--config", cfg)
    assert out.returncode == 1 and "released: cannot become completed" in out.stderr
    out = shopfloor(
        tmp_path, "mes", "orders", "transition", first, "cancelled", "--config", cfg, "--actor", "planner"
    )
    assert out.returncode == 0 and f"{first}: cancelled" in out.stdout
    xml = shopfloor(tmp_path, "mes", "orders", "export", "--config", cfg).stdout
    assert "<ProductionPerformance" in xml and first in xml

    out = shopfloor(tmp_path, "mes", "kpi", "qijiang/copper", "--config", cfg, "--json")
    assert out.returncode == 0 and '"oee": null' in out.stdout  # no production yet: undefined, not 0
    out = shopfloor(tmp_path, "mes", "trace", "no-such-lot", "--config", cfg)
    assert out.returncode == 1 and "no lot no-such-lot" in out.stderr
