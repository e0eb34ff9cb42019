"""Surface inspection of strip images (slitting line camera): a classical filter, feature and classifier pipeline.

Owns illumination normalisation, candidate regions and their features, ``SurfaceInspector`` (fit, inspect, PNG/folder input, save/load) and the image verdict.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from scipy import ndimage as ndi

from analytics.versions import library_versions, major_minor

log = logging.getLogger(__name__)

DEFECT_CLASSES: tuple[str, ...] = ("scratch", "hole", "inclusion", "roll_mark", "oil_stain")
FALSE_CANDIDATE = "false_candidate"
CLASSES: tuple[str, ...] = (*DEFECT_CLASSES, FALSE_CANDIDATE)
# Worst first: a hole goes through the strip, an inclusion is a material defect, a scratch is cosmetic but
# long, roll marks and oil stains are faint and often cleanable.
SEVERITY: tuple[str, ...] = ("hole", "inclusion", "scratch", "roll_mark", "oil_stain")
CHANNELS: tuple[str, ...] = ("fine", "line", "coarse", "periodic")

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1): half-open pixel box, x along the rolling direction
MATCH_IOU = 0.3  # a candidate with IoU >= this with a true box is that defect (training and evaluation)
FALSE_IOU = 0.1  # a candidate with IoU < this with every true box is a false candidate
MIN_SIZE = 32  # smallest image side the filters make sense on


class SurfaceImageError(ValueError):
    """An input image the inspection cannot use (unreadable PNG, not 8-bit greyscale, wrong shape)."""


class SurfaceModelError(ValueError):
    """A saved inspector that this code cannot use (feature list, classes or library version differ)."""


@dataclass(frozen=True)
class LabelledDefect:
    """A ground-truth defect: class, box and, if the labeller knows it, its peak relative contrast."""

    cls: str
    box: Box
    contrast: float | None = None


@dataclass(frozen=True, eq=False)
class LabelledImage:
    """An 8-bit greyscale image with its ground-truth defects (read from a PNG + JSON sidecar, or rendered)."""

    pixels: np.ndarray
    defects: tuple[LabelledDefect, ...]
    name: str = ""


class _Defect(Protocol):
    @property
    def cls(self) -> str: ...
    @property
    def box(self) -> Box: ...


class Labelled(Protocol):
    """What ``fit`` and the evaluation take: pixels and defects with ``cls`` and ``box`` (e.g. a rendered image)."""

    @property
    def pixels(self) -> np.ndarray: ...
    @property
    def defects(self) -> Sequence[_Defect]: ...


@dataclass(frozen=True)
class FoundDefect:
    """A reported defect: class, box and the classifier's probability of that class."""

    cls: str
    box: Box
    probability: float


@dataclass(frozen=True)
class Candidates:
    """The candidate regions of one image: boxes, channel names and the feature matrix (one row each)."""

    boxes: tuple[Box, ...]
    channels: tuple[str, ...]
    features: np.ndarray


# --------------------------------------------------------------------------------------------- image input


