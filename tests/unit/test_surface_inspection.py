"""Surface inspection: trained on one seed's images it finds and names the defects of another's.

Also PNG and folder input (skipped files are named), save/load round trips, refusals of a mismatched model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analytics.surface import (
    FEATURE_NAMES,
    FoundDefect,
    SurfaceImageError,
    SurfaceInspector,
    SurfaceModelError,
    iou,
    load_labelled_folder,
    read_png,
    select,
    verdict,
    worst_class,
)
from analytics.surface_eval import evaluate, format_table, main, match
from plant_simulator.surface import SurfaceImage, render_dataset, save_png, write_dataset

TRAIN_SEED, TEST_SEED = 11, 12
N_TRAIN, N_TEST = 70, 40


@pytest.fixture(scope="module")
def inspector() -> SurfaceInspector:
    train = render_dataset(N_TRAIN, np.random.default_rng(TRAIN_SEED))
    return SurfaceInspector(max_iter=100).fit(train, seed=TRAIN_SEED)


@pytest.fixture(scope="module")
def held_out() -> list[SurfaceImage]:
    return render_dataset(N_TEST, np.random.default_rng(TEST_SEED))


def test_it_finds_and_names_the_defects_of_held_out_images(
    inspector: SurfaceInspector, held_out: list[SurfaceImage]
) -> None:
    ev = evaluate(inspector, held_out)
    print("\n" + format_table(ev))
    assert ev.detection.n_true >= 50
    # measured with these seeds and this small training set: detection recall 0.942, precision 0.903,
    # overall (class too) recall 0.928, precision 0.889, AUC 1.0, lowest class recall 0.83 (oil stains);
    # the thresholds leave a margin (600 training images do better: docs/analytics-surface.md)
    assert ev.detection.recall >= 0.85 and ev.detection.precision >= 0.85
    assert ev.overall.recall >= 0.85 and ev.overall.precision >= 0.8
    assert ev.image_auc >= 0.9
    for c in ev.per_class:
        assert c.recall >= 0.6, c


def test_clean_images_get_an_ok_verdict_nearly_always(inspector: SurfaceInspector) -> None:
    clean = render_dataset(20, np.random.default_rng(99), defect_prob=0.0)
    verdicts = [verdict(inspector.inspect(img.pixels)) for img in clean]
    assert verdicts.count("ok") >= 16  # measured: 18 of 20


def test_the_verdict_and_the_worst_class() -> None:
    assert verdict([]) == "ok" and worst_class([]) is None
    found = [FoundDefect("oil_stain", (0, 0, 50, 50), 0.9), FoundDefect("hole", (60, 60, 65, 65), 0.7)]
    assert verdict(found) == "defect" and worst_class(found) == "hole"


def test_a_png_gives_the_same_findings_as_its_pixels(
    inspector: SurfaceInspector, held_out: list[SurfaceImage], tmp_path: Path
) -> None:
    for i, img in enumerate(held_out[:3]):
        path = save_png(img, tmp_path / f"img{i}.png")
        assert np.array_equal(read_png(path), img.pixels)
        assert inspector.inspect_png(path) == inspector.inspect(img.pixels)


def test_a_folder_is_read_by_name_and_unusable_files_are_skipped_and_named(
    inspector: SurfaceInspector, held_out: list[SurfaceImage], tmp_path: Path
) -> None:
    for name, img in zip(("c.png", "a.png", "b.png"), held_out, strict=False):
        Image.fromarray(np.asarray(img.pixels), mode="L").save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("shift log")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (tmp_path / "sub").mkdir()
    run = inspector.inspect_folder(tmp_path)
    got = list(run)
    assert [p.name for p, _ in got] == ["a.png", "b.png", "c.png"]
    assert got[1][1] == inspector.inspect(held_out[2].pixels)  # b.png holds the third image
    assert sorted(p.name for p, _ in run.skipped) == ["broken.png", "notes.txt"]
    reasons = dict((p.name, r) for p, r in run.skipped)
    assert "broken.png" in reasons["broken.png"] and "unreadable PNG" in reasons["broken.png"]
    assert reasons["notes.txt"].startswith("not a PNG")
    assert run.counts() == {"not a PNG": 1, "unusable PNG": 1}


def test_pngs_that_are_not_8_bit_greyscale_are_refused_naming_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.full((64, 64), 1000, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8), mode="RGB").save(tmp_path / "colour.png")
    Image.fromarray(np.zeros((16, 64), dtype=np.uint8), mode="L").save(tmp_path / "tiny.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8), mode="L").save(tmp_path / "real.jpg", format="JPEG")
    for name, what in [
        ("deep.png", "16-bit"),
        ("colour.png", "mode RGB"),
        ("tiny.png", "smaller than 32 x 32"),
        ("junk.png", "unreadable PNG"),
        ("real.jpg", "not a PNG"),
    ]:
        with pytest.raises(SurfaceImageError, match=what) as exc:
            read_png(tmp_path / name)
        assert name in str(exc.value)


def test_arrays_that_are_not_8_bit_greyscale_are_refused(inspector: SurfaceInspector) -> None:
    with pytest.raises(SurfaceImageError, match="uint8"):
        inspector.inspect(np.zeros((64, 64), dtype=np.float32))
    with pytest.raises(SurfaceImageError, match="greyscale H x W"):
        inspector.inspect(np.zeros((64, 64, 3), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="not trained"):
        SurfaceInspector().inspect(np.zeros((64, 64), dtype=np.uint8))


def test_save_and_load_round_trip_the_predictions_exactly(
    inspector: SurfaceInspector, held_out: list[SurfaceImage], tmp_path: Path
) -> None:
    inspector.save(tmp_path / "model")
    loaded = SurfaceInspector.load(tmp_path / "model")
    for img in held_out[:4]:
        a, b = inspector.score(img.pixels), loaded.score(img.pixels)
        assert np.array_equal(a.proba, b.proba) and np.array_equal(a.box_quality, b.box_quality)
        assert a.refined == b.refined and select(a) == select(b)
        assert select(b, loaded.min_probability) == inspector.inspect(img.pixels)
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["training"]["seed"] == TRAIN_SEED and meta["training"]["images"] == N_TRAIN
    assert {"numpy", "scipy", "scikit-learn"} <= set(meta["libraries"])
    assert meta["classes"] and "metrics" in meta


def test_a_model_with_another_feature_list_or_sklearn_version_is_refused(
    inspector: SurfaceInspector, tmp_path: Path
) -> None:
    path = inspector.save(tmp_path / "model")
    meta_path = path / "metadata.json"
    original = json.loads(meta_path.read_text())

    meta = dict(original, feature_names=[f for f in FEATURE_NAMES if f != "elongation"] + ["glare"])
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="feature list differs") as exc:
        SurfaceInspector.load(path)
    assert "elongation" in str(exc.value) and "glare" in str(exc.value)
    assert isinstance(exc.value, SurfaceModelError)

    meta = dict(original, libraries=dict(original["libraries"], **{"scikit-learn": "0.24.2"}))
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"scikit-learn 0\.24"):
        SurfaceInspector.load(path)

    meta_path.write_text(json.dumps(dict(original, format=1)))
    with pytest.raises(ValueError, match="model format 1"):
        SurfaceInspector.load(path)

    meta_path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the model metadata"):
        SurfaceInspector.load(path)


def test_a_saved_model_is_plain_arrays_and_regions_from_another_model_are_refused(
    inspector: SurfaceInspector, tmp_path: Path
) -> None:
    path = inspector.save(tmp_path / "model")
    with np.load(path / "regions.npz", allow_pickle=False) as z:  # no object arrays: nothing executes
        arrays = {k: z[k] for k in z.files}
    assert sorted(arrays) == ["features", "labels", "offsets", "quality"]
    assert arrays["features"].dtype == np.float64 and arrays["labels"].dtype.kind == "U"
    keep = np.ones(len(arrays["labels"]), dtype=bool)
    keep[::2] = False  # half the regions: the refit is another model than the metadata describes
    np.savez(path / "regions.npz", **{k: v[keep] for k, v in arrays.items()})
    with pytest.raises(ValueError, match="do not belong together"):
        SurfaceInspector.load(path)
    with pytest.raises(ValueError, match="no saved surface inspector"):
        SurfaceInspector.load(tmp_path / "nowhere")


def test_the_matching_rule_takes_the_same_class_at_iou_0_3_once() -> None:
    truth = [("hole", (10, 10, 20, 20)), ("scratch", (30, 30, 90, 36))]
    found = [
        FoundDefect("hole", (11, 11, 21, 21), 0.9),  # IoU 0.68 with the hole
        FoundDefect("hole", (10, 10, 20, 20), 0.8),  # the hole is taken already
        FoundDefect("inclusion", (30, 30, 90, 36), 0.7),  # right place, wrong class
    ]
    assert iou(found[0].box, truth[0][1]) > 0.3
    assert match(found, truth, same_class=True) == [0, None, None]
    assert match(found, truth, same_class=False) == [0, None, 1]


def test_a_labelled_folder_reads_back_and_the_evaluation_refuses_a_reused_seed(tmp_path: Path) -> None:
    images = render_dataset(3, np.random.default_rng(4))
    write_dataset(images, tmp_path)
    back = load_labelled_folder(tmp_path)
    assert [b.name for b in back] == ["surface_0000.png", "surface_0001.png", "surface_0002.png"]
    for a, b in zip(images, back, strict=True):
        assert np.array_equal(a.pixels, b.pixels)
        assert [(d.cls, d.box) for d in a.defects] == [(d.cls, d.box) for d in b.defects]
    with pytest.raises(SystemExit):
        main(["--train-seed", "3", "--test-seed", "3"])
