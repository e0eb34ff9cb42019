"""The slitting line's strip-surface renderer: deterministic, every changed pixel inside its defect's box.

Every class can be drawn, lighting varies, and the PNG + JSON folder it writes reads back (plant_simulator.surface).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plant_simulator import surface as S
from plant_simulator.lines import slitting


def test_the_same_seed_gives_the_same_images_and_another_seed_others() -> None:
    a = S.render_dataset(4, np.random.default_rng(7))
    b = S.render_dataset(4, np.random.default_rng(7))
    c = S.render_dataset(4, np.random.default_rng(8))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.pixels, y.pixels)
        assert x.defects == y.defects and x.lighting == y.lighting and x.metal == y.metal
    assert not any(np.array_equal(x.pixels, z.pixels) for x, z in zip(a, c, strict=True))
    assert a[0].pixels.dtype == np.uint8 and a[0].pixels.shape == (256, 256)
    assert not a[0].pixels.flags.writeable


@pytest.mark.parametrize("cls", S.DEFECT_CLASSES)
def test_each_class_changes_only_pixels_inside_its_box(cls: str) -> None:
    """The same generator state without defects gives the same image: the difference is the defect."""
    for seed in range(8):
        img = S.render_image(np.random.default_rng(seed), defects=[cls])
        clean = S.render_image(np.random.default_rng(seed), defects=[])
        assert clean.defects == () and clean.label == "none"
        (d,) = img.defects
        assert d.cls == cls == img.label
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256
        changed = img.pixels != clean.pixels
        inside = np.zeros_like(changed)
        inside[y0:y1, x0:x1] = True
        assert changed.any(), f"{cls} seed {seed}: no pixel changed"
        assert not (changed & ~inside).any(), f"{cls} seed {seed}: pixels changed outside {d.box}"
        ys, xs = np.nonzero(changed)  # and the box is not much larger than what changed
        assert xs.max() - xs.min() + 1 >= 0.5 * (x1 - x0) and ys.max() - ys.min() + 1 >= 0.5 * (y1 - y0)


def test_several_defects_do_not_overlap_and_stay_in_their_boxes() -> None:
    rng = np.random.default_rng(5)
    for seed in rng.integers(0, 10_000, size=6):
        kinds = ["scratch", "hole", "inclusion", "oil_stain"]
        img = S.render_image(np.random.default_rng(int(seed)), defects=kinds)
        clean = S.render_image(np.random.default_rng(int(seed)), defects=[])
        assert len(img.defects) >= 3
        inside = np.zeros(img.pixels.shape, dtype=bool)
        for i, a in enumerate(img.defects):
            inside[a.box[1] : a.box[3], a.box[0] : a.box[2]] = True
            for b in img.defects[i + 1 :]:
                assert (
                    a.box[2] <= b.box[0]
                    or b.box[2] <= a.box[0]
                    or a.box[3] <= b.box[1]
                    or b.box[3] <= a.box[1]
                )
        assert not ((img.pixels != clean.pixels) & ~inside).any()


def test_a_dataset_holds_every_class_clean_images_both_metals_and_varying_light() -> None:
    images = S.render_dataset(80, np.random.default_rng(3))
    assert {d.cls for img in images for d in img.defects} == set(S.DEFECT_CLASSES)
    assert sum(not img.defects for img in images) >= 10
    assert {img.metal for img in images} == set(S.METALS)
    assert max(len(img.defects) for img in images) >= 2
    gains = np.array([img.lighting.gain for img in images])
    means = np.array([img.pixels.mean() for img in images])
    assert gains.std() > 0.1 and means.std() > 10
    assert len({img.lighting for img in images}) == len(images)
    vignettes = [img.lighting.vignette for img in images]
    assert min(vignettes) < 0.1 < 0.25 < max(vignettes)
    # within an image the light is uneven too: quadrant means differ more than the texture alone would
    spread = [np.ptp([q.mean() for q in np.array_split(img.pixels.astype(float), 2)]) for img in images]
    assert np.median(spread) > 2


def test_size_metal_and_defect_probability_are_configurable() -> None:
    imgs = S.render_dataset(6, np.random.default_rng(1), size=(128, 320), metal="aluminium", defect_prob=0.0)
    assert all(i.pixels.shape == (128, 320) and i.metal == "aluminium" and not i.defects for i in imgs)
    copper = S.render_image(np.random.default_rng(1), metal="copper", defects=[])
    alu = S.render_image(np.random.default_rng(1), metal="aluminium", defects=[])
    assert alu.pixels.mean() > copper.pixels.mean()  # rolled aluminium is brighter than copper
    only_holes = S.render_dataset(10, np.random.default_rng(2), defect_prob=1.0, class_weights={"hole": 1.0})
    assert {d.cls for i in only_holes for d in i.defects} == {"hole"}


def test_bad_arguments_are_refused_clearly() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown defect class"):
        S.render_image(rng, defects=["crack"])
    with pytest.raises(ValueError, match="metal must be one of"):
        S.render_image(rng, metal="steel")
    with pytest.raises(ValueError, match="at least 32 x 32"):
        S.render_image(rng, size=(16, 256))
    with pytest.raises(ValueError, match="n must be >= 0"):
        S.render_dataset(-1, rng)


def test_the_command_writes_pngs_with_ground_truth_sidecars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "surface"
    assert S.main(["--out", str(out), "--n", "5", "--seed", "1"]) == 0
    assert "wrote 5 images" in capsys.readouterr().out
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"surface_{i:04d}.png" for i in range(5)]
    expected = S.render_dataset(5, np.random.default_rng(1))
    for png, img in zip(pngs, expected, strict=True):
        with Image.open(png) as im:
            assert im.mode == "L"
            assert np.array_equal(np.asarray(im), img.pixels)
        truth = json.loads(png.with_suffix(".json").read_text())
        assert truth["size"] == [256, 256] and truth["metal"] == img.metal
        assert [(d["cls"], tuple(d["box"])) for d in truth["defects"]] == [
            (d.cls, d.box) for d in img.defects
        ]
        assert truth["lighting"]["gain"] == img.lighting.gain


def test_the_slitting_lines_defect_names_map_to_image_classes() -> None:
    assert set(S.SLITTER_DEFECTS) == {f"surface_{d}" for d in slitting.DEFECTS}
    assert set(S.SLITTER_DEFECTS.values()) <= set(S.DEFECT_CLASSES)
