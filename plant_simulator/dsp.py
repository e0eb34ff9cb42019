"""Vectorised signal building blocks: first-order lags, sample-and-hold and run detection.

They replace per-step Python loops so a simulated hour of an asset costs a few numpy calls.
"""

from __future__ import annotations

import math

import numpy as np


def lag(x: np.ndarray, tau_s: float, y0: float, dt: float = 1.0) -> np.ndarray:
    """Exact first-order lag ``y[k] = a*y[k-1] + (1-a)*x[k]`` with ``a = exp(-dt/tau)``.

    Computed with scaled cumulative sums in sub-blocks short enough that ``a**-L`` stays
    below 1e8, so it is exact to float64 rounding and costs O(n) numpy work.
    """
    n = len(x)
    if tau_s <= 0:
        return np.asarray(x, dtype=np.float64).copy()
    a = math.exp(-dt / tau_s)
    L = max(1, min(n, int(math.log(1e8) / -math.log(a))))
    out = np.empty(n, dtype=np.float64)
    k = np.arange(L, dtype=np.float64)
    pw = a**k  # a^k
    inv = 1.0 / pw  # a^-k
    y = float(y0)
    for s in range(0, n, L):
        m = min(L, n - s)
        xs = x[s : s + m]
        acc = np.cumsum(xs * inv[:m])
        seg = a * pw[:m] * y + (1.0 - a) * pw[:m] * acc
        out[s : s + m] = seg
        y = float(seg[-1])
    return out


def hold(event: np.ndarray, values: np.ndarray, carry: float) -> np.ndarray:
    """Sample-and-hold: the value at the last step where ``event`` was true (``carry`` before any)."""
    n = len(event)
    idx = np.where(event, np.arange(1, n + 1), 0)
    np.maximum.accumulate(idx, out=idx)
    ext = np.concatenate(([carry], values))
    return ext[idx]


def rising(mask: np.ndarray, prev: bool) -> np.ndarray:
    """Indices where ``mask`` turns true (``prev`` is the value before the first step)."""
    m = mask.astype(np.int8)
    d = np.diff(m, prepend=np.int8(prev))
    return np.flatnonzero(d == 1)


def ar1(rng: np.random.Generator, n: int, rho: float, sigma: float, y0: float) -> np.ndarray:
    """AR(1) noise with stationary std ``sigma`` (a slowly wandering disturbance)."""
    e = rng.standard_normal(n) * sigma * math.sqrt(1 - rho * rho)
    tau = -1.0 / math.log(rho)
    # y[k] = rho*y[k-1] + e[k]  ==  lag of e/(1-rho) with a = rho
    return lag(e / (1 - rho), tau, y0)
