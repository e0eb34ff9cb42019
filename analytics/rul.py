"""Remaining useful life from a degradation-progress estimate: a trend fitted in running time, with a band.

Progress 0 is healthy and 1 is failure; the band is the estimate's own spread widened by training errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

X_MIN, X_MAX = 0.15, 0.97  # progress estimates used for the trend (below: noise, above: saturated)
MIN_POINTS = 6
LOOKBACK_H = 7 * 24.0
MAX_RUL_H = 90 * 24.0  # a trend this flat says 'not soon', not a number to plan by


@dataclass(frozen=True)
class RulCalibration:
    """Quantiles of true/predicted RUL on training failures: the point is scaled by ``q50``, the band by q10/q90."""

    q10: float = 0.5
    q50: float = 1.0
    q90: float = 2.0
    n: int = 0


@dataclass(frozen=True)
class Rul:
    hours: float
    low: float
    high: float


NO_RUL = Rul(math.nan, math.nan, math.nan)


def estimate(x: np.ndarray, run_h: np.ndarray, util: float, cal: RulCalibration = RulCalibration()) -> Rul:
    """RUL at the last point of ``x`` (progress per window) over ``run_h`` (running hours, increasing).

    A least-squares line through the recent points with progress in [X_MIN, X_MAX] gives the running
    hours until progress reaches 1; ``util`` (running share of calendar time) turns them into hours.
    """
    if len(x) == 0:
        return NO_RUL
    keep = (run_h >= run_h[-1] - LOOKBACK_H) & (x >= X_MIN) & (x <= X_MAX) & np.isfinite(x)
    if keep.sum() < MIN_POINTS:
        return NO_RUL
    t, y = run_h[keep], x[keep]
    tm = t.mean()
    sxx = float(((t - tm) ** 2).sum())
    if sxx <= 0:
        return NO_RUL
    b = float(((t - tm) * (y - y.mean())).sum() / sxx)
    if b <= 0:
        return NO_RUL
    now = y.mean() + b * (run_h[-1] - tm)
    run_left = max(0.0, (1.0 - min(now, 1.0)) / b)
    hrs = run_left / max(util, 0.05)
    if hrs * cal.q50 > MAX_RUL_H:
        return NO_RUL
    return Rul(hrs * cal.q50, hrs * cal.q10, hrs * cal.q90)
