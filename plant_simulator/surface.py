"""Strip-surface camera images of the slitting line: rolled copper/aluminium texture, lighting and defects.

Owns the renderer (numpy only, deterministic from a ``numpy.random.Generator``), its ground truth and the PNG/JSON writer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEFECT_CLASSES: tuple[str, ...] = ("scratch", "hole", "inclusion", "roll_mark", "oil_stain")
IMAGE_CLASSES: tuple[str, ...] = (*DEFECT_CLASSES, "none")
METALS: tuple[str, ...] = ("copper", "aluminium")
# The slitting line's ground-truth defect names (plant_simulator.lines.slitting) and the image class each is.
SLITTER_DEFECTS: dict[str, str] = {
    "surface_scratch": "scratch",
    "surface_hole": "hole",
    "surface_inclusion": "inclusion",
}

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1): half-open pixel box, x along the rolling direction


@dataclass(frozen=True)
class TrueDefect:
    """One rendered defect: its class, the box of every pixel it changed, its peak relative contrast."""

    cls: str
    box: Box
    contrast: float  # signed peak change of reflectance (-0.3 = 30 % darker)
    variant: str = ""  # e.g. "dents" / "band" for roll marks, "halo" for holes


@dataclass(frozen=True)
class Lighting:
    """The camera's lighting for one image: I = offset + level * gain * field(x, y) * reflectance + noise."""

    gain: float
    offset: float
    gradient_x: float  # relative change of the field from the centre to the right edge
    gradient_y: float  # the same from the centre to the bottom edge
    vignette: float  # relative darkening at the corners
    centre_x: float  # vignette centre, fraction of the width
    centre_y: float
    hotspot: float  # relative brightening of a broad specular spot
    noise: float  # sensor noise std, grey levels


@dataclass(frozen=True, eq=False)
class SurfaceImage:
    """An 8-bit greyscale strip image (H x W, read-only) with its ground truth."""

    pixels: np.ndarray
    defects: tuple[TrueDefect, ...]
    metal: str
    lighting: Lighting

    @property
    def label(self) -> str:
        """'none' for a clean image, else the class of its first defect (images may hold several)."""
        return self.defects[0].cls if self.defects else "none"


# Reflectance texture of each metal: mean grey level at gain 1, streak/grain/band amplitudes (relative).
_METAL = {
    "copper": {"level": 115.0, "streak": 0.024, "grain": 0.014, "band": 0.008},
    "aluminium": {"level": 160.0, "streak": 0.030, "grain": 0.009, "band": 0.010},
}


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _lowpass_noise_x(rng: np.random.Generator, h: int, w: int, corr: float) -> np.ndarray:
    """Noise white across rows (y) and low-passed along the rolling direction (x), std ~1."""
    f = np.fft.rfftfreq(w)
    keep = min(f.size, int(np.searchsorted(f, 3.5 / corr)) + 1)  # the filter is < 1e-5 beyond
    filt = np.exp(-((f[:keep] * corr) ** 2)).astype(np.float32)
    spec = np.zeros((h, f.size), dtype=np.complex64)
    re = rng.standard_normal((h, keep), dtype=np.float32)
    im = rng.standard_normal((h, keep), dtype=np.float32)
    spec[:, :keep] = (re + 1j * im) * filt
    out = np.fft.irfft(spec, n=w, axis=1)
    return out / (out.std() + 1e-12)


