"""Windowed features of an asset's signals, vectorised with numpy, the same offline and online.

Level, spread, trend, RMS, peak, kurtosis, crest factor, spectral band energy, counter rates and state time.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from analytics.dataset import NS, AssetFrame

#: Features of every analogue signal; counters (never decreasing) get their rate instead.
SHAPE = ("mean", "std", "slope", "rms", "peak", "kurtosis", "crest")
MIN_VALID = 0.5  # a window needs this share of valid running samples to be scored


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute: the window, which shape features, and spectral bands (Hz) per signal."""

    window_s: float = 3600.0
    shape: tuple[str, ...] = SHAPE
    bands: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    running_only: bool = True

    def as_dict(self) -> dict:
        return {
            "window_s": self.window_s,
            "shape": list(self.shape),
            "bands": {k: [list(b) for b in v] for k, v in self.bands.items()},
            "running_only": self.running_only,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureSpec:
        return cls(
            float(d["window_s"]),
            tuple(d["shape"]),
            {k: [tuple(b) for b in v] for k, v in d.get("bands", {}).items()},
            bool(d.get("running_only", True)),
        )


@dataclass
class Features:
    """One row per window: ``t_ns`` is the window's end, ``X[:, j]`` is feature ``names[j]``."""

    asset: str
    t_ns: np.ndarray
    names: list[str]
    signal_of: list[str]  # the signal each feature is computed from
    X: np.ndarray
    running_s: np.ndarray  # running seconds within each window
    valid: np.ndarray  # bool: enough valid samples to be scored

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.names.index(name)]


def is_counter(v: np.ndarray) -> bool:
    """A totaliser: finite values that do move and never decrease but for rare resets (under 1 % of steps)."""
    f = v[np.isfinite(v)]
    if len(f) < 10:
        return False
    d = np.diff(f)
    return bool(np.mean(d >= 0) >= 0.99 and np.ptp(f) > 0)


def _windows(v: np.ndarray, w: int) -> np.ndarray:
    n = len(v) // w
    return v[: n * w].reshape(n, w)


def shape_features(x: np.ndarray, which: Sequence[str]) -> dict[str, np.ndarray]:
    """Shape features of each row of ``x`` (windows x samples), NaN-aware."""
    out: dict[str, np.ndarray] = {}
    cnt = np.sum(np.isfinite(x), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows (asset stopped) give NaN
        mean = np.nanmean(x, axis=1) if x.size else np.zeros(len(x))
        dev = x - mean[:, None]
        var = np.nanmean(dev * dev, axis=1)
        std = np.sqrt(var)
        if "mean" in which:
            out["mean"] = mean
        if "std" in which:
            out["std"] = std
        if "slope" in which:
            k = np.arange(x.shape[1], dtype=np.float64)
            km = np.where(np.isfinite(x), k, np.nan)
            kc = km - np.nanmean(km, axis=1)[:, None]
            out["slope"] = np.nansum(kc * dev, axis=1) / np.nansum(kc * kc, axis=1)
        rms = np.sqrt(np.nanmean(x * x, axis=1))
        peak = np.nanmax(np.abs(x), axis=1)
        if "rms" in which:
            out["rms"] = rms
        if "peak" in which:
            out["peak"] = peak
        if "kurtosis" in which:
            out["kurtosis"] = np.nanmean(dev**4, axis=1) / np.where(var > 0, var * var, np.nan)
        if "crest" in which:
            out["crest"] = peak / np.where(rms > 0, rms, np.nan)
    for k in out:
        out[k] = np.where(cnt >= 2, out[k], np.nan)
    return out


def band_energy(x: np.ndarray, step_s: float, bands: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """Energy of each row in each frequency band (Hz), from the real FFT of the mean-removed window."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        z = np.nan_to_num(x - np.nanmean(x, axis=1)[:, None])
    spec = np.abs(np.fft.rfft(z, axis=1)) ** 2 / max(x.shape[1], 1)
    f = np.fft.rfftfreq(x.shape[1], d=step_s)
    return [spec[:, (f >= lo) & (f < hi)].sum(axis=1) for lo, hi in bands]


def compute(frame: AssetFrame, spec: FeatureSpec) -> Features:
    """Every window of ``frame`` (aligned to multiples of the window since the epoch)."""
    w = max(2, round(spec.window_s / frame.step_s))
    win_ns = int(w * frame.step_s * NS)
    # align the first window to a whole multiple of the window, so online and offline windows agree
    first = int(-(-int(frame.ts_ns[0]) // win_ns) * win_ns) if len(frame.ts_ns) else 0
    i0 = int(np.searchsorted(frame.ts_ns, first))
    vals = frame.values[:, i0:]
    run = frame.running[i0:] if frame.running is not None else np.ones(vals.shape[1], bool)
    n = vals.shape[1] // w
    t_end = frame.ts_ns[i0:][: n * w : w] + win_ns if n else np.zeros(0, np.int64)
    names: list[str] = []
    sig_of: list[str] = []
    cols: list[np.ndarray] = []
    runw = _windows(run, w).astype(np.float64)
    running_s = runw.sum(axis=1) * frame.step_s
    valid_any = np.zeros(n, bool)
    for j, name in enumerate(frame.names):
        v = vals[j]
        if is_counter(v):
            x = _windows(v, w)
            d = np.diff(x, axis=1)
            d = np.where(d >= 0, d, np.nan)  # a counter reset is not production
            with np.errstate(invalid="ignore"):
                rate = np.nanmean(d, axis=1) * 3600.0 / frame.step_s
            names.append(f"{name}:rate")
            sig_of.append(name)
            cols.append(rate)
            continue
        masked = np.where(run, v, np.nan) if spec.running_only else v
        x = _windows(masked, w)
        ok = np.mean(np.isfinite(x), axis=1) >= MIN_VALID
        valid_any |= ok
        feats = shape_features(x, spec.shape)
        for fname, col in feats.items():
            names.append(f"{name}:{fname}")
            sig_of.append(name)
            cols.append(np.where(ok, col, np.nan))
        for (lo, hi), e in zip(
            spec.bands.get(name, ()), band_energy(x, frame.step_s, spec.bands.get(name, ())), strict=True
        ):
            names.append(f"{name}:band_{lo:g}_{hi:g}Hz")
            sig_of.append(name)
            cols.append(np.where(ok, e, np.nan))
    names.append("running:share")
    sig_of.append("")
    cols.append(running_s / (w * frame.step_s))
    X = np.column_stack(cols) if cols else np.zeros((n, 0))
    return Features(frame.asset, t_end, names, sig_of, X, running_s, valid_any)
