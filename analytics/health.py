"""One asset's model of its own healthy operation: robust scaling, Mahalanobis anomaly score, sensor checks.

Fitted on the asset's healthy windows only; scores any window, with the features that contribute most.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf

from analytics.dataset import AssetFrame
from analytics.features import Features

Z_CLIP = 200.0  # large: a degradation may move a quiet feature by hundreds of healthy sigmas
MIN_HEALTHY_WINDOWS = 48
SENSOR_KINDS = ("dropout", "stuck", "spikes", "drift")


class NotEnoughData(ValueError):
    """Too little healthy history to fit a model; the message says how much there is and how much is needed."""


@dataclass
class HealthModel:
    """Robust per-feature centre and scale, a shrunk covariance of the healthy scaled features, and the
    per-signal statistics the sensor checks compare against (all numpy arrays, saved without pickle)."""

    asset: str
    kind: str
    names: list[str]  # features used
    signal_of: list[str]
    centre: np.ndarray
    scale: np.ndarray
    precision: np.ndarray
    d2_q: float  # 99.5 % quantile of the healthy d^2 (the score is d^2 / d2_q)
    signals: list[str]  # signals the sensor checks watch
    frozen_ref: np.ndarray  # frozen-run length (steps) that makes a stuck sensor: 3x the healthy longest
    spike_ref: np.ndarray  # the largest single-sample excursion seen in healthy windows
    n_healthy: int

    # -- scaling -----------------------------------------------------------------------------------
    def z(self, feats: Features) -> np.ndarray:
        idx = [feats.names.index(n) if n in feats.names else -1 for n in self.names]
        X = np.column_stack([feats.X[:, i] if i >= 0 else np.full(len(feats.X), np.nan) for i in idx])
        z = (X - self.centre) / self.scale
        return np.clip(np.nan_to_num(z, nan=0.0), -Z_CLIP, Z_CLIP)

    def anomaly(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, contributions): score 1 is the healthy 99.5 % level; contributions sum to d^2."""
        pz = z @ self.precision
        contrib = z * pz
        return contrib.sum(axis=1) / self.d2_q, contrib

    def mask(self, z: np.ndarray, faulty: dict[str, np.ndarray]) -> np.ndarray:
        """``z`` with the features of signals under a sensor fault set to neutral, window by window."""
        out = z.copy()
        for sig, m in faulty.items():
            cols = [j for j, s in enumerate(self.signal_of) if s == sig]
            if cols and m.any():
                out[np.ix_(m, cols)] = 0.0
        return out

    # -- sensor checks -----------------------------------------------------------------------------
    def sensor_checks(self, frame: AssetFrame, feats: Features) -> dict[str, dict[str, np.ndarray]]:
        """Per sensor-fault kind, per signal, a bool per window of ``feats``.

        dropout: under half the samples valid while the asset's other signals report; stuck: no
        movement at all over a running window, for a signal that moves in nearly every healthy running
        window; spikes: isolated samples far off their 5-point median, beyond anything seen in healthy
        windows; drift: the signal's level (smoothed over windows) far outside its healthy range.
        """
        stats = window_stats(frame, feats, self.signals)
        out: dict[str, dict[str, np.ndarray]] = {k: {} for k in SENSOR_KINDS}
        lvl, spread = level_z(self, feats, "mean"), level_z(self, feats, "std")
        for j, s in enumerate(self.signals):
            out["dropout"][s] = stats["gap"][j] >= MIN_GAP_STEPS
            out["stuck"][s] = stats["frozen"][j] >= self.frozen_ref[j]
            out["spikes"][s] = stats["spike"][j] > 2.0 * self.spike_ref[j]
            z, zs = lvl.get(s), spread.get(s)
            if z is None:
                out["drift"][s] = np.zeros(len(feats.t_ns), bool)
            else:
                steady = np.abs(np.nan_to_num(zs)) < 3.0 if zs is not None else True
                level = ewma(
                    np.nan_to_num(z), DRIFT_ALPHA, x0=0.0
                )  # from the healthy centre: a drift builds up
                out["drift"][s] = (np.abs(level) > DRIFT_Z) & steady
        return out


DRIFT_Z = 6.0
DRIFT_ALPHA = 0.05  # the level is smoothed over about a day of hourly windows
# (started at the healthy centre, not at the first window: a scoring window that happens to begin in an
# unusual hour must not read as a drift that has already built up)
MIN_GAP_STEPS = 3  # missing samples in a window (while the others report) that make a dropout
MIN_FROZEN_STEPS = 10


def _window_s(feats: Features) -> float:
    return float(feats.t_ns[1] - feats.t_ns[0]) / 1e9 if len(feats.t_ns) > 1 else 3600.0


def level_z(hm: HealthModel, feats: Features, feature: str = "mean") -> dict[str, np.ndarray]:
    """Each signal's window ``feature`` (over running samples) in healthy-scaled units."""
    out = {}
    for j, n in enumerate(hm.names):
        if n.endswith(":" + feature):
            col = feats.names.index(n) if n in feats.names else -1
            if col >= 0:
                out[hm.signal_of[j]] = np.where(
                    feats.valid, (feats.X[:, col] - hm.centre[j]) / hm.scale[j], np.nan
                )
    return out


def ewma(x: np.ndarray, alpha: float, x0: float | None = None) -> np.ndarray:
    """Exponentially weighted moving average, NaN-tolerant (a NaN keeps the previous value)."""
    out = np.empty(len(x))
    y = float(x[0]) if x0 is None and len(x) else (x0 or 0.0)
    if not np.isfinite(y):
        y = 0.0
    for i, v in enumerate(x):  # a few thousand windows: plain loop is clearer than a scan
        if np.isfinite(v):
            y = alpha * v + (1 - alpha) * y
        out[i] = y
    return out


