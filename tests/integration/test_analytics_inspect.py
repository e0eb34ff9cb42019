"""Surface inspection end to end: the simulated line camera's coil images are inspected, and each finding
lands as a quality result on the coil's lot in a real MES database, failing that lot; a rerun adds nothing.

The inspector is trained on rendered images of other seeds than the camera's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import insert, select

from analytics.surface import SurfaceInspector
from mes import tables as t
from mes.db import migrate, open_engine
from mes.repository import Repository
from plant_simulator.camera import coil_images
from plant_simulator.config_gen import plant_config
from plant_simulator.lines.slitting import SlittingLine
from plant_simulator.offline import generate
from plant_simulator.plant import Plant
from plant_simulator.surface import render_dataset
from shopfloor.app.cli import main
from shopfloor.config.load import load_plant_config

pytestmark = pytest.mark.slow
SLITTER = "works/copper/finishing/slitter-1"


def test_coil_images_become_quality_results_on_their_lots(tmp_path: Path, capsys) -> None:
    plant = Plant([SlittingLine(SLITTER, "")], seed=5, sensor_fault_interval_days=0)
    generate(plant, 1.0, tmp_path / "run", every=10, progress=None)
    images = coil_images(tmp_path / "run", SLITTER, tmp_path / "camera", seed=3)
    sidecar = {p: json.loads(p.with_suffix(".json").read_text()) for p in images}
    defective = [p for p in images if sidecar[p]["defects"]][:6]
    clean = [p for p in images if not sidecar[p]["defects"]][:6]
    assert len(defective) >= 3 and len(clean) == 6, "the simulated day should give both kinds of coil"
    for p in set(images) - set(defective) - set(clean):  # the camera folder keeps a mix of both
        p.unlink()
        p.with_suffix(".json").unlink()
    truth = {p.name: sidecar[p] for p in defective + clean}
    doc = plant_config(plant)
    doc["sources"] = []
    doc["historian"] = {"url": f"sqlite:///{tmp_path / 'h.db'}", "spool": {"dir": str(tmp_path / "spool")}}
    doc["mes"]["database"] = f"sqlite:///{tmp_path / 'mes.db'}"
    cfg_path = tmp_path / "plant.yaml"
    cfg_path.write_text(yaml.safe_dump(json.loads(json.dumps(doc, default=str)), sort_keys=False))
    cfg = load_plant_config(cfg_path)
    engine = open_engine(cfg.mes)
    migrate(engine)
    Repository(engine, cfg.mes).sync_plant([(a.path, a.kind, a.description) for a in cfg.assets])
    stamps = sorted(d["ts_ns"] for d in truth.values())
    with engine.begin() as conn:  # one lot (coil) per image, as the MES makes them from the coil counter
        prev = stamps[0] - 600 * 10**9
        for i, ts in enumerate(stamps):
            conn.execute(
                insert(t.lots),
                {"id": f"C{i:03d}", "kind": "coil", "asset": SLITTER, "start_ns": prev, "end_ns": ts},
            )
            prev = ts
    model = (
        SurfaceInspector()
        .fit(render_dataset(80, np.random.default_rng(11)), seed=11)
        .save(tmp_path / "surface-model")
    )
    args = [
        "analytics",
        "inspect",
        "--config",
        str(cfg_path),
        "--images",
        str(tmp_path / "camera"),
        "--model",
        str(model),
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    with engine.connect() as conn:
        q = conn.execute(select(t.quality_results)).mappings().all()
        verdicts = dict(conn.execute(select(t.lots.c.id, t.lots.c.verdict)).all())
    by_ts = {r["ts_ns"]: r for r in q}
    assert set(by_ts) == set(stamps)  # every image has a result, on its time
    lot_of = {ts: f"C{i:03d}" for i, ts in enumerate(stamps)}
    assert all(r["lot_id"] == lot_of[r["ts_ns"]] for r in q)
    bad = [d["ts_ns"] for d in truth.values() if d["defects"]]
    good = [d["ts_ns"] for d in truth.values() if not d["defects"]]
    hit = sum(verdicts[lot_of[ts]] == "fail" for ts in bad) / len(bad)
    false = sum(verdicts[lot_of[ts]] == "fail" for ts in good) / len(good)
    assert hit >= 0.6, f"only {hit:.0%} of defective coils failed"
    assert false <= 0.34, f"{false:.0%} of clean coils failed"
    assert main(args) == 0
    assert "0 new quality results" in capsys.readouterr().out
    assert "new quality results" in first
