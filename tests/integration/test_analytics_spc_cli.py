"""`shopfloor analytics spc` on a real SQLite historian: limits from the stated baseline period only.

A process that moves by 1.5 sigma after the baseline is flagged by the chart and by Nelson's rules.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import yaml

from analytics import spc
from historian.factory import open_store
from shopfloor.app.cli import main
from shopfloor.batch import SampleBatch
from shopfloor.config.load import load_plant_config

T0 = 1_780_000_000 * 1_000_000_000  # 2026-05-28T20:26:40Z
STEP = 600 * 1_000_000_000


def test_spc_chart_judges_the_period_against_the_baseline(tmp_path: Path, capsys) -> None:
    cfg_path = tmp_path / "plant.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "version": 1, "site": "s",
        "assets": [{"path": "s/a/l/press", "kind": "press", "signals": [{"name": "force", "unit": "kN"}]}],
        "historian": {"url": f"sqlite:///{tmp_path / 'h.db'}", "spool": {"dir": str(tmp_path / "spool")}},
    }))  # fmt: skip
    cfg = load_plant_config(cfg_path)
    rng = np.random.default_rng(4)
    base = rng.normal(100.0, 2.0, 100)
    moved = rng.normal(103.0, 2.0, 50)
    values = np.r_[base, moved]
    ts = T0 + np.arange(len(values)) * STEP

    async def write() -> None:
        store = open_store(cfg.historian)
        await store.open()
        await store.write_samples(
            SampleBatch.from_columns([("s/a/l/press", "force")], np.zeros(len(values)), ts, values)
        )
        await store.close()

    asyncio.run(write())
    iso = lambda i: np.datetime_as_string(np.datetime64(int(T0 + i * STEP), "ns"), unit="s") + "Z"  # noqa: E731
    common = ["analytics", "spc", "--config", str(cfg_path), "--asset", "s/a/l/press", "--signal", "force"]
    period = ["--baseline-start", iso(0), "--baseline-end", iso(100), "--json", "--lsl", "90", "--usl", "110"]
    assert main([*common, *period, "--start", iso(100), "--end", iso(150)]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = spc.imr_chart(moved, spc.individuals_baseline(base)).individuals
    assert out["points"] == 50
    assert out["ucl"] == ref.ucl and out["lcl"] == ref.lcl  # the baseline's limits, not the judged data's
    assert "N2" in out["rules"] or "N5" in out["rules"] or "N6" in out["rules"]
    assert out["capability_of_baseline"]["cpk"][0] > 1.0
    assert main([*common, *period, "--start", iso(0), "--end", iso(100)]) == 0
    calm = json.loads(capsys.readouterr().out)
    assert calm["ucl"] == ref.ucl
    flagged = sum(r["points"] for r in out["rules"].values())
    false = sum(r["points"] for r in calm["rules"].values())  # 8 rules over 100 in-control points: a few
    assert flagged >= 10 and flagged >= 4 * false
