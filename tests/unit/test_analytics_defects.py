"""Defect prediction: labels on constructed windows, held-out accuracy and calibration on simulator runs.

The runs are small (a few simulated days at one row a minute) and generated once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analytics.dataset import NS, AssetFrame, load_sim_dir
from analytics.defects import (
    DefectModel,
    DefectModelError,
    DefectRecord,
    defect_counts,
    defect_labels,
    evaluate_defects,
    outcome_signals,
    read_defects,
    reliability,
    score_runs,
    use_meters,
    window_features,
)
from plant_simulator import ground_truth
from plant_simulator.ground_truth import GroundTruth
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.lines.extrusion import ExtrusionPress
from plant_simulator.offline import generate
from plant_simulator.plant import Plant
from shopfloor.app.analytics_cli import SIM_OUTCOMES

DAYS = 8
TRAIN_SEEDS = (101, 102)
TEST_SEED = 103
PRESS = "t/alu/ext/press-1"
CNCS = ("t/mach/line/cnc-1", "t/mach/line/cnc-2")


def plant(seed: int) -> Plant:
    return Plant(
        [ExtrusionPress(PRESS), CncMachiningCentre(CNCS[0]), CncMachiningCentre(CNCS[1], cycle_s=92.0)],
        seed=seed,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("defect-runs")
    out = {}
    for seed in (*TRAIN_SEEDS, TEST_SEED):
        out[seed] = root / f"s{seed}"
        generate(plant(seed), DAYS, out[seed], every=60, progress=None)
    return out


def frames_of(run: Path, kind: str) -> list[AssetFrame]:
    return [f for f in load_sim_dir(run).assets.values() if f.kind == kind]


@pytest.fixture(scope="module")
def models(runs: dict[int, Path]) -> dict[str, DefectModel]:
    out = {}
    for kind in ("extrusion_press", "cnc"):
        frames, labels = [], []
        for seed in TRAIN_SEEDS:
            fs = frames_of(runs[seed], kind)
            frames += fs
            labels += [read_defects(runs[seed])] * len(fs)
        out[kind] = DefectModel(kind, outcomes=SIM_OUTCOMES.get(kind, ())).fit(
            frames, labels, seeds=TRAIN_SEEDS
        )
    return out


# -- labels -----------------------------------------------------------------------------------------------
def test_a_window_is_positive_when_a_defect_falls_in_its_half_open_span() -> None:
    ends = np.array([600, 1200, 1800, 2400], dtype=np.int64) * NS
    defects = [0, 600 * NS, 1200 * NS + 1, 1800 * NS, 2400 * NS + 1]  # 0 and 2400 s + 1 ns fall outside
    assert defect_labels(ends, 600 * NS, defects).tolist() == [True, False, True, False]
    assert defect_counts(ends, 600 * NS, defects).tolist() == [1, 0, 2, 0]
    assert defect_labels(ends, 600 * NS, []).tolist() == [False] * 4


def test_read_defects_keeps_only_defect_rows_sorted_by_time(tmp_path: Path) -> None:
    start = 1_767_225_600 * NS
    records = [
        GroundTruth(50.0, "a/b/c/d", "defect", "bore_out_of_tolerance", "tool_wear", "bore_diameter", 62.04),
        GroundTruth(10.0, "a/b/c/d", "onset", "spindle_bearing"),
        GroundTruth(20.0, "a/b/c/e", "defect", "surface_tearing", "billet_overheat"),
    ]
    import pyarrow.parquet as pq

    pq.write_table(ground_truth.to_table(records, start), tmp_path / "ground_truth.parquet")
    assert read_defects(tmp_path) == [
        DefectRecord("a/b/c/e", start + 20 * NS, "surface_tearing", "billet_overheat"),
        DefectRecord("a/b/c/d", start + 50 * NS, "bore_out_of_tolerance", "tool_wear"),
    ]


def test_window_features_add_extremes_and_the_level_of_a_use_meter_only() -> None:
    n = 3 * 1440  # three days of minutes
    rng = np.random.default_rng(0)
    meter = (np.arange(n) % 720) / 7.2  # tool life used, reset every 12 h
    total = np.arange(n, dtype=float)  # a totaliser: its level is only the time since the start
    names = ["spindle_load", "tool_life_used", "part_count", "bore_diameter"]
    values = np.vstack([50 + rng.normal(0, 1, n), meter, total, 62.0 + rng.normal(0, 0.001, n)])
    ts = 1_767_225_600 * NS + np.arange(n, dtype=np.int64) * 60 * NS
    frame = AssetFrame("a/b/c/cnc", "cnc", 60.0, ts, names, [""] * 4, values, np.ones(n, bool))
    out = outcome_signals("cnc", names, SIM_OUTCOMES["cnc"])
    assert out == {"bore_diameter"}
    assert use_meters(frame, out) == {"tool_life_used"}
    f = window_features(frame, 600.0, out, ["tool_life_used"])
    assert not any(s == "bore_diameter" for s in f.signal_of)
    assert {"tool_life_used:rate", "tool_life_used:max", "part_count:rate"} <= set(f.names)
    assert "part_count:max" not in f.names
    assert f.column("tool_life_used:max")[0] == pytest.approx(meter[9])
    assert f.column("spindle_load:min")[3] == pytest.approx(values[0, 30:40].min())
    assert f.column("spindle_load:max")[3] == pytest.approx(values[0, 30:40].max())


def test_the_fitted_cnc_model_uses_process_parameters_not_the_measured_part(
    models: dict[str, DefectModel],
) -> None:
    model = models["cnc"]
    assert {"bore_diameter", "surface_roughness", "scrap_count"} <= set(model.excluded)
    assert not {"bore_diameter", "surface_roughness", "scrap_count"} & set(model.signal_of)
    assert model.meters == ["tool_life_used"] and "tool_life_used:max" in model.features


def test_reliability_bins_and_ece_on_a_hand_count() -> None:
    p = np.array([0.05, 0.05, 0.05, 0.05, 0.95, 0.95])
    y = np.array([False, False, False, True, True, True])
    bins, ece = reliability(y, p)
    assert [(b.n, b.observed) for b in bins] == [(4, 0.25), (2, 1.0)]
    assert ece == pytest.approx((4 * 0.2 + 2 * 0.05) / 6)


# -- held out ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "min_auc", "max_ece"),
    [("extrusion_press", 0.95, 0.025), ("cnc", 0.95, 0.025)],  # measured: see docs/analytics-defects.md
)
def test_held_out_seed_is_ranked_well_and_calibrated(
    runs: dict[int, Path], models: dict[str, DefectModel], kind: str, min_auc: float, max_ece: float
) -> None:
    model = models[kind]
    res = score_runs(model, [(frames_of(runs[TEST_SEED], kind), read_defects(runs[TEST_SEED]))])
    assert res.positives >= 10, res.line()
    assert res.auc >= min_auc, res.line()
    assert res.ece <= max_ece, res.line()
    assert res.brier < res.brier_base_rate, res.line()  # better than always saying the base rate
    assert 0.0 < model.threshold < 1.0


def test_the_extrusion_press_defects_are_put_down_to_the_billet_temperature(
    runs: dict[int, Path], models: dict[str, DefectModel]
) -> None:
    model = models["extrusion_press"]
    assert model.importance[0][0] == "billet_temp"
    (frame,) = frames_of(runs[TEST_SEED], "extrusion_press")
    p = model.predict_proba(frame)
    hot = int(np.nanargmax(p))
    assert model.explain(frame, [hot])[0][0][0] == "billet_temp"


def test_evaluate_refuses_a_test_seed_used_in_training(runs: dict[int, Path]) -> None:
    with pytest.raises(DefectModelError, match="both in training and test"):
        evaluate_defects([runs[TRAIN_SEEDS[0]]], [runs[TRAIN_SEEDS[0]]], ["extrusion_press"])


# -- persistence ------------------------------------------------------------------------------------------
def test_save_load_round_trips_predictions_and_refuses_a_tampered_feature_list(
    runs: dict[int, Path], models: dict[str, DefectModel], tmp_path: Path
) -> None:
    model = models["cnc"]
    frame = frames_of(runs[TEST_SEED], "cnc")[0]
    path = model.save(tmp_path / "cnc-model")
    back = DefectModel.load(path)
    np.testing.assert_array_equal(back.predict_proba(frame), model.predict_proba(frame))
    for m, p in model.predict_mode_proba(frame).items():
        np.testing.assert_array_equal(back.predict_mode_proba(frame)[m], p)
    assert back.threshold == model.threshold and back.metadata["training"]["seeds"] == list(TRAIN_SEEDS)
    meta = json.loads((path / "metadata.json").read_text())
    good = json.dumps(meta)

    meta["features"][0], meta["features"][1] = meta["features"][1], meta["features"][0]
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DefectModelError, match="feature list differs"):
        DefectModel.load(path)

    meta = json.loads(good)
    meta["libraries"]["scikit-learn"] = "0.24.2"
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DefectModelError, match=r"scikit-learn 0\.24"):
        DefectModel.load(path)


def test_an_asset_lacking_a_signal_the_model_uses_is_refused(
    runs: dict[int, Path], models: dict[str, DefectModel]
) -> None:
    frame = frames_of(runs[TEST_SEED], "cnc")[0]
    j = frame.names.index("spindle_load")
    keep = [i for i in range(len(frame.names)) if i != j]
    cut = AssetFrame(
        frame.asset,
        frame.kind,
        frame.step_s,
        frame.ts_ns,
        [frame.names[i] for i in keep],
        [frame.units[i] for i in keep],
        frame.values[keep],
        frame.running,
    )
    with pytest.raises(DefectModelError, match=r"needs signal.*spindle_load"):
        models["cnc"].predict_proba(cut)


# -- refusals ---------------------------------------------------------------------------------------------
def test_training_without_defects_is_refused_clearly(runs: dict[int, Path]) -> None:
    frames = frames_of(runs[TRAIN_SEEDS[0]], "cnc")
    with pytest.raises(DefectModelError, match=r"0 of \d+ scored training windows hold a defect"):
        DefectModel("cnc").fit(frames, [[] for _ in frames])
    with pytest.raises(DefectModelError, match="2 frames but 1 label sets"):
        DefectModel("cnc").fit(frames, [[]])
    with pytest.raises(DefectModelError, match="not of kind"):
        DefectModel("extrusion_press").fit(frames, [[], []])
    with pytest.raises(DefectModelError, match="not fitted"):
        DefectModel("cnc").predict_proba(frames[0])