def _smooth_1d(rng: np.random.Generator, n: int, corr: float) -> np.ndarray:
    f = np.fft.rfftfreq(n)
    filt = np.exp(-((f * corr) ** 2))
    spec = (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * filt
    out = np.fft.irfft(spec, n=n)
    return out / (out.std() + 1e-12)


def _texture(rng: np.random.Generator, h: int, w: int, metal: str) -> np.ndarray:
    """Reflectance around 1: rolling streaks along x, grain, bands across, a slight gradient, faint specks."""
    m = _METAL[metal]
    streak = _lowpass_noise_x(rng, h, w, corr=rng.uniform(40.0, 150.0))
    grain_n = rng.standard_normal((h + 1, w + 1), dtype=np.float32)
    grain = 0.5 * (grain_n[:-1, :-1] + grain_n[1:, :-1] + grain_n[:-1, 1:] + grain_n[1:, 1:])
    band = _smooth_1d(rng, h, corr=rng.uniform(8.0, 30.0))[:, None]
    yy = np.linspace(-1.0, 1.0, h)[:, None]
    xx = np.linspace(-1.0, 1.0, w)[None, :]
    tilt = rng.uniform(-0.02, 0.02, size=2)
    scale = rng.uniform(0.8, 1.25)
    r = (
        1.0
        + scale * (m["streak"] * streak + m["grain"] * grain + m["band"] * band)
        + tilt[0] * xx
        + tilt[1] * yy
    )
    # faint specks (dust, tiny pits): texture noise that the inspection must not report
    for _ in range(int(rng.integers(0, 7))):
        cy, cx = rng.uniform(4, h - 5), rng.uniform(4, w - 5)
        rad = rng.uniform(0.6, 1.4)
        y0, y1, x0, x1 = int(cy - 3), int(cy + 4), int(cx - 3), int(cx + 4)
        py, px = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(py - cy, px - cx) / (rad + 1.0)
        r[y0:y1, x0:x1] *= 1.0 + rng.choice((-1.0, 1.0)) * rng.uniform(0.04, 0.10) * _smoothstep(1.0 - d)
    return r


def _lighting(rng: np.random.Generator) -> Lighting:
    return Lighting(
        gain=float(rng.uniform(0.7, 1.3)),
        offset=float(rng.uniform(-15.0, 15.0)),
        gradient_x=float(rng.uniform(-0.2, 0.2)),
        gradient_y=float(rng.uniform(-0.15, 0.15)),
        vignette=float(rng.uniform(0.0, 0.35)),
        centre_x=float(rng.uniform(0.35, 0.65)),
        centre_y=float(rng.uniform(0.35, 0.65)),
        hotspot=float(rng.uniform(0.0, 0.12)) if rng.random() < 0.4 else 0.0,
        noise=float(rng.uniform(0.8, 2.5)),
    )


def _field(light: Lighting, h: int, w: int, hot_xy: tuple[float, float]) -> np.ndarray:
    """Smooth illumination field: gradient, vignette (quadratic fall-off) and a broad specular hot spot."""
    yy = np.linspace(-1.0, 1.0, h)[:, None]
    xx = np.linspace(-1.0, 1.0, w)[None, :]
    cx, cy = 2.0 * light.centre_x - 1.0, 2.0 * light.centre_y - 1.0
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0
    field = (1.0 + light.gradient_x * xx + light.gradient_y * yy) * (1.0 - light.vignette * r2)
    if light.hotspot:
        hx, hy = hot_xy
        field = field + light.hotspot * np.exp(-((xx - hx) ** 2 + (yy - hy) ** 2) / (2 * 0.6**2))
    return field


# --- defects: each returns (y0, x0, delta, contrast, variant), delta the relative reflectance change on a
# patch whose corner is (y0, x0), exactly zero outside the defect's support, so its box is the pixels it changed.


def _patch(cx: float, cy: float, rx: float, ry: float, h: int, w: int) -> tuple[int, int, int, int]:
    return (
        max(0, int(np.floor(cy - ry))),
        min(h, int(np.ceil(cy + ry)) + 1),
        max(0, int(np.floor(cx - rx))),
        min(w, int(np.ceil(cx + rx)) + 1),
    )


def _scratch(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, np.ndarray, float, str]:
    length = rng.uniform(min(40.0, 0.6 * max(h, w)), 0.85 * max(h, w))
    along = rng.random() < 0.75
    theta = rng.normal(0.0, np.radians(8.0)) if along else rng.uniform(-np.pi / 2, np.pi / 2)
    half_w = rng.uniform(0.8, 2.0)
    sag = rng.uniform(-0.05, 0.05) * length
    cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.1 * h, 0.9 * h)
    c, s = np.cos(theta), np.sin(theta)
    ext = abs(sag) + half_w + 1.0
    rx = abs(c) * length / 2 + abs(s) * ext
    ry = abs(s) * length / 2 + abs(c) * ext
    y0, y1, x0, x1 = _patch(cx, cy, rx, ry, h, w)
    py, px = np.mgrid[y0:y1, x0:x1].astype(float)
    u = (px - cx) * c + (py - cy) * s
    v = -(px - cx) * s + (py - cy) * c
    t = 2.0 * u / length
    d = np.abs(v - sag * (1.0 - t**2)) / half_w
    profile = np.clip(1.0 - d**2, 0.0, None)
    taper = _smoothstep((1.0 - np.abs(t)) / 0.15)
    knots = np.linspace(-length / 2, length / 2, max(3, int(length // 12)))
    wobble = np.interp(u, knots, rng.uniform(0.65, 1.0, size=knots.size))  # uneven depth along the scratch
    bright = rng.random() < 0.5
    amp = rng.uniform(0.12, 0.32) * (1.0 if bright else -1.0)
    return y0, x0, amp * profile * taper * wobble, amp, "bright" if bright else "dark"


def _hole(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, np.ndarray, float, str]:
    r = rng.uniform(1.8, 5.0)
    ecc = rng.uniform(0.6, 1.0)
    phi = rng.uniform(0, np.pi)
    halo = rng.random() < 0.5
    halo_w = rng.uniform(1.0, 2.0)
    cx, cy = rng.uniform(8, w - 8), rng.uniform(8, h - 8)
    ext = r + (2 * halo_w if halo else 0.0) + 1.5
    y0, y1, x0, x1 = _patch(cx, cy, ext, ext, h, w)
    py, px = np.mgrid[y0:y1, x0:x1].astype(float)
    dx, dy = px - cx, py - cy
    a = dx * np.cos(phi) + dy * np.sin(phi)
    b = (-dx * np.sin(phi) + dy * np.cos(phi)) / ecc
    dist = np.hypot(a, b) - r  # px from the rim, negative inside
    depth = rng.uniform(0.45, 0.85)
    delta = -depth * np.clip(0.5 - dist / rng.uniform(0.6, 1.2), 0.0, 1.0)
    if halo:
        delta += rng.uniform(0.06, 0.18) * np.clip(1.0 - np.abs(dist - halo_w) / halo_w, 0.0, 1.0)
    return y0, x0, delta, -depth, "halo" if halo else "plain"


def _inclusion(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, np.ndarray, float, str]:
    r0 = rng.uniform(2.5, 7.0)
    stretch = rng.uniform(1.0, 2.5)  # rolled out along the rolling direction
    edge = rng.uniform(1.5, 3.0)
    ks = np.arange(2, 6)
    amps = rng.uniform(0.05, 0.3, size=ks.size) / np.sqrt(ks - 1)
    phases = rng.uniform(0, 2 * np.pi, size=ks.size)
    cx, cy = rng.uniform(12, w - 12), rng.uniform(8, h - 8)
    ext_x = r0 * stretch * (1 + amps.sum()) + edge + 1
    ext_y = r0 * (1 + amps.sum()) + edge + 1
    y0, y1, x0, x1 = _patch(cx, cy, ext_x, ext_y, h, w)
    py, px = np.mgrid[y0:y1, x0:x1].astype(float)
    dx, dy = (px - cx) / stretch, py - cy
    ang = np.arctan2(dy, dx)
    rim = r0 * (
        1.0 + np.sum(amps[:, None, None] * np.cos(ks[:, None, None] * ang + phases[:, None, None]), axis=0)
    )
    dist = np.hypot(dx, dy)
    mottle = 0.75 + 0.25 * rng.random(dist.shape)
    depth = rng.uniform(0.15, 0.40)
    delta = -depth * mottle * _smoothstep((rim + edge / 2 - dist) / edge)
    return y0, x0, delta, -depth, ""


def _roll_mark(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, np.ndarray, float, str]:
    period = rng.uniform(14.0, 48.0)
    count = int(min(rng.integers(4, 10), (0.9 * w) // period))
    count = max(count, 3)
    length = (count - 1) * period
    xs = rng.uniform(4.0, max(5.0, w - length - 4.0))
    cy = rng.uniform(10, h - 10)
    dark = rng.random() < 0.7
    sign = -1.0 if dark else 1.0
    if rng.random() < 0.6:  # a row of dents, one per roll turn
        rx, ry = rng.uniform(1.5, 4.0), rng.uniform(2.5, 7.0)
        depth = rng.uniform(0.06, 0.12)
        y0, y1, x0, x1 = _patch(xs + length / 2, cy, length / 2 + rx + 2, ry + 1, h, w)
        py, px = np.mgrid[y0:y1, x0:x1].astype(float)
        delta = np.zeros(py.shape)
        for k in range(count):
            dxk = px - (xs + k * period + rng.normal(0, 0.7))
            rho2 = (dxk / rx) ** 2 + ((py - cy) / ry) ** 2
            delta += rng.uniform(0.7, 1.0) * np.clip(1.0 - rho2, 0.0, None) ** 2
        return y0, x0, sign * depth * delta, sign * depth, "dents"
    band_h = rng.uniform(5.0, 14.0)  # a band whose depth varies once per roll turn
    depth = rng.uniform(0.05, 0.09)
    y0, y1, x0, x1 = _patch(xs + length / 2, cy, length / 2 + period / 2, band_h / 2 + 1, h, w)
    py, px = np.mgrid[y0:y1, x0:x1].astype(float)
    across = np.clip(1.0 - (2.0 * (py - cy) / band_h) ** 2, 0.0, None) ** 2
    along = 0.25 + 0.75 * (0.5 + 0.5 * np.cos(2 * np.pi * (px - xs) / period)) ** 2
    ends = _smoothstep((length / 2 + period / 2 - np.abs(px - xs - length / 2)) / (period / 2))
    return y0, x0, sign * depth * across * along * ends, sign * depth, "band"


def _oil_stain(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, np.ndarray, float, str]:
    r0 = rng.uniform(15.0, 45.0)
    ks = np.arange(2, 5)
    amps = rng.uniform(0.0, 0.2, size=ks.size)
    phases = rng.uniform(0, 2 * np.pi, size=ks.size)
    stretch = rng.uniform(0.7, 1.5)
    cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
    ext = r0 * (1 + amps.sum()) * max(stretch, 1.0) + 1
    y0, y1, x0, x1 = _patch(cx, cy, ext, ext, h, w)
    py, px = np.mgrid[y0:y1, x0:x1].astype(float)
    dx, dy = (px - cx) / stretch, py - cy
    ang = np.arctan2(dy, dx)
    rim = r0 * (
        1.0 + np.sum(amps[:, None, None] * np.cos(ks[:, None, None] * ang + phases[:, None, None]), axis=0)
    )
    rho = np.hypot(dx, dy) / rim
    dark = rng.random() < 0.75
    amp = rng.uniform(0.035, 0.09) * (-1.0 if dark else 1.0)
    return y0, x0, amp * _smoothstep((1.0 - rho) / 0.45), amp, "dark" if dark else "bright"


_RENDER = {
    "scratch": _scratch,
    "hole": _hole,
    "inclusion": _inclusion,
    "roll_mark": _roll_mark,
    "oil_stain": _oil_stain,
}


def _overlaps(box: Box, others: Sequence[Box], margin: int = 3) -> bool:
    x0, y0, x1, y1 = box
    return any(
        x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin
        for b in others
    )


def render_image(
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (256, 256),
    metal: str | None = None,
    defects: Sequence[str] | None = None,
    defect_prob: float = 0.7,
    max_defects: int = 3,
    class_weights: dict[str, float] | None = None,
) -> SurfaceImage:
    """One image (H, W = ``size``). ``defects`` names the classes to place; by default an image has
    defects with probability ``defect_prob``, 1..``max_defects`` of them, their classes drawn in
    proportion to ``class_weights`` (default: all alike; a class it does not name is not drawn).
    A defect that finds no free place (defects never overlap) in 20 tries is left out.

    Background, defects and sensor noise come from three streams spawned from ``rng``, so the same
    generator state with ``defects=[]`` gives the same image without its defects.
    """
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise ValueError(f"image size must be at least 32 x 32 pixels, got {h} x {w}")
    if metal is not None and metal not in METALS:
        raise ValueError(f"metal must be one of {METALS}, got {metal!r}")
    if defects is not None and (bad := [d for d in defects if d not in DEFECT_CLASSES]):
        raise ValueError(f"unknown defect class(es) {bad}; known: {DEFECT_CLASSES}")
    bg_rng, def_rng, noise_rng = rng.spawn(3)
    chosen_metal = metal or str(bg_rng.choice(METALS))
    light = _lighting(bg_rng)
    hot_xy = (float(bg_rng.uniform(-0.7, 0.7)), float(bg_rng.uniform(-0.7, 0.7)))
    refl = _texture(bg_rng, h, w, chosen_metal)
    sensor = noise_rng.standard_normal((h, w), dtype=np.float32)

    if defects is None:
        weights = np.array(
            [class_weights.get(c, 0.0) if class_weights else 1.0 for c in DEFECT_CLASSES], dtype=float
        )
        if weights.sum() <= 0:
            raise ValueError("class_weights must give at least one defect class a positive weight")
        k = int(def_rng.integers(1, max_defects + 1)) if def_rng.random() < defect_prob else 0
        wanted = [str(c) for c in def_rng.choice(DEFECT_CLASSES, size=k, p=weights / weights.sum())]
    else:
        wanted = list(defects)
    placed: list[TrueDefect] = []
    for cls in wanted:
        for _ in range(20):  # defects do not overlap, so every box is one defect's ground truth
            y0, x0, delta, contrast, variant = _RENDER[cls](def_rng, h, w)
            nz = np.nonzero(delta)
            if nz[0].size == 0:
                continue
            box = (
                x0 + int(nz[1].min()),
                y0 + int(nz[0].min()),
                x0 + int(nz[1].max()) + 1,
                y0 + int(nz[0].max()) + 1,
            )
            if not _overlaps(box, [d.box for d in placed]):
                refl[y0 : y0 + delta.shape[0], x0 : x0 + delta.shape[1]] *= 1.0 + delta
                placed.append(TrueDefect(cls, box, round(float(contrast), 4), variant))
                break

    level = _METAL[chosen_metal]["level"]
    grey = light.offset + level * light.gain * _field(light, h, w, hot_xy) * refl + light.noise * sensor
    pixels = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    pixels.flags.writeable = False
    return SurfaceImage(pixels, tuple(placed), chosen_metal, light)


def render_dataset(
    n: int,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (256, 256),
    metal: str | None = None,
    defect_prob: float = 0.7,
    max_defects: int = 3,
    class_weights: dict[str, float] | None = None,
) -> list[SurfaceImage]:
    """``n`` independent images, image ``i`` from the ``i``-th generator spawned from ``rng``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [
        render_image(
            child,
            size=size,
            metal=metal,
            defect_prob=defect_prob,
            max_defects=max_defects,
            class_weights=class_weights,
        )
        for child in rng.spawn(n)
    ]


def ground_truth(img: SurfaceImage) -> dict[str, object]:
    """The JSON sidecar of an image: size, metal, lighting and the defects with their boxes."""
    h, w = img.pixels.shape
    return {
        "size": [h, w],
        "metal": img.metal,
        "lighting": asdict(img.lighting),
        "box_convention": "x0, y0, x1, y1: half-open pixel box, x along the rolling direction",
        "defects": [
            {"cls": d.cls, "box": list(d.box), "contrast": d.contrast, "variant": d.variant}
            for d in img.defects
        ],
    }


def save_png(img: SurfaceImage, path: str | Path) -> Path:
    """Write the image as an 8-bit greyscale PNG and its ground truth next to it (``<name>.json``)."""
    from PIL import Image

    path = Path(path)
    Image.fromarray(np.ascontiguousarray(img.pixels), mode="L").save(path, format="PNG")
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(ground_truth(img), indent=1) + "\n", encoding="utf-8")
    return path


def write_dataset(images: Sequence[SurfaceImage], out: str | Path, prefix: str = "surface") -> list[Path]:
    """Save images as ``<prefix>_0000.png`` (+ ``.json``) ... in ``out`` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(max(len(images) - 1, 0))))
    return [save_png(img, out / f"{prefix}_{i:0{digits}d}.png") for i, img in enumerate(images)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plant_simulator.surface", description="Render slitting-line strip-surface images"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs and JSON sidecars")
    parser.add_argument("--n", type=int, default=200, help="number of images")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--metal", choices=METALS, default=None, help="default: each image draws one")
    parser.add_argument("--defect-prob", type=float, default=0.7, help="probability an image has defects")
    parser.add_argument("--max-defects", type=int, default=3)
    parser.add_argument("--prefix", default="surface")
    args = parser.parse_args(argv)
    images = render_dataset(
        args.n,
        np.random.default_rng(args.seed),
        size=tuple(args.size),
        metal=args.metal,
        defect_prob=args.defect_prob,
        max_defects=args.max_defects,
    )
    paths = write_dataset(images, args.out, args.prefix)
    n_def = sum(len(i.defects) for i in images)
    print(f"wrote {len(paths)} images ({n_def} defects) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
