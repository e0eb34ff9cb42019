"""`shopfloor analytics evaluate --data DIR` on a plant's own long-format history, not the simulator's files.

The history is exported with the plant's own signal names and an event the evaluation does not know.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from analytics.dataset import LogEvent, load_sim_dir, load_table_dir, write_table_dir
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.offline import generate
from plant_simulator.plant import Plant
from shopfloor.app.cli import main

pytestmark = pytest.mark.slow

FAST = {"bearing_onset_days": (4.5, 5.5), "bearing_progression_days": (2.5, 3.5)}
PLANT_NAMES = {
    "vib_rms": "Spindle.Vib.RMS",
    "vib_bpfo_energy": "Spindle.Vib.BPFO",
    "spindle_temp": "Spindle.Temp",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plant-history")
    assets = [CncMachiningCentre(f"works/mach/line/mc-{i}", "", **FAST) for i in (1, 2, 3, 4)]
    generate(Plant(assets, seed=23, sensor_fault_interval_days=0), 13, root / "sim", every=60, progress=None)
    ds = load_sim_dir(root / "sim")
    ds.unknown_events.append(
        LogEvent(
            "works/mach/line/mc-1",
            "cnc",
            "lubrication",
            int(ds.assets["works/mach/line/mc-1"].ts_ns[100]),
            "grease",
        )
    )
    write_table_dir(ds, root / "export", rename=PLANT_NAMES)
    return root / "export"


def test_the_export_reads_back_with_the_plants_names_and_kinds(data_dir: Path) -> None:
    ds = load_table_dir(data_dir)
    f = ds.assets["works/mach/line/mc-2"]
    assert f.kind == "cnc"
    assert "Spindle.Vib.RMS" in f.names and "vib_rms" not in f.names
    assert f.running is not None and f.running.any()
    assert {"lubrication", "tool_replacement"} <= {e.event for e in ds.unknown_events}  # tool changes too


def test_a_unit_the_map_does_not_expect_is_skipped_with_its_reason(data_dir: Path, tmp_path: Path) -> None:
    from analytics.dataset import SignalMap

    ds = load_table_dir(data_dir, {"cnc": SignalMap(units={"Spindle.Temp": "degF"})})
    assert "Spindle.Temp" not in ds.assets["works/mach/line/mc-1"].names
    assert (
        "works/mach/line/mc-1/Spindle.Temp",
        "unit 'degC' is not the 'degF' the model expects",
    ) in ds.skipped


def test_evaluate_trains_on_named_runs_and_scores_the_rest_blind(
    data_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "eval"
    mp = tmp_path / "map.yaml"
    mp.write_text(yaml.safe_dump({"cnc": {"state": "state", "running": [1]}}))
    train = "works/mach/line/mc-1,works/mach/line/mc-2,works/mach/line/mc-3"
    code = main(["analytics", "evaluate", "--data", str(data_dir), "--map", str(mp), "--train", train,
                 "--healthy-days", "3", "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "pdm spindle_bearing: episodes 1" in printed
    with (out / "alerts.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "asset", "timestamp", "kind", "failure_mode", "rul_hours", "rul_low_hours", "rul_high_hours", "score"
    ]  # fmt: skip
    eq = [r for r in rows if r["kind"] == "equipment"]
    assert eq and {r["asset"] for r in eq} == {"works/mach/line/mc-4"}
    assert eq[0]["failure_mode"] == "spindle_bearing"
    with (out / "health.csv").open() as fh:
        health = list(csv.DictReader(fh))
    assert {r["asset"] for r in health} == {"works/mach/line/mc-4"}
    assert all(0.0 <= float(r["health"]) <= 1.0 for r in health)
    report = (out / "report.md").read_text()
    assert "lubrication" in report and "mc-4" in report
