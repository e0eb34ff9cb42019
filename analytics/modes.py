"""What a failure mode looks like on one kind of asset, learned from logged degradations of that kind.

A Fisher direction says whether a window is degrading; its nearest logged windows say how far along it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.covariance import LedoitWolf

from analytics.rul import RulCalibration

ALPHA = 0.25  # smoothing of the mode index per window (about four windows)
DEGRADED_FROM = 0.5  # progress above which an episode's windows define the mode's direction
MIN_SHIFT = 1.0  # median shift (in healthy robust sigmas) a feature needs in degradation to be used
K_NEIGHBOURS = 25
FLOOR_Q = 0.99  # share of training healthy windows whose smoothed index lies below the floor


@dataclass
class ModeModel:
    """``index = z . w / denom`` is 0 on healthy windows and 1 on the mean degraded window.

    Above ``floor`` (the healthy 99.5 % level of the smoothed index) the progress of a window is the
    mean progress of its ``K_NEIGHBOURS`` nearest windows of logged failures (``ref_X``/``ref_y``), in
    the compressed, smoothed features the mode moves (``cols``): similarity to real degradations,
    which follows features that rise and fall again (bearing kurtosis) where one index cannot.
    """

    mode: str
    names: list[str]
    w: np.ndarray
    denom: float
    floor: float
    cols: np.ndarray  # indexes into names of the features the mode moves
    ref_X: np.ndarray
    ref_y: np.ndarray
    episodes: int  # training episodes it was learned from
    failures: int

    def index(self, z_common: np.ndarray) -> np.ndarray:
        return smooth(z_common @ self.w / self.denom)

    def progress(self, z_common: np.ndarray) -> np.ndarray:
        """Progress estimate in [0, 1] per window of scaled features in ``names`` order."""
        idx = self.index(z_common)
        out = np.zeros(len(idx))
        hot = np.flatnonzero(idx > self.floor)
        if len(hot) and len(self.ref_y):
            q = compress(smooth_cols(z_common[:, self.cols]))[hot]
            out[hot] = knn_mean(q, self.ref_X, self.ref_y, K_NEIGHBOURS)
        return out


def compress(z: np.ndarray) -> np.ndarray:
    """sign * log1p(|z|): hundreds of sigmas and a few sigmas both count, neither dominates."""
    return np.sign(z) * np.log1p(np.abs(z))


def smooth_cols(z: np.ndarray) -> np.ndarray:
    return np.column_stack([smooth(z[:, j]) for j in range(z.shape[1])]) if z.shape[1] else z


def knn_mean(q: np.ndarray, X: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Mean label of the ``k`` nearest reference rows of each query row (Euclidean), in chunks."""
    k = min(k, len(y))
    out = np.empty(len(q))
    for s in range(0, len(q), 512):
        d = ((q[s : s + 512, None, :] - X[None, :, :]) ** 2).sum(axis=2)
        nn = np.argpartition(d, k - 1, axis=1)[:, :k]
        out[s : s + 512] = y[nn].mean(axis=1)
    return out


@dataclass
class KindModel:
    """Everything learned for one asset kind: its failure modes and the alert levels."""

    kind: str
    modes: dict[str, ModeModel] = field(default_factory=dict)
    on: float = 0.35
    off: float = 0.2
    rul: RulCalibration = field(default_factory=RulCalibration)


@dataclass
class TrainingAsset:
    """One labelled asset of a kind, ready for learning: scaled features and per-window labels."""

    asset: str
    names: list[str]
    z: np.ndarray  # windows x features (scaled by the asset's own health model, sensor faults masked)
    valid: np.ndarray
    healthy: np.ndarray  # windows outside every episode and sensor fault
    mode_of: list[str]  # per window: the mode of the episode it lies in, or ''
    progress: np.ndarray  # per window: progress in a failure-ended episode, NaN elsewhere
    late: np.ndarray  # per window: in the degraded part of an episode (failure- or repair-ended)


def common_names(assets: list[TrainingAsset]) -> list[str]:
    names = set(assets[0].names)
    for a in assets[1:]:
        names &= set(a.names)
    return [n for n in assets[0].names if n in names]


def project(a: TrainingAsset, names: list[str]) -> np.ndarray:
    pos = {n: i for i, n in enumerate(a.names)}
    return a.z[:, [pos[n] for n in names]]


def learn_mode(mode: str, assets: list[TrainingAsset], names: list[str]) -> ModeModel | None:
    healthy = np.vstack([project(a, names)[a.healthy & a.valid] for a in assets])
    degraded_parts = [project(a, names)[a.late & a.valid & (np.array(a.mode_of) == mode)] for a in assets]
    degraded = np.vstack(degraded_parts) if degraded_parts else np.zeros((0, len(names)))
    if len(degraded) < 6 or len(healthy) < 24:
        return None
    mu = np.median(degraded, axis=0)
    # only features that move clearly with the degradation: the rest would add noise, not evidence
    moving = np.abs(mu) >= MIN_SHIFT
    if not moving.any():
        return None
    prec = LedoitWolf(assume_centered=True).fit(healthy[:, moving]).precision_
    w = np.zeros(len(names))
    w[moving] = prec @ mu[moving]
    mu = np.where(moving, mu, 0.0)
    denom = float(mu @ w)
    if denom <= 0:
        return None
    cols = np.flatnonzero(moving)
    ref_X, ref_y, floors = [], [], []
    eps = fails = 0
    for a in assets:
        zc = project(a, names)
        idx = smooth(np.where(a.valid, zc @ w / denom, np.nan))
        comp = compress(smooth_cols(zc[:, cols]))
        in_mode = np.array(a.mode_of) == mode
        lab = in_mode & np.isfinite(a.progress) & a.valid
        hv = a.healthy & a.valid
        floors.append(idx[hv])
        ref_X.append(comp[lab])
        ref_y.append(a.progress[lab])
        ref_X.append(comp[hv][:: max(1, int(hv.sum() // 500))])  # healthy references: progress 0
        ref_y.append(np.zeros(len(ref_X[-1])))
        eps += int(np.any(in_mode))
        fails += int(np.any(lab))
    floor = float(np.quantile(np.concatenate(floors), FLOOR_Q)) if floors else 0.0
    return ModeModel(mode, names, w, denom, floor, cols, np.vstack(ref_X), np.concatenate(ref_y), eps, fails)


def smooth(x: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """EWMA that carries the last value over NaN windows (asset stopped)."""
    out = np.empty(len(x))
    y = 0.0
    for i, v in enumerate(x):
        if np.isfinite(v):
            y = alpha * v + (1 - alpha) * y
        out[i] = y
    return out