def longest_run(b: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each row of a (windows x samples) bool matrix."""
    n, w = b.shape
    f = b.astype(np.int64).ravel()
    c = np.cumsum(f)
    marker = np.where(f == 0, c, 0)
    starts = np.arange(0, f.size, w)
    marker[starts] = np.maximum(marker[starts], c[starts] - f[starts])
    return (c - np.maximum.accumulate(marker)).reshape(n, w).max(axis=1)


STATS = ("mean", "spike", "valid", "count", "gap", "frozen")


def window_stats(frame: AssetFrame, feats: Features, signals: list[str]) -> dict[str, np.ndarray]:
    """Per-window, sample-level statistics of ``signals`` on the windows of ``feats``.

    ``gap``: samples missing while most other signals report; ``frozen``: the longest run of running
    samples with exactly no change; ``spike``: the largest single-sample excursion that returns (how far
    a sample stands off both neighbours, less how far the neighbours differ).
    """
    n = len(feats.t_ns)
    k = len(signals)
    res = {key: np.full((k, n), np.nan) for key in STATS}
    if n == 0:
        return res
    w = max(2, round(_window_s(feats) / frame.step_s))
    win_ns = round(w * frame.step_s * 1e9)
    i0 = int(np.searchsorted(frame.ts_ns, feats.t_ns[0] - win_ns))

    def take(arr: np.ndarray, fill: float | bool) -> np.ndarray:
        a = arr[i0 : i0 + n * w]
        if len(a) < n * w:
            a = np.concatenate([a, np.full(n * w - len(a), fill, dtype=a.dtype)])
        return a

    run = take(frame.running, False) if frame.running is not None else np.ones(n * w, bool)
    idx = [frame.names.index(s) for s in signals]
    block = np.vstack([take(frame.values[i], np.nan) for i in idx]) if idx else np.zeros((0, n * w))
    fin_all = np.isfinite(block)
    n_fin = fin_all.sum(axis=0)
    for j in range(k):
        v = block[j]
        fin = fin_all[j]
        others = (n_fin - fin) / max(k - 1, 1) >= 0.9 if k > 1 else np.ones(len(v), bool)
        x = v.reshape(n, w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res["mean"][j] = np.nanmean(np.where(run, v, np.nan).reshape(n, w), axis=1)
            # a spike leaves both neighbours in the same direction and comes back: a step does not
            prev, nxt = np.r_[v[0], v[:-1]], np.r_[v[1:], v[-1]]
            up, down = v - prev, v - nxt
            same = np.sign(up) == np.sign(down)
            back = np.abs(nxt - prev)
            spike = np.where(same, np.minimum(np.abs(up), np.abs(down)) - back, 0.0)
            res["spike"][j] = np.nanmax(np.nan_to_num(spike, nan=0.0).reshape(n, w), axis=1)
            del x
        res["valid"][j] = fin.reshape(n, w).mean(axis=1)
        res["count"][j] = fin.reshape(n, w).sum(axis=1)
        res["gap"][j] = (~fin & others).reshape(n, w).sum(axis=1)
        same = np.r_[False, (np.diff(v) == 0) & run[1:] & run[:-1]]
        res["frozen"][j] = longest_run(same.reshape(n, w))
    return res


def fit(frame: AssetFrame, feats: Features, healthy: np.ndarray) -> HealthModel:
    """Fit on the windows where ``healthy`` (and the features are valid)."""
    h = healthy & feats.valid
    if h.sum() < MIN_HEALTHY_WINDOWS:
        raise NotEnoughData(
            f"{frame.asset}: {int(h.sum())} healthy windows with data; at least {MIN_HEALTHY_WINDOWS} needed"
        )
    X = feats.X[h]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        nan_frac = np.mean(~np.isfinite(X), axis=0)
        centre = np.nanmedian(X, axis=0)
        mad = np.nanmedian(np.abs(X - centre), axis=0) * 1.4826
        sd = np.nanstd(X, axis=0)
    scale = np.where(mad > 0, mad, sd)
    floor = 1e-6 * np.maximum(np.abs(centre), 1.0)
    keep = (nan_frac < 0.2) & np.isfinite(scale) & (scale > floor)
    names = [n for n, k in zip(feats.names, keep, strict=True) if k]
    sig_of = [s for s, k in zip(feats.signal_of, keep, strict=True) if k]
    centre, scale = centre[keep], scale[keep]
    Z = np.clip(np.nan_to_num((X[:, keep] - centre) / scale), -Z_CLIP, Z_CLIP)
    lw = LedoitWolf(assume_centered=True).fit(Z)
    prec = lw.precision_
    d2 = np.einsum("ij,jk,ik->i", Z, prec, Z)
    d2_q = float(np.quantile(d2, 0.995))
    # sensor statistics over the raw signals
    signals = list(frame.names)
    stats = window_stats(frame, feats, signals)
    hs = h & np.all(stats["valid"] >= 0.9, axis=0)
    if hs.sum() < MIN_HEALTHY_WINDOWS // 2:
        hs = h

    def healthy_max(key: str) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmax(np.where(hs, stats[key], np.nan), axis=1)
        return np.where(np.isfinite(m) & (m > 0), m, np.inf)

    spike_ref = healthy_max("spike")
    frozen = np.nanmax(np.where(hs, stats["frozen"], np.nan), axis=1)
    frozen_ref = np.maximum(MIN_FROZEN_STEPS, 3 * np.nan_to_num(frozen))
    return HealthModel(
        frame.asset,
        frame.kind,
        names,
        sig_of,
        centre,
        scale,
        prec,
        d2_q,
        signals,
        frozen_ref,
        spike_ref,
        int(h.sum()),
    )