def check_pixels(pixels: np.ndarray, name: str = "image") -> np.ndarray:
    """The array itself if it is an 8-bit greyscale image of at least 32 x 32 pixels, else SurfaceImageError."""
    if not isinstance(pixels, np.ndarray):
        raise SurfaceImageError(f"{name}: expected a numpy array, got {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise SurfaceImageError(f"{name}: expected 8-bit pixels (uint8), got {pixels.dtype}")
    if pixels.ndim != 2:
        raise SurfaceImageError(f"{name}: expected a greyscale H x W image, got shape {pixels.shape}")
    if min(pixels.shape) < MIN_SIZE:
        raise SurfaceImageError(
            f"{name}: image {pixels.shape[0]} x {pixels.shape[1]} is smaller than {MIN_SIZE} x {MIN_SIZE}"
        )
    return pixels


def read_png(path: str | Path) -> np.ndarray:
    """The pixels of an 8-bit greyscale PNG; SurfaceImageError naming the file if it is anything else."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
            if fmt != "PNG":
                raise SurfaceImageError(f"{path.name}: not a PNG (Pillow reads it as {fmt})")
            if mode != "L":
                depth = {"I;16": "16-bit", "I;16B": "16-bit", "I": "32-bit", "1": "1-bit", "F": "float"}.get(
                    mode, ""
                )
                what = f"{depth} greyscale" if depth else f"mode {mode}"
                raise SurfaceImageError(
                    f"{path.name}: expected an 8-bit greyscale PNG (mode L), got {what}; convert it first"
                )
            pixels = np.asarray(im, dtype=np.uint8).copy()
    except SurfaceImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SurfaceImageError(f"{path.name}: unreadable PNG ({exc})") from exc
    return check_pixels(pixels, path.name)


def load_labelled_folder(directory: str | Path) -> list[LabelledImage]:
    """The PNGs of a folder with their ``<name>.json`` ground truth (``{"defects": [{"cls", "box"}]}``), by name."""
    directory = Path(directory)
    out = []
    for png in sorted(directory.glob("*.png")):
        sidecar = png.with_suffix(".json")
        if not sidecar.is_file():
            raise SurfaceImageError(f"{png.name}: no ground-truth sidecar {sidecar.name}")
        try:
            truth = json.loads(sidecar.read_text(encoding="utf-8"))
            defects = tuple(
                LabelledDefect(str(d["cls"]), _as_box(d["box"]), _opt_float(d.get("contrast")))
                for d in truth["defects"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SurfaceImageError(f"{sidecar.name}: bad ground truth ({exc})") from exc
        if bad := [d.cls for d in defects if d.cls not in DEFECT_CLASSES]:
            raise SurfaceImageError(
                f"{sidecar.name}: unknown defect class(es) {bad}; known: {DEFECT_CLASSES}"
            )
        out.append(LabelledImage(read_png(png), defects, png.name))
    return out


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _as_box(v: Sequence[Any]) -> Box:
    x0, y0, x1, y1 = (int(t) for t in v)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {list(v)} is empty (x0, y0, x1, y1 with x1 > x0, y1 > y0)")
    return (x0, y0, x1, y1)


# ------------------------------------------------------------------------------------------ normalisation


@lru_cache(maxsize=8)
def _poly_design(h: int, w: int, block: int, deg: int) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial terms at the block centres and at every pixel (coordinates scaled to [-1, 1])."""

    def terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([x**i * y**j for i in range(deg + 1) for j in range(deg + 1 - i)], axis=-1)

    yb = ((np.arange(h // block) + 0.5) * block) / h * 2 - 1
    xb = ((np.arange(w // block) + 0.5) * block) / w * 2 - 1
    yp = (np.arange(h) + 0.5) / h * 2 - 1
    xp = (np.arange(w) + 0.5) / w * 2 - 1
    a_blocks = terms(*np.meshgrid(xb, yb)).reshape(-1, (deg + 1) * (deg + 2) // 2)
    a_pixels = terms(*np.meshgrid(xp, yp))
    a_blocks.flags.writeable = False
    a_pixels.flags.writeable = False
    return a_blocks, a_pixels


def _block_view(img: np.ndarray, block: int) -> np.ndarray:
    hb, wb = img.shape[0] // block, img.shape[1] // block
    return (
        img[: hb * block, : wb * block]
        .reshape(hb, block, wb, block)
        .transpose(0, 2, 1, 3)
        .reshape(hb, wb, -1)
    )


def illumination(img: np.ndarray, block: int = 8, deg: int = 3, iters: int = 5) -> np.ndarray:
    """Smooth illumination (gradient, vignette, hot spot): a cubic surface fitted to 8 x 8 block medians,
    robustly (Tukey biweight), so defects up to a few tens of pixels do not pull it."""
    h, w = img.shape
    a_blocks, a_pixels = _poly_design(h, w, block, deg)
    b = np.median(_block_view(img, block), axis=2).ravel()
    wts = np.ones_like(b)
    coef = np.zeros(a_blocks.shape[1])
    for _ in range(iters):
        aw = a_blocks * wts[:, None]
        coef = np.linalg.solve(aw.T @ a_blocks + 1e-9 * np.eye(a_blocks.shape[1]), aw.T @ b)
        res = b - a_blocks @ coef
        s = 1.4826 * np.median(np.abs(res - np.median(res))) + 1e-6
        u = res / (4.685 * s)
        wts = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)  # Tukey biweight
    return a_pixels @ coef


def local_sigma(m: np.ndarray, block: int = 16, step: int = 1) -> np.ndarray:
    """Robust local standard deviation: the MAD of each block (of every ``step``-th pixel), median-filtered
    over 3 x 3 blocks, interpolated to every pixel."""
    blocks = _block_view(m[::step, ::step], block // step)
    med = np.median(blocks, axis=2, keepdims=True)
    mad = 1.4826 * np.median(np.abs(blocks - med), axis=2)
    mad = ndi.median_filter(mad, size=3, mode="nearest")
    h, w = m.shape
    sig = _interp_matrix(h, block) @ mad @ _interp_matrix(w, block).T
    return np.maximum(sig, 1e-4)


@lru_cache(maxsize=16)
def _interp_matrix(n: int, block: int) -> np.ndarray:
    """Linear interpolation from the ``n // block`` block centres to the ``n`` pixels (clamped at the ends)."""
    nb = n // block
    pos = np.clip((np.arange(n) + 0.5) / block - 0.5, 0, nb - 1)
    lo = np.minimum(np.floor(pos).astype(int), max(nb - 2, 0))
    frac = pos - lo
    m = np.zeros((n, nb))
    m[np.arange(n), lo] = 1 - frac
    if nb > 1:
        m[np.arange(n), lo + 1] += frac
    m.flags.writeable = False
    return m


@lru_cache(maxsize=2)
def _line_bank(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """FFTs of thin-line kernels (length 31 px, zero-mean across: a line minus its two side bands) at
    ``_LINE_ANGLES`` on an (h, w) grid, and the angles; scratches are mostly along the rolling direction."""
    half = 17
    dy, dx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    out = np.zeros((len(_LINE_ANGLES), h, w // 2 + 1), dtype=np.complex64)
    for i, deg in enumerate(_LINE_ANGLES):
        t = np.radians(deg)
        u = dx * np.cos(t) + dy * np.sin(t)
        v = -dx * np.sin(t) + dy * np.cos(t)

        def g(x: np.ndarray) -> np.ndarray:
            return np.exp(-(x**2) / (2 * 0.9**2))

        k = (np.abs(u) <= _LINE_LEN / 2) * (g(v) - 0.5 * g(v - 3.0) - 0.5 * g(v + 3.0))
        k /= np.abs(k).sum()
        grid = np.zeros((h, w))
        grid[np.ix_(np.arange(-half, half + 1) % h, np.arange(-half, half + 1) % w)] = k
        out[i] = np.fft.rfft2(grid)
    out.flags.writeable = False
    return out, np.asarray(_LINE_ANGLES, dtype=float)


_LINE_ANGLES = (-90, -70, -55, -42, -32, -24, -17, -11, -6, -3, 0, 3, 6, 11, 17, 24, 32, 42, 55, 70)
_LINE_LEN = 31.0
_PERIODS = np.arange(14, 49)  # roll-mark periods searched, px (roll turns seen in one image)
_COMB_TEETH = 4


def _line_response(r: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed z-score of the best-matching thin line through each pixel, and its angle (degrees from x).

    Each orientation is scaled by its own noise (its MAD times the local noise factor ``noise``): along x
    the rolling streaks are strong, so a scratch along the rolling direction must stand out from them;
    at an angle it crosses them."""
    from scipy import fft

    pad = 16
    rp = np.pad(r, pad, mode="reflect").astype(np.float32)
    bank, angles = _line_bank(*rp.shape)
    resp = fft.irfft2(fft.rfft2(rp)[None] * bank, s=rp.shape, axes=(1, 2))[:, pad:-pad, pad:-pad]
    sub = resp[:, ::3, ::3].reshape(len(resp), -1)
    mad = 1.4826 * np.median(np.abs(sub - np.median(sub, axis=1, keepdims=True)), axis=1)
    resp /= np.maximum(mad, 1e-9).astype(np.float32)[:, None, None]
    best = np.argmax(np.abs(resp), axis=0)
    z = np.take_along_axis(resp, best[None], axis=0)[0].astype(np.float64) / noise
    return z, angles[best]


def _comb_response(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strongest comb response over the roll-mark periods, in noise units, and that period.

    A comb of ``_COMB_TEETH`` teeth one period apart (each may sit 1 px off: dents are not exactly one
    period apart and periods are searched in whole pixels), each tooth minus the midpoint to the next
    (the last: to the previous): dents repeating once per roll turn respond, a scratch or a band of
    constant depth along x does not. The response is the weakest tooth (all of one sign, else 0), so one
    strong spot, or the two edges of a stain, cannot make a comb."""
    h, w = s.shape
    best = np.zeros((h, w))
    period = np.zeros((h, w))
    teeth = _COMB_TEETH
    up, down = ndi.maximum_filter1d(s, 3, axis=1), ndi.minimum_filter1d(s, 3, axis=1)
    for p in _PERIODS:
        half = p // 2
        n = w - (teeth - 1) * p  # comb starts whose last tooth is in the image
        if n <= 0:
            continue
        mids = [s[:, k * p + half : k * p + half + n] for k in range(teeth - 1)]
        anti = [*mids, mids[-1]]
        bright = up[:, :n] - anti[0]
        dark = down[:, :n] - anti[0]
        for k in range(1, teeth):
            np.minimum(bright, up[:, k * p : k * p + n] - anti[k], out=bright)
            np.maximum(dark, down[:, k * p : k * p + n] - anti[k], out=dark)
        acc = np.where(bright > -dark, np.maximum(bright, 0.0), np.minimum(dark, 0.0)) / np.sqrt(2.0)
        better = np.abs(acc) > np.abs(best[:, :n])
        best[:, :n] = np.where(better, acc, best[:, :n])
        period[:, :n] = np.where(better, p, period[:, :n])
    return best, period


@dataclass(frozen=True, eq=False)
class Maps:
    """Normalised maps of one image: relative contrast and signed z-score maps (one per channel)."""

    r: np.ndarray  # relative deviation from the illumination (row offsets removed)
    hp: np.ndarray  # r with the rolling streaks removed (robust high-pass along x), in local noise units
    fine: np.ndarray  # hp with a 1 px blur: holes, inclusions
    line: np.ndarray  # best thin-line filter response: scratches
    line_angle: np.ndarray  # its angle, degrees from the rolling direction
    thin: np.ndarray  # r minus its 3 px blur (relative): where exactly a thin line lies
    coarse: np.ndarray  # 6 x 4 px blur of r: oil stains
    dents: np.ndarray  # hp blurred to the size of a roll-mark dent
    comb: np.ndarray  # best comb response over the roll-mark periods: roll marks
    comb_period: np.ndarray  # its period, px
    grad: np.ndarray  # gradient magnitude of the lightly smoothed relative contrast
    sigma_r: float  # median local std of r (texture + sensor noise, relative)
    level: float  # median grey level


def _robust_smooth_x(r: np.ndarray, sig: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along x that ignores outliers (normalised convolution), so that a dark hole does
    not leave bright side lobes when the smooth rolling streaks are subtracted."""
    smooth = ndi.gaussian_filter1d(r, sigma, axis=1, mode="reflect")
    for _ in range(2):
        keep = np.abs(r - smooth) < 2.5 * sig
        keep = ndi.binary_erosion(keep, structure=np.ones((1, 5), bool), border_value=1).astype(np.float64)
        num = ndi.gaussian_filter1d(r * keep, sigma, axis=1, mode="reflect")
        den = ndi.gaussian_filter1d(keep, sigma, axis=1, mode="reflect")
        smooth = np.where(den > 0.05, num / np.maximum(den, 0.05), smooth)
    return smooth


def normalise(pixels: np.ndarray) -> Maps:
    """Divide out the illumination, remove row offsets, and build the channel maps in units of local noise."""
    img = pixels.astype(np.float64)
    bg = np.maximum(illumination(img), 1.0)
    r = img / bg - 1.0
    r = r - np.median(r, axis=1, keepdims=True)  # rows of the rolled strip differ slightly in brightness
    sig_r = local_sigma(r)
    hp = r - _robust_smooth_x(r, sig_r, 8.0)
    hp_z = hp / local_sigma(hp)
    fine = ndi.gaussian_filter(hp, 1.0)
    fine /= local_sigma(fine)
    line, angle = _line_response(r, sig_r / np.median(sig_r))
    coarse = ndi.gaussian_filter(r, (6.0, 4.0))
    coarse /= local_sigma(coarse, block=32)
    dents = ndi.gaussian_filter(hp, (2.5, 1.5))
    dents /= local_sigma(dents)
    comb, period = _comb_response(dents)
    rs = ndi.gaussian_filter(r, 0.7)
    grad = np.hypot(ndi.sobel(rs, axis=0), ndi.sobel(rs, axis=1)) / 8.0
    return Maps(
        r=r,
        hp=hp_z,
        fine=fine,
        line=line,
        line_angle=angle,
        thin=r - ndi.gaussian_filter(r, 3.0),
        coarse=coarse,
        dents=dents,
        comb=comb,
        comb_period=period,
        grad=grad,
        sigma_r=float(np.median(sig_r)),
        level=float(np.median(img)),
    )


# ------------------------------------------------------------------------------------------- candidates

# (high, low) hysteresis thresholds in local-noise units and the smallest region kept, per channel.
_THRESH = {
    "fine": (5.5, 3.0, 3),
    "line": (5.5, 3.5, 15),
    "coarse": (4.5, 2.5, 40),
    "periodic": (2.6, 1.8, 10),
}
# How regions are cut: the thin-line filter has side lobes of the other sign and overshoots a line's
# ends, so a line region keeps one sign and its pixels above 0.35 of its peak.
_CUT: dict[str, dict[str, Any]] = {
    "fine": {"cut_frac": 0.2},
    "line": {"cut_frac": 0.35, "signed": True},
    "coarse": {"cut_frac": 0.2},
}
_STRUCT = np.ones((3, 3), dtype=bool)


_NO_CHAIN = (float("nan"),) * 4


@dataclass(frozen=True, eq=False)
class _Region:
    channel: str
    sl: tuple[slice, slice]
    mask: np.ndarray  # within sl
    chain: tuple[float, ...] = _NO_CHAIN  # roll marks: dents, their mean and CV of strength, spacing CV

    @property
    def box(self) -> Box:
        ys, xs = self.sl
        return (xs.start, ys.start, xs.stop, ys.stop)


def _hysteresis(
    m: np.ndarray, high: float, low: float, min_area: int, cut_frac: float = 0.2, signed: bool = False
) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """Regions of |m| > low holding a pixel > high (bright and dark apart if ``signed``); a strong region is
    cut back to its pixels above ``cut_frac`` of its peak (its box then follows the defect, not the blur)."""
    if signed:
        return _hysteresis(m, high, low, min_area, cut_frac) + _hysteresis(-m, high, low, min_area, cut_frac)
    a = np.abs(m)
    lab, n = ndi.label(a > low, structure=_STRUCT)
    if n == 0:
        return []
    flat = lab.ravel()
    peak = np.zeros(n + 1)
    np.maximum.at(peak, flat, a.ravel())
    area = np.bincount(flat, minlength=n + 1)
    out = []
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None or peak[k] <= high or area[k] < min_area:
            continue
        mask = lab[sl] == k
        cut = cut_frac * peak[k]
        if cut > low:
            sub, _ = ndi.label(mask & (a[sl] > cut), structure=_STRUCT)
            top = sub[np.unravel_index(np.argmax(np.where(mask, a[sl], -1.0)), mask.shape)]
            mask = sub == top
            ys, xs = np.nonzero(mask)
            y0, x0 = sl[0].start, sl[1].start
            sl = (slice(y0 + ys.min(), y0 + ys.max() + 1), slice(x0 + xs.min(), x0 + xs.max() + 1))
            mask = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        out.append((sl, mask))
    return out


def _dent_chain(profile: np.ndarray, period: int, start: int, low: float) -> list[int]:
    """The dents of a row of dents, left to right: from the strongest, step one period left and right
    while a local maximum above ``low`` is within 3 px of where the next dent should be (one miss is
    tolerated)."""
    n = profile.size
    found = [start]
    for step in (-period, period):
        pos, misses = start, 0
        while misses < 2:
            lo, hi = pos + step - 3, pos + step + 4
            if lo < 0 or hi > n:
                break
            k = lo + int(np.argmax(profile[lo:hi]))
            if profile[k] > low:
                pos, misses = k, 0
                found.append(k)
            else:
                pos, misses = pos + step, misses + 1
    return sorted(found)


def _periodic_regions(maps: Maps) -> list[_Region]:
    """Roll marks: where the comb responds, the row of dents it found, from its first to its last dent."""
    high, low, min_area = _THRESH["periodic"]
    lab, _ = ndi.label(np.abs(maps.comb) > low, structure=_STRUCT)
    h, w = lab.shape
    out = []
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        mask = lab[sl] == k
        vals = np.where(mask, np.abs(maps.comb[sl]), 0.0)
        if vals.max() <= high:
            continue
        iy, ix = np.unravel_index(np.argmax(vals), vals.shape)
        y, x = sl[0].start + iy, sl[1].start + ix
        period = int(maps.comb_period[y, x])
        sign = 1.0 if maps.comb[y, x] > 0 else -1.0
        rows = slice(max(0, sl[0].start - 1), min(h, sl[0].stop + 1))
        profile = sign * maps.dents[rows].mean(axis=0)
        # noise of such a profile: the same band of rows further up (or down), away from the mark
        n_rows = rows.stop - rows.start
        shift = n_rows + 8 if rows.start >= n_rows + 8 else -(n_rows + 8)
        ref = maps.dents[max(0, rows.start - shift) : max(0, rows.start - shift) + n_rows].mean(axis=0)
        profile = profile / (1.4826 * np.median(np.abs(ref - np.median(ref))) + 1e-6)
        first_tooth = x + int(np.argmax([profile[x + t * period] for t in range(_COMB_TEETH)])) * period
        teeth = _dent_chain(profile, period, first_tooth, 2.0)
        x0, x1 = teeth[0], teeth[-1]
        if x1 - x0 < 2 * period:
            continue
        amp = profile[teeth]
        gaps = np.diff(teeth) / period
        chain = (float(len(teeth)), float(amp.mean()), float(amp.std() / amp.mean()), float(gaps.std()))
        box_sl = (rows, slice(max(0, x0 - 4), min(w, x1 + 5)))
        region_mask = np.zeros((rows.stop - rows.start, box_sl[1].stop - box_sl[1].start), dtype=bool)
        region_mask[:] = (sign * maps.dents[box_sl]) > 1.0
        if region_mask.sum() >= min_area:
            out.append(_Region("periodic", box_sl, region_mask, chain))
    return out


def _grow(maps: Maps, reg: _Region, by: int = 3, z: float = 3.0) -> _Region:
    """A fine region grown into the significant unblurred pixels next to it (a hole's halo, an edge)."""
    h, w = maps.r.shape
    ys, xs = reg.sl
    y0, y1, x0, x1 = max(0, ys.start - by), min(h, ys.stop + by), max(0, xs.start - by), min(w, xs.stop + by)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = reg.mask
    near = ndi.binary_dilation(mask, iterations=by)
    lab, _ = ndi.label(mask | (near & (np.abs(maps.hp[y0:y1, x0:x1]) > z)), structure=_STRUCT)
    grown = np.isin(lab, np.unique(lab[mask]))
    gy, gx = np.nonzero(grown)
    sl = (slice(y0 + gy.min(), y0 + gy.max() + 1), slice(x0 + gx.min(), x0 + gx.max() + 1))
    return _Region(reg.channel, sl, grown[gy.min() : gy.max() + 1, gx.min() : gx.max() + 1])


def _refine_line(maps: Maps, reg: _Region) -> _Region:
    """A line region cut to the thin line itself. The line filter is 31 px long and has side lobes, so its
    region is longer and wider than the scratch: fit the centreline (a parabola through the pixels of
    thin-line contrast of the right sign), keep the pixels within 2.5 px of it above 30 % of the region's
    95th percentile of that contrast, and box their 1..99 % extent along the line and the curve across."""
    h, w = maps.r.shape
    ys, xs = reg.sl
    y0, y1, x0, x1 = max(0, ys.start - 2), min(h, ys.stop + 2), max(0, xs.start - 2), min(w, xs.stop + 2)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = reg.mask
    mask = ndi.binary_dilation(mask, iterations=2)
    win = (slice(y0, y1), slice(x0, x1))
    sign = 1.0 if np.sum(maps.line[win][mask]) >= 0 else -1.0
    tc = sign * maps.thin[win]
    ref = float(np.percentile(tc[mask], 95))
    iy, ix = np.nonzero(mask & (tc > 0.3 * ref))
    if ref <= 0 or iy.size < 8:
        return reg
    along_x = (x1 - x0) >= (y1 - y0)
    u, v = (ix, iy) if along_x else (iy, ix)
    wt = tc[iy, ix]
    if np.ptp(u) < 4:
        return reg
    coef = np.polyfit(u.astype(float), v.astype(float), 2 if np.ptp(u) > 20 else 1, w=np.sqrt(wt))
    d = v - np.polyval(coef, u)
    inl = np.abs(d) <= 2.5
    if inl.sum() < 5:
        return reg
    u_in = u[inl]
    u0, u1 = np.percentile(u_in, [1, 99])
    uu = np.arange(int(np.floor(u0)), int(np.ceil(u1)) + 1)
    curve = np.polyval(coef, uu)
    half = min(2.5, 0.5 + 1.5 * float(np.sqrt(np.average(d[inl] ** 2, weights=wt[inl]))))
    v0, v1 = int(np.floor(curve.min() - half)), int(np.ceil(curve.max() + half)) + 1
    a0, a1 = int(uu[0]), int(uu[-1]) + 1
    if along_x:
        by0, by1, bx0, bx1 = max(v0, 0), min(v1, y1 - y0), max(a0, 0), min(a1, x1 - x0)
    else:
        by0, by1, bx0, bx1 = max(a0, 0), min(a1, y1 - y0), max(v0, 0), min(v1, x1 - x0)
    if by1 <= by0 or bx1 <= bx0:
        return reg
    sub = np.zeros((by1 - by0, bx1 - bx0), dtype=bool)
    keep_y, keep_x = (v[inl], u_in) if along_x else (u_in, v[inl])
    ok = (keep_y >= by0) & (keep_y < by1) & (keep_x >= bx0) & (keep_x < bx1)
    sub[keep_y[ok] - by0, keep_x[ok] - bx0] = True
    if not sub.any():
        return reg
    return _Region(reg.channel, (slice(y0 + by0, y0 + by1), slice(x0 + bx0, x0 + bx1)), sub)


def _axis(reg: _Region) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Centroid, unit main axis and the extent along it (min, max projection) of a region."""
    yy, xx = np.nonzero(reg.mask)
    pts = np.stack([xx + reg.sl[1].start, yy + reg.sl[0].start], axis=1).astype(float)
    c = pts.mean(axis=0)
    cov = np.cov((pts - c).T) if len(pts) > 1 else np.eye(2)
    vec = np.linalg.eigh(cov + 1e-9 * np.eye(2))[1][:, 1]
    proj = (pts - c) @ vec
    return c, vec, float(proj.min()), float(proj.max())


def _merge_collinear(regions: list[_Region], max_gap: float = 30.0) -> list[_Region]:
    """Pieces of one scratch (the line response dips where it crosses a streak) merged into one region:
    regions whose main axes agree within 12 degrees, 4 px apart across and ``max_gap`` px along."""
    n = len(regions)
    if n < 2:
        return regions
    axes = [_axis(g) for g in regions]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        ci, vi, lo_i, hi_i = axes[i]
        for j in range(i + 1, n):
            cj, vj, lo_j, hi_j = axes[j]
            if abs(float(vi @ vj)) < np.cos(np.radians(12)):
                continue
            d = cj - ci
            across = abs(float(d @ np.array([-vi[1], vi[0]])))
            along = float(d @ vi)
            j_lo, j_hi = (along + lo_j, along + hi_j) if float(vi @ vj) > 0 else (along - hi_j, along - lo_j)
            gap = max(j_lo - hi_i, lo_i - j_hi)
            if across <= 4.0 and gap <= max_gap:
                parent[root(j)] = root(i)
    groups: dict[int, list[_Region]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(regions[i])
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        y0 = min(g.sl[0].start for g in members)
        y1 = max(g.sl[0].stop for g in members)
        x0 = min(g.sl[1].start for g in members)
        x1 = max(g.sl[1].stop for g in members)
        mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for g in members:
            mask[g.sl[0].start - y0 : g.sl[0].stop - y0, g.sl[1].start - x0 : g.sl[1].stop - x0] |= g.mask
        out.append(_Region(members[0].channel, (slice(y0, y1), slice(x0, x1)), mask))
    return out


def find_regions(maps: Maps) -> list[_Region]:
    """Candidate regions of every channel: hysteresis on |z| of the fine, line and coarse maps, comb spans."""
    found = {
        ch: [_Region(ch, sl, m) for sl, m in _hysteresis(getattr(maps, ch), *_THRESH[ch], **_CUT[ch])]
        for ch in ("fine", "line", "coarse")
    }
    regions = [_grow(maps, g) for g in found["fine"]]
    regions += [_refine_line(maps, g) for g in _merge_collinear(found["line"])]
    regions += found["coarse"]
    regions += _periodic_regions(maps)
    return regions


# --------------------------------------------------------------------------------------------- features

FEATURE_NAMES: tuple[str, ...] = (
    *(f"channel_{c}" for c in CHANNELS),
    "log_area",
    "log_width",
    "log_height",
    "aspect",
    "fill",
    "elongation",
    "log_major",
    "log_minor",
    "orient_abs_cos",
    "compactness",
    "radial_irregularity",
    "r_mean",
    "r_min",
    "r_max",
    "r_ring_contrast",
    "halo",
    "polarity",
    "own_peak",
    "own_mean_abs",
    "hp_peak",
    "fine_peak",
    "line_peak",
    "line_angle_abs",
    "coarse_peak",
    "comb_peak",
    "fine_to_coarse",
    "edge_gradient",
    "edge_sharpness",
    "interior_gradient",
    "periodicity",
    "fft_period_px",
    "comb_period_px",
    "n_periods",
    "ring_std",
    "sigma_r",
    "level",
    "in_periodic",
    "near_coarse",
    "coarse_box_mean",
    "chain_dents",
    "chain_strength",
    "chain_strength_cv",
    "chain_spacing_cv",
)


def _ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    big = ndi.binary_dilation(mask, iterations=outer) if outer else mask
    small = ndi.binary_dilation(mask, iterations=inner) if inner else mask
    return big & ~small


def _periodicity(profile: np.ndarray) -> tuple[float, float]:
    """Share of the power of a detrended column profile in its strongest period of 10..60 px, and that period."""
    n = profile.size
    if n < 24:
        return 0.0, 0.0
    x = np.arange(n)
    p = profile - np.polyval(np.polyfit(x, profile, 1), x)
    p = p * np.hanning(n)
    power = np.abs(np.fft.rfft(p)) ** 2
    freqs = np.fft.rfftfreq(n)
    band = (freqs >= 1 / 60) & (freqs <= 1 / 10)
    total = power[1:].sum()
    if not band.any() or total <= 0:
        return 0.0, 0.0
    k = int(np.argmax(np.where(band, power, -1.0)))
    share = power[max(k - 1, 1) : k + 2].sum() / total
    return float(share), float(1.0 / freqs[k])


_OWN = {"fine": "fine", "line": "line", "coarse": "coarse", "periodic": "dents"}


def _features(maps: Maps, reg: _Region, in_periodic: bool, near_coarse: float) -> np.ndarray:
    h, w = maps.r.shape
    pad = 6
    ys, xs = reg.sl
    y0, y1 = max(0, ys.start - pad), min(h, ys.stop + pad)
    x0, x1 = max(0, xs.start - pad), min(w, xs.stop + pad)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = reg.mask
    win = (slice(y0, y1), slice(x0, x1))
    r = maps.r[win]
    own = getattr(maps, _OWN[reg.channel])[win]
    grad = maps.grad[win]

    area = float(mask.sum())
    bw, bh = xs.stop - xs.start, ys.stop - ys.start
    yy, xx = np.nonzero(mask)
    cov = np.cov(np.stack([xx, yy]).astype(float)) if area > 1 else np.zeros((2, 2))
    evals, evecs = np.linalg.eigh(cov + np.eye(2) / 12.0)
    lam2, lam1 = max(evals[0], 1e-6), max(evals[1], 1e-6)
    eroded = ndi.binary_erosion(mask, structure=_STRUCT)
    border = mask & ~eroded
    perim = float(max(border.sum(), 1))
    by, bx = np.nonzero(border)
    rad = np.hypot(bx - xx.mean(), by - yy.mean()) if by.size else np.zeros(1)
    ring1 = _ring(mask, 1, 3)
    ring2 = _ring(mask, 4, 6)
    r_in = r[mask]
    r_ring = r[ring1] if ring1.any() else np.zeros(1)
    r_ring2 = r[ring2] if ring2.any() else r_ring
    contrast = float(r_in.mean() - r_ring.mean())
    sign = 1.0 if contrast >= 0 else -1.0
    own_in = own[mask]
    fine_peak = float(np.abs(maps.fine[win][mask]).max())
    coarse_peak = float(np.abs(maps.coarse[win][mask]).max())
    line_in = np.abs(maps.line[win][mask])
    angle = float(abs(maps.line_angle[win][mask][np.argmax(line_in)]))
    comb_in = np.abs(maps.comb[win][mask])
    comb_period = float(maps.comb_period[win][mask][np.argmax(comb_in)])
    edge_g = float(grad[border].mean()) if border.any() else 0.0
    interior_g = float(grad[eroded].mean()) if eroded.any() else edge_g
    # periodicity of the dent map along x, in the rows of the region (roll marks repeat once per roll turn)
    share, period = _periodicity(
        maps.dents[ys, :][:, max(0, xs.start - 8) : min(w, xs.stop + 8)].mean(axis=0)
    )
    channel = [1.0 if reg.channel == c else 0.0 for c in CHANNELS]
    return np.array(
        [
            *channel,
            np.log(area),
            np.log(bw),
            np.log(bh),
            max(bw, bh) / min(bw, bh),
            area / (bw * bh),
            float(np.sqrt(lam1 / lam2)),
            np.log(4 * np.sqrt(lam1)),
            np.log(4 * np.sqrt(lam2)),
            abs(float(evecs[0, 1])),
            perim**2 / (4 * np.pi * area),
            float(rad.std() / max(rad.mean(), 1e-6)),
            float(r_in.mean()),
            float(r_in.min()),
            float(r_in.max()),
            contrast,
            float(-sign * (r_ring.mean() - r_ring2.mean())),
            float((own_in > 0).mean()),
            float(np.abs(own_in).max()),
            float(np.abs(own_in).mean()),
            float(np.abs(maps.hp[win][mask]).max()),
            fine_peak,
            float(line_in.max()),
            angle,
            coarse_peak,
            float(comb_in.max()),
            fine_peak / max(coarse_peak, 1e-3),
            edge_g / maps.sigma_r,
            edge_g / max(abs(contrast), 1e-4),
            interior_g / maps.sigma_r,
            share,
            period,
            comb_period,
            bw / comb_period if comb_period else 0.0,
            float(own[ring2].std()) if ring2.any() else 0.0,
            maps.sigma_r,
            maps.level,
            float(in_periodic),
            near_coarse,
            float(np.abs(maps.coarse[reg.sl]).mean()),
            *reg.chain,
        ]
    )


def candidates(pixels: np.ndarray) -> Candidates:
    """Candidate regions of an image and their features (``FEATURE_NAMES``).

    Two features are context: whether a region lies in a roll-mark candidate (a dent of a row of dents)
    and how much of it lies in a coarse one (the comb can respond to the mottled inside of a stain)."""
    from threadpoolctl import threadpool_limits

    check_pixels(pixels)
    # the matrices are tiny: BLAS threads only cost time, and on a busy machine they spin for long
    with threadpool_limits(limits=1, user_api="blas"):
        return _candidates(pixels)


def _candidates(pixels: np.ndarray) -> Candidates:
    maps = normalise(pixels)
    regions = find_regions(maps)
    periodic = [g.box for g in regions if g.channel == "periodic"]
    coarse = [g.box for g in regions if g.channel == "coarse"]
    rows = []
    for reg in regions:
        in_periodic = reg.channel != "periodic" and any(_overlap_small(reg.box, p) > 0.5 for p in periodic)
        near = max((_overlap_small(reg.box, c) for c in coarse if reg.channel != "coarse"), default=0.0)
        rows.append(_features(maps, reg, in_periodic, near))
    feats = np.array(rows) if rows else np.zeros((0, len(FEATURE_NAMES)))
    return Candidates(tuple(r.box for r in regions), tuple(r.channel for r in regions), feats)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two half-open boxes."""
    return float(iou_matrix([a], [b])[0, 0])


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (len(a) x len(b))."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    A = np.asarray(a, dtype=float)[:, None, :]
    B = np.asarray(b, dtype=float)[None, :, :]
    iw = np.clip(np.minimum(A[..., 2], B[..., 2]) - np.maximum(A[..., 0], B[..., 0]), 0, None)
    ih = np.clip(np.minimum(A[..., 3], B[..., 3]) - np.maximum(A[..., 1], B[..., 1]), 0, None)
    inter = iw * ih
    area_a = (A[..., 2] - A[..., 0]) * (A[..., 3] - A[..., 1])
    area_b = (B[..., 2] - B[..., 0]) * (B[..., 3] - B[..., 1])
    return inter / (area_a + area_b - inter)


def candidate_targets(
    boxes: Sequence[Box], truth: Sequence[_Defect]
) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """Training targets of each candidate: its label, its best IoU with a true box, and the offsets of that
    true box's edges from its own (x0, y0, x1, y1, in units of the candidate's width and height).

    Label: the class of the true box it overlaps best if IoU >= 0.3, ``false_candidate`` if IoU < 0.1
    with every true box, None (left out of the classifier's training: a piece or an overgrowth of a real
    defect is neither) in between."""
    m = iou_matrix(boxes, [d.box for d in truth])
    n = len(boxes)
    best = m.max(axis=1) if m.shape[1] else np.zeros(n)
    arg = m.argmax(axis=1) if m.shape[1] else np.zeros(n, int)
    labels: list[str | None] = [
        truth[int(j)].cls if v >= MATCH_IOU else FALSE_CANDIDATE if v < FALSE_IOU else None
        for v, j in zip(best, arg)
    ]
    offsets = np.zeros((n, 4))
    if m.shape[1] and n:
        b = np.asarray(boxes, dtype=float)
        t = np.asarray([truth[int(j)].box for j in arg], dtype=float)
        size = np.maximum(np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]] * 2, axis=1), 1.0)
        offsets = np.clip((t - b) / size, -1.0, 1.0)
    return labels, best, offsets


def _apply_offsets(box: Box, off: np.ndarray, shape: tuple[int, int]) -> Box:
    """A box moved by predicted edge offsets, kept inside the image and at least 1 px wide and high."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    nx0, ny0 = round(x0 + off[0] * w), round(y0 + off[1] * h)
    nx1, ny1 = round(x1 + off[2] * w), round(y1 + off[3] * h)
    nx0, ny0 = min(max(nx0, 0), shape[1] - 1), min(max(ny0, 0), shape[0] - 1)
    nx1, ny1 = max(min(nx1, shape[1]), nx0 + 1), max(min(ny1, shape[0]), ny0 + 1)
    return (int(nx0), int(ny0), int(nx1), int(ny1))


@dataclass(frozen=True, eq=False)
class Scored:
    """Candidates of one image with class probabilities (``CLASSES`` columns) and predicted box IoU."""

    candidates: Candidates
    proba: np.ndarray
    box_quality: np.ndarray
    refined: tuple[Box, ...]  # each candidate's box moved by the box regression (as is without one)


# --------------------------------------------------------------------------------------------- inspector


class FolderRun:
    """Iterator over ``(path, findings)`` for the PNGs of a folder, by name; what it skipped is in ``skipped``."""

    def __init__(self, inspector: SurfaceInspector, directory: Path) -> None:
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory}: not a folder")
        self._inspector = inspector
        self._paths = sorted(p for p in directory.iterdir())
        self.skipped: list[tuple[Path, str]] = []

    def counts(self) -> dict[str, int]:
        """Number of skipped files per reason."""
        return dict(Counter(reason.split(":")[0] for _, reason in self.skipped))

    def __iter__(self) -> Iterator[tuple[Path, list[FoundDefect]]]:
        for path in self._paths:
            if not path.is_file():
                continue
            if path.suffix.lower() != ".png":
                self._skip(path, f"not a PNG: suffix {path.suffix or '(none)'}")
                continue
            try:
                findings = self._inspector.inspect_png(path)
            except SurfaceImageError as exc:
                self._skip(path, f"unusable PNG: {exc}")
                continue
            yield path, findings

    def _skip(self, path: Path, reason: str) -> None:
        log.warning("surface inspection skips %s (%s)", path.name, reason)
        self.skipped.append((path, reason))


FORMAT = 2  # 1 was a pickle (joblib); 2 keeps the training regions and refits on load


@dataclass
class Regions:
    """The training regions of an inspector: features, class label ("" for left out), box quality, offsets."""

    features: np.ndarray
    labels: np.ndarray
    quality: np.ndarray
    offsets: np.ndarray

    def digest(self) -> str:
        """SHA-256 over the arrays' values, recorded in the metadata so the two files stay a pair."""
        h = hashlib.sha256()
        for a in (self.features.astype("<f8"), self.labels.astype("<U16"), self.quality, self.offsets):
            h.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
        return h.hexdigest()


@dataclass
class SurfaceInspector:
    """Candidate regions -> features -> gradient-boosted trees (HistGradientBoostingClassifier).

    Why HistGradientBoosting: the features mix log sizes, ratios, angles and z-scores of very different
    scales, and the classes are told apart by thresholds on a few of them (contrast and edge sharpness for
    hole vs inclusion, elongation for scratches, comb strength for roll marks); boosted trees take that as
    is, without scaling, fit a few thousand regions in seconds, give usable probabilities and are
    deterministic with a seed. A second, regression, model of the same kind predicts how well a
    candidate's box fits the defect (its IoU), so that of several overlapping candidates of one defect the
    best-drawn box is reported.
    """

    min_probability: float = 0.5
    random_state: int = 0
    max_iter: int = 300
    learning_rate: float = 0.08
    # OpenMP threads for the trees: on a busy (or small) machine, spinning OpenMP threads of scikit-learn's
    # boosted trees can be slower than one thread by far, and one image's few regions gain nothing
    n_threads: int = 1
    regions: Regions | None = None
    model: Any = None
    box_model: Any = None
    offset_models: list[Any] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    # -- training
    def fit(self, images: Iterable[Labelled], *, seed: int | None = None) -> SurfaceInspector:
        """Train on labelled images (rendered ones or ``load_labelled_folder``); ``seed`` is recorded."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._fit(images, seed)

    def _fit(self, images: Iterable[Labelled], seed: int | None) -> SurfaceInspector:
        rows, labels, quality, offsets = [], [], [], []
        n_images = 0
        for img in images:
            n_images += 1
            cand = candidates(img.pixels)
            lab, best, off = candidate_targets(cand.boxes, list(img.defects))
            rows.append(cand.features)
            labels += lab
            quality.append(best)
            offsets.append(off)
        X = np.concatenate(rows) if rows else np.zeros((0, len(FEATURE_NAMES)))
        known = np.array([lab is not None for lab in labels], dtype=bool)
        if not known.any():
            raise ValueError("no candidate regions in the training images: nothing to learn")
        y = np.array([lab if lab is not None else "" for lab in labels])
        missing = sorted(set(CLASSES) - set(y[known].tolist()))
        if missing:
            log.warning("training regions lack class(es) %s; the inspector cannot report them", missing)
        q = np.concatenate(quality)
        off = np.concatenate(offsets) if offsets else np.zeros((0, 4))
        self.regions = Regions(X, y, q, off)
        self._fit_regions()
        counts = Counter(y[known].tolist())
        clf = self.model
        self.metadata = {
            "format": FORMAT,
            "classes": [str(c) for c in clf.classes_],
            "feature_names": list(FEATURE_NAMES),
            "libraries": library_versions("scipy", "PIL"),
            "training": {
                "seed": seed,
                "images": n_images,
                "regions": int(known.sum()),
                "regions_left_out": int((~known).sum()),
                "regions_per_class": {c: int(counts.get(c, 0)) for c in CLASSES},
                "accuracy": self._training_accuracy(),
            },
            "min_probability": self.min_probability,
            "estimator": type(clf).__name__,
            "estimator_params": {
                "random_state": self.random_state,
                "max_iter": self.max_iter,
                "learning_rate": self.learning_rate,
            },
            "metrics": {},
        }
        return self

    def _fit_regions(self) -> None:
        """Fit the classifier and the box models on ``self.regions`` (deterministic: one thread, a seed)."""
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        r = self.regions
        assert r is not None
        known = r.labels != ""
        clf = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=31,
            l2_regularization=1.0,
            class_weight="balanced",
            early_stopping=False,
            random_state=self.random_state,
        )
        clf.fit(r.features[known], r.labels[known])

        def regressor() -> Any:
            return HistGradientBoostingRegressor(
                max_iter=150, learning_rate=0.08, early_stopping=False, random_state=self.random_state
            )

        # box quality is learned on candidates that lie on a real defect, box offsets on those that match one
        near, matched = r.quality >= FALSE_IOU, r.quality >= MATCH_IOU
        self.box_model = regressor().fit(r.features[near], r.quality[near]) if near.sum() >= 10 else None
        self.offset_models = (
            [regressor().fit(r.features[matched], r.offsets[matched, k]) for k in range(4)]
            if matched.sum() >= 10
            else []
        )
        self.model = clf

    def _training_accuracy(self) -> float:
        r = self.regions
        assert r is not None and self.model is not None
        known = r.labels != ""
        return float((self.model.predict(r.features[known]) == r.labels[known]).mean())

    # -- inspection
    def _require_model(self) -> Any:
        if self.model is None:
            raise RuntimeError("SurfaceInspector is not trained: call fit() or load()")
        return self.model

    def score(self, pixels: np.ndarray) -> Scored:
        """Every candidate region with its class probabilities and predicted box quality."""
        from threadpoolctl import threadpool_limits

        model = self._require_model()
        cand = candidates(pixels)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._score(model, cand, pixels.shape)

    def _score(self, model: Any, cand: Candidates, shape: tuple[int, ...]) -> Scored:
        n = len(cand.boxes)
        proba = np.zeros((n, len(CLASSES)))
        quality = np.ones(n)
        refined = cand.boxes
        if n:
            p = model.predict_proba(cand.features)
            for j, c in enumerate(model.classes_):
                proba[:, CLASSES.index(str(c))] = p[:, j]
            if self.box_model is not None:
                quality = np.clip(self.box_model.predict(cand.features), 0.0, 1.0)
            if self.offset_models:
                off = np.stack([m.predict(cand.features) for m in self.offset_models], axis=1)
                refined = tuple(_apply_offsets(b, o, (shape[0], shape[1])) for b, o in zip(cand.boxes, off))
        return Scored(cand, proba, quality, refined)

    def inspect(self, pixels: np.ndarray) -> list[FoundDefect]:
        """The defects of one 8-bit greyscale image, most probable first."""
        return select(self.score(pixels), self.min_probability)

    def inspect_png(self, path: str | Path) -> list[FoundDefect]:
        """``inspect`` of an 8-bit greyscale PNG (SurfaceImageError naming the file if it is not one)."""
        return self.inspect(read_png(path))

    def inspect_folder(self, directory: str | Path) -> FolderRun:
        """Iterate ``(path, findings)`` over the PNGs of a folder by name; other files are skipped, counted
        by reason (``run.counts()``) and named (``run.skipped``)."""
        return FolderRun(self, Path(directory))

    # -- persistence
    def save(self, path: str | Path) -> Path:
        """Save to a folder: ``regions.npz`` (the training regions: features and targets, plain arrays) and
        ``metadata.json``. No pickle: ``load`` refits the same trees from them, so a model file is data."""
        self._require_model()
        r = self.regions
        if r is None:
            raise RuntimeError("this inspector has no training regions to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "regions.npz.partial"
        with tmp.open("wb") as fh:
            np.savez_compressed(
                fh, features=r.features, labels=r.labels.astype("U16"), quality=r.quality, offsets=r.offsets
            )
        tmp.replace(path / "regions.npz")
        meta = dict(self.metadata, min_probability=self.min_probability, regions_sha256=r.digest())
        (path / "metadata.json").write_text(
            json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> SurfaceInspector:
        """Load a saved inspector (refitting its trees from the saved regions, a few seconds); a
        SurfaceModelError (a ValueError) names what differs if its format, feature list, classes or
        scikit-learn major.minor version are not this code's, or if the refit does not reproduce it."""
        import sklearn

        path = Path(path)
        meta_path = path / "metadata.json"
        if not path.is_dir():
            raise SurfaceModelError(
                f"{path}: no saved surface inspector here (train one: shopfloor analytics surface-train)"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SurfaceModelError(f"{meta_path}: cannot read the model metadata ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise SurfaceModelError(
                f"{path.name}: model format {meta.get('format')!r}, this code reads format {FORMAT}; retrain it"
            )
        saved = meta.get("feature_names")
        if saved != list(FEATURE_NAMES):
            saved = saved if isinstance(saved, list) else []
            gone = [f for f in FEATURE_NAMES if f not in saved]
            extra = [f for f in saved if f not in FEATURE_NAMES]
            detail = (
                f"missing {gone}, unknown {extra}" if gone or extra else "the same names in another order"
            )
            raise SurfaceModelError(
                f"{path.name}: the saved model's feature list differs from this code's ({detail}); retrain it"
            )
        want = major_minor(sklearn.__version__)
        have = major_minor(str(meta.get("libraries", {}).get("scikit-learn", "unknown")))
        if have != want:
            raise SurfaceModelError(
                f"{path.name}: the model was saved with scikit-learn {have}, this is scikit-learn {want}; retrain it"
            )
        classes = meta.get("classes", [])
        if not classes or not set(classes) <= set(CLASSES):
            raise SurfaceModelError(
                f"{path.name}: the saved model's classes {classes} are not among {list(CLASSES)}"
            )
        try:
            with np.load(path / "regions.npz", allow_pickle=False) as z:
                regions = Regions(z["features"], z["labels"].astype(str), z["quality"], z["offsets"])
        except (OSError, ValueError, KeyError) as exc:
            raise SurfaceModelError(f"{path.name}: cannot read regions.npz ({exc})") from exc
        if regions.features.shape[1:] != (len(FEATURE_NAMES),) or not (
            len(regions.features) == len(regions.labels) == len(regions.quality) == len(regions.offsets)
        ):
            raise SurfaceModelError(f"{path.name}: regions.npz's arrays do not fit together; retrain it")
        if regions.digest() != meta.get("regions_sha256"):
            raise SurfaceModelError(
                f"{path.name}: regions.npz and metadata.json do not belong together (checksum); retrain it"
            )
        params = meta.get("estimator_params", {})
        insp = cls(
            min_probability=float(meta.get("min_probability", 0.5)),
            random_state=int(params.get("random_state", 0)),
            max_iter=int(params.get("max_iter", cls.max_iter)),
            learning_rate=float(params.get("learning_rate", cls.learning_rate)),
            regions=regions,
            metadata=meta,
        )
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=insp.n_threads, user_api="openmp"):
            insp._fit_regions()
            accuracy = insp._training_accuracy()
        model = insp.model
        assert model is not None
        if [str(c) for c in model.classes_] != classes:
            raise SurfaceModelError(
                f"{path.name}: regions.npz's classes differ from metadata.json's {classes}"
            )
        want_acc = float(meta.get("training", {}).get("accuracy", accuracy))
        if abs(accuracy - want_acc) > 1e-9:
            raise SurfaceModelError(
                f"{path.name}: refitting gave training accuracy {accuracy:.6f}, the saved model had "
                f"{want_acc:.6f}; the files do not belong together or the library changed: retrain it"
            )
        return insp


def select(scored: Scored, min_probability: float = 0.5) -> list[FoundDefect]:
    """The findings: candidates whose likeliest class is a defect with at least ``min_probability``.

    Candidates of one class that overlap (IoU > 0.1, or half of the smaller inside the other) are one
    defect: it is reported with the box of the candidate predicted to fit best, moved by the box
    regression, and with the highest probability among them. A candidate that overlaps a likelier
    finding of another class (IoU > 0.3, or 70 % of it inside) is dropped."""
    cand, proba, quality = scored.candidates, scored.proba, scored.box_quality
    n_def = len(DEFECT_CLASSES)
    best = np.argmax(proba, axis=1) if len(proba) else np.zeros(0, int)
    keep = [i for i in range(len(best)) if best[i] < n_def and proba[i, best[i]] >= min_probability]
    chosen: list[int] = []  # one candidate per finding
    prob: dict[int, float] = {}  # a finding's probability: that of its likeliest candidate
    for i in sorted(keep, key=lambda k: -proba[k, best[k]]):
        bi = cand.boxes[i]
        same = [
            j
            for j in chosen
            if best[j] == best[i]
            and (iou(bi, cand.boxes[j]) > FALSE_IOU or _overlap_small(bi, cand.boxes[j]) > 0.5)
        ]
        if same:  # the same defect again (or pieces of it): keep the best-drawn box
            if quality[i] > max(quality[j] for j in same):
                top = max(prob[j] for j in same)
                chosen = [j for j in chosen if j not in same] + [i]
                for j in same:
                    prob.pop(j)
                prob[i] = top
            continue
        if any(iou(bi, cand.boxes[j]) > MATCH_IOU or _overlap_small(bi, cand.boxes[j]) > 0.7 for j in chosen):
            continue
        chosen.append(i)
        prob[i] = float(proba[i, best[i]])
    return [
        FoundDefect(DEFECT_CLASSES[best[i]], _int_box(scored.refined[i]), prob[i])
        for i in sorted(chosen, key=lambda k: -prob[k])
    ]


def _int_box(b: Sequence[Any]) -> Box:
    return (int(b[0]), int(b[1]), int(b[2]), int(b[3]))


def _overlap_small(a: Box, b: Box) -> float:
    """Intersection over the area of the smaller box."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / small if small else 0.0


def defect_score(proba: np.ndarray) -> float:
    """Image score for the verdict's ROC: the highest probability of a defect class over its candidates."""
    return float(proba[:, : len(DEFECT_CLASSES)].max()) if len(proba) else 0.0


def verdict(findings: Sequence[FoundDefect]) -> Literal["ok", "defect"]:
    """'defect' if anything was found, else 'ok'."""
    return "defect" if findings else "ok"


def worst_class(findings: Sequence[FoundDefect]) -> str | None:
    """The most severe class found (``SEVERITY`` order), None for a clean image."""
    found = {f.cls for f in findings}
    return next((c for c in SEVERITY if c in found), None)
