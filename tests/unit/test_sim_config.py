"""The example plant config, the docs' register map and the offline files agree with the model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from plant_simulator.config_gen import render_yaml
from plant_simulator.offline import STATUS_SUFFIX, asset_file, generate
from plant_simulator.plant import default_plant
from plant_simulator.register_map import build_register_map, render_markdown
from plant_simulator.sensor_faults import SensorFault
from shopfloor.config import load_plant_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_the_generated_one_and_valid() -> None:
    text = (ROOT / "examples" / "qijiang-plant.yaml").read_text()
    assert text == render_yaml(default_plant()), "regenerate: python -m plant_simulator --print-config"
    cfg = load_plant_config(ROOT / "examples" / "qijiang-plant.yaml")
    plant = default_plant()
    assert [a.path for a in cfg.assets] == list(plant.assets)
    for a in cfg.assets:
        assert [s.name for s in a.signals] == [s.name for s in plant.signals(a.path)]
        assert all(s.unit or s.type != "float" for s in a.signals)
    n = sum(len(a.signals) for a in cfg.assets)
    assert {s.connector: len(s.tags) for s in cfg.sources} == {"opcua": n, "modbus": n}


def test_docs_register_map_matches_print_register_map() -> None:
    plant = default_plant()
    expected = render_markdown(build_register_map({p: plant.signals(p) for p in plant.assets}))
    out = subprocess.run(
        [sys.executable, "-m", "plant_simulator", "--print-register-map"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert out.strip() == expected.strip()
    doc = (ROOT / "docs" / "simulator.md").read_text()
    assert expected.strip() in doc, "regenerate the register map section of docs/simulator.md"


def test_offline_files_hold_the_model_values(tmp_path: Path) -> None:
    plant = default_plant(seed=9)
    cnc = "qijiang/machining/gearbox-line/cnc-2"
    plant.inject_sensor_fault(cnc, SensorFault("dropout", "spindle_temp", 3700, 3800))
    res = generate(plant, 2 / 24, tmp_path, progress=None)
    assert res.blocks == 2
    ref = default_plant(seed=9)
    ref.inject_sensor_fault(cnc, SensorFault("dropout", "spindle_temp", 3700, 3800))
    vals = np.hstack([ref.block(k).values[cnc] for k in range(2)])
    t = pq.read_table(asset_file(tmp_path, cnc, "parquet"))
    assert t.num_rows == 7200
    for i, s in enumerate(ref.signals(cnc)):
        col = t.column(s.name).to_numpy(zero_copy_only=False).astype(float)
        np.testing.assert_allclose(col, vals[i], rtol=1e-6, atol=1e-6, equal_nan=True)
    st = t.column("spindle_temp" + STATUS_SUFFIX).to_numpy()
    assert (st[3700:3800] == 3).all() and (st[:3700] == 0).all()
    gt = pq.read_table(tmp_path / "ground_truth.parquet")
    assert "sensor_fault_start" in gt.column("event").to_pylist()
    assert (tmp_path / "manifest.json").exists()
