"""Control charts for quality engineers: I-MR, X̄-R, X̄-S, EWMA and tabular CUSUM, with their constants.

Limits always come from a stated ``Baseline`` (known values, a separate array or an index range of the data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

SigmaMethod = Literal["MRbar/d2", "Rbar/d2", "Sbar/c4", "stated"]
SubgroupSigma = Literal["range", "std"]

MIN_SUBGROUP_SIZE = 2
MAX_SUBGROUP_SIZE = 25
# Guard rails, not statistics: limits estimated from fewer points are too noisy to judge anything by
# (Montgomery recommends 20-25 subgroups for a Phase I study).
MIN_BASELINE_POINTS = 10
MIN_BASELINE_SUBGROUPS = 5

# d2(n) = E[range of n standard normals] and d3(n) = its standard deviation, n = 2..25, computed here by
# numerical integration of the distribution of the range (scipy.integrate.quad / dblquad, |error| < 1e-9)
# and rounded to 6 decimals; they agree with Montgomery, Appendix VI, to the 3 decimals printed there.
# fmt: off
_D2: dict[int, float] = {
    2: 1.128379, 3: 1.692569, 4: 2.058751, 5: 2.325929, 6: 2.534413, 7: 2.704357, 8: 2.847201,
    9: 2.970026, 10: 3.077505, 11: 3.172873, 12: 3.258455, 13: 3.335980, 14: 3.406763, 15: 3.471827,
    16: 3.531983, 17: 3.587884, 18: 3.640064, 19: 3.688963, 20: 3.734950, 21: 3.778336, 22: 3.819385,
    23: 3.858323, 24: 3.895348, 25: 3.930629,
}
_D3: dict[int, float] = {
    2: 0.852502, 3: 0.888368, 4: 0.879808, 5: 0.864082, 6: 0.848040, 7: 0.833205, 8: 0.819831,
    9: 0.807834, 10: 0.797051, 11: 0.787315, 12: 0.778478, 13: 0.770416, 14: 0.763023, 15: 0.756211,
    16: 0.749908, 17: 0.744052, 18: 0.738591, 19: 0.733481, 20: 0.728686, 21: 0.724173, 22: 0.719915,
    23: 0.715887, 24: 0.712068, 25: 0.708441,
}
# fmt: on


def _check_subgroup_size(n: int) -> int:
    if isinstance(n, bool) or int(n) != n:
        raise ValueError(f"subgroup size must be an integer, got {n!r}")
    n = int(n)
    if not MIN_SUBGROUP_SIZE <= n <= MAX_SUBGROUP_SIZE:
        raise ValueError(
            f"subgroup size {n} is out of the table range {MIN_SUBGROUP_SIZE}..{MAX_SUBGROUP_SIZE} "
            "(for larger subgroups use the X̄-S chart constants from c4, or chart subgroup means as individuals)"
        )
    return n


def c4(n: int) -> float:
    """E[s]/sigma for a sample of n normal values: sqrt(2/(n-1)) * Gamma(n/2) / Gamma((n-1)/2), exact."""
    n = _check_subgroup_size(n)
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


def d2(n: int) -> float:
    """E[R]/sigma for the range R of n normal values (tabulated above, 6 decimals)."""
    return _D2[_check_subgroup_size(n)]


def d3(n: int) -> float:
    """sd(R)/sigma for the range R of n normal values (tabulated above, 6 decimals)."""
    return _D3[_check_subgroup_size(n)]


@dataclass(frozen=True)
class ChartConstants:
    """The Shewhart constants for subgroups of size n, derived from d2, d3 and c4 (not rounded)."""

    n: int
    d2: float
    d3: float
    c4: float
    A2: float  # X̄ limits = X̄̄ ± A2·R̄ = 3/(d2·√n)
    D3: float  # R chart LCL = D3·R̄ = max(0, 1 − 3·d3/d2)
    D4: float  # R chart UCL = D4·R̄ = 1 + 3·d3/d2
    A3: float  # X̄ limits = X̄̄ ± A3·S̄ = 3/(c4·√n)
    B3: float  # S chart LCL = B3·S̄ = max(0, 1 − 3·√(1−c4²)/c4)
    B4: float  # S chart UCL = B4·S̄ = 1 + 3·√(1−c4²)/c4


def constants(n: int) -> ChartConstants:
    """All control chart constants for subgroup size n (2..25)."""
    n = _check_subgroup_size(n)
    dd2, dd3, cc4 = _D2[n], _D3[n], c4(n)
    s_over_c4 = math.sqrt(1.0 - cc4 * cc4) / cc4
    return ChartConstants(
        n=n,
        d2=dd2,
        d3=dd3,
        c4=cc4,
        A2=3.0 / (dd2 * math.sqrt(n)),
        D3=max(0.0, 1.0 - 3.0 * dd3 / dd2),
        D4=1.0 + 3.0 * dd3 / dd2,
        A3=3.0 / (cc4 * math.sqrt(n)),
        B3=max(0.0, 1.0 - 3.0 * s_over_c4),
        B4=1.0 + 3.0 * s_over_c4,
    )


# ---------------------------------------------------------------------------------------------- input checks


_A = TypeVar("_A", bound=np.ndarray)


def _frozen(a: _A) -> _A:
    a.setflags(write=False)
    return a


def _finite_float(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def _as_array(data: npt.ArrayLike, name: str) -> FloatArray:
    try:
        a = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric (a 1-D or 2-D array of numbers)") from None
    if a.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (individuals) or 2-D (subgroups x size), got {a.ndim}-D")
    if a.size and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        where = f"index {int(bad[0])}" if a.ndim == 1 else f"subgroup {int(bad[0])}, position {int(bad[1])}"
        raise ValueError(f"{name} contains a non-finite value (NaN or inf) at {where}")
    return a


def _individuals(data: npt.ArrayLike, name: str, min_points: int) -> FloatArray:
    a = _as_array(data, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D individual values, got shape {a.shape}")
    if a.size < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got {a.size}")
    return a


def _subgroups(data: npt.ArrayLike, name: str, min_subgroups: int) -> FloatArray:
    a = _as_array(data, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (subgroups x subgroup size), got shape {a.shape}")
    _check_subgroup_size(a.shape[1])
    if a.shape[0] < min_subgroups:
        raise ValueError(f"{name} needs at least {min_subgroups} subgroups, got {a.shape[0]}")
    return a


# ----------------------------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class Baseline:
    """The in-control process the limits are computed from: compute once, reuse for every chart.

    ``sigma`` is the standard deviation of one observation; ``spread`` is the statistic it was estimated
    from (MR̄, R̄ or S̄; sigma itself for a stated baseline); ``n`` counts the points or subgroups used.
    """

    mean: float
    sigma: float
    n: int
    subgroup_size: int
    method: SigmaMethod
    spread: float
    source: str

    def __post_init__(self) -> None:
        _finite_float(self.mean, "baseline mean")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"baseline sigma must be finite and > 0, got {self.sigma}")

    def sigma_of_mean(self, n: int) -> float:
        """Standard deviation of the mean of n observations."""
        return self.sigma / math.sqrt(n)


def known_baseline(mean: float, sigma: float, *, source: str = "stated") -> Baseline:
    """A baseline from known (specified or historical) mean and sigma of one observation."""
    return Baseline(
        mean=_finite_float(mean, "mean"),
        sigma=_finite_float(sigma, "sigma"),
        n=0,
        subgroup_size=1,
        method="stated",
        spread=float(sigma),
        source=source,
    )


def individuals_baseline(x: npt.ArrayLike, *, source: str | None = None) -> Baseline:
    """Mean and sigma = MR̄/d2(2) (d2(2) = 1.128) from in-control individual values."""
    a = _individuals(x, "baseline", MIN_BASELINE_POINTS)
    mr_bar = float(np.abs(np.diff(a)).mean())
    if mr_bar == 0.0:
        raise ValueError("baseline has zero spread (all moving ranges are 0): sigma cannot be estimated")
    return Baseline(
        mean=float(a.mean()),
        sigma=mr_bar / _D2[2],
        n=int(a.size),
        subgroup_size=1,
        method="MRbar/d2",
        spread=mr_bar,
        source=source or f"separate array of {a.size} points",
    )


def subgroup_baseline(
    subgroups: npt.ArrayLike, *, sigma_from: SubgroupSigma = "range", source: str | None = None
) -> Baseline:
    """Grand mean and sigma = R̄/d2(n) (``sigma_from="range"``) or S̄/c4(n) (``"std"``) from subgroups."""
    a = _subgroups(subgroups, "baseline", MIN_BASELINE_SUBGROUPS)
    m, n = a.shape
    if sigma_from == "range":
        spread = float(np.ptp(a, axis=1).mean())
        sigma, method = spread / _D2[n], cast(SigmaMethod, "Rbar/d2")
    elif sigma_from == "std":
        spread = float(a.std(axis=1, ddof=1).mean())
        sigma, method = spread / c4(n), cast(SigmaMethod, "Sbar/c4")
    else:
        raise ValueError(f"sigma_from must be 'range' or 'std', got {sigma_from!r}")
    if spread == 0.0:
        raise ValueError("baseline has zero spread (every subgroup is constant): sigma cannot be estimated")
    return Baseline(
        mean=float(a.mean()),
        sigma=sigma,
        n=m,
        subgroup_size=n,
        method=method,
        spread=spread,
        source=source or f"separate array of {m} subgroups of {n}",
    )


BaselineSpec = Baseline | slice | npt.ArrayLike
"""A ``Baseline``; a ``slice`` of the judged data (``slice(0, 25)``: its first 25 points or subgroups);
or a separate array of in-control data. There is no default: the caller always says where limits come from."""


def _resolve(data: FloatArray, baseline: BaselineSpec, sigma_from: SubgroupSigma = "range") -> Baseline:
    if isinstance(baseline, Baseline):
        return baseline
    if baseline is None:
        raise ValueError("a baseline is required: a Baseline, a slice of the data, or a separate array")
    source: str | None = None
    if isinstance(baseline, slice):
        if baseline.step not in (None, 1):
            raise ValueError(f"a baseline index range must be contiguous (step 1), got step {baseline.step}")
        start, stop, _ = baseline.indices(data.shape[0])
        part, source = data[start:stop], f"data[{start}:{stop}]"
    else:
        part = _as_array(baseline, "baseline")
    if part.ndim == 1:
        return individuals_baseline(part, source=source)
    return subgroup_baseline(part, sigma_from=sigma_from, source=source)


# ------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class ControlChart:
    """One Shewhart chart: the plotted statistic, its constant limits and the points beyond them.

    ``index`` is the data point (or subgroup) index of each plotted value; ``out_of_control`` lists those
    indexes where the statistic is strictly above ``ucl`` or below ``lcl``. ``sigma`` is the standard
    deviation of the plotted statistic (what the run rules in ``analytics.spc_rules`` need).
    """

    name: str
    statistic: FloatArray
    index: IntArray
    centre: float
    lcl: float
    ucl: float
    sigma: float
    out_of_control: IntArray


def _shewhart(
    name: str, stat: FloatArray, index: IntArray, centre: float, lcl: float, ucl: float, sigma: float
) -> ControlChart:
    beyond = (stat > ucl) | (stat < lcl)
    return ControlChart(
        name=name,
        statistic=_frozen(stat),
        index=_frozen(index),
        centre=centre,
        lcl=lcl,
        ucl=ucl,
        sigma=sigma,
        out_of_control=_frozen(index[beyond]),
    )


@dataclass(frozen=True, eq=False)
class IMRChart:
    """Individuals chart and moving-range chart (MR_i = |x_i − x_(i−1)|, plotted at index i ≥ 1)."""

    individuals: ControlChart
    moving_range: ControlChart
    baseline: Baseline

    @property
    def out_of_control(self) -> IntArray:
        """Data indexes flagged on either chart."""
        return np.union1d(self.individuals.out_of_control, self.moving_range.out_of_control)


@dataclass(frozen=True, eq=False)
class SubgroupChart:
    """X̄ chart and its spread chart (R or S), indexed by subgroup."""

    xbar: ControlChart
    spread: ControlChart
    subgroup_size: int
    baseline: Baseline

    @property
    def out_of_control(self) -> IntArray:
        """Subgroup indexes flagged on either chart."""
        return np.union1d(self.xbar.out_of_control, self.spread.out_of_control)


@dataclass(frozen=True, eq=False)
class EwmaChart:
    """EWMA z_i = λ·x_i + (1−λ)·z_(i−1), z_0 = baseline mean, with exact (time-varying) limits.

    ``lcl``/``ucl`` are the limits used for ``out_of_control``: exact, or asymptotic when the chart was
    built with ``asymptotic=True``; the asymptotic limits are always given as well.
    """

    statistic: FloatArray
    centre: float
    lcl: FloatArray
    ucl: FloatArray
    sigma_z: FloatArray
    asymptotic_lcl: float
    asymptotic_ucl: float
    lam: float
    L: float
    asymptotic: bool
    out_of_control: IntArray
    baseline: Baseline


@dataclass(frozen=True, eq=False)
class CusumChart:
    """Tabular CUSUM: C+_i = max(0, x_i − (μ0 + K) + C+_(i−1)), C−_i = max(0, (μ0 − K) − x_i + C−_(i−1)).

    K = k·σ and H = h·σ, with σ the standard deviation of one plotted value. ``n_plus``/``n_minus`` count
    the periods since the sum was last zero (they date the start of a shift). The sums are not reset after
    a signal. ``out_of_control`` is every index where C+ > H or C− > H.
    """

    c_plus: FloatArray
    c_minus: FloatArray
    n_plus: IntArray
    n_minus: IntArray
    centre: float
    sigma: float
    k: float
    h: float
    K: float
    H: float
    signals_up: IntArray
    signals_down: IntArray
    out_of_control: IntArray
    baseline: Baseline


# -------------------------------------------------------------------------------------------------- charts


def imr_chart(x: npt.ArrayLike, baseline: BaselineSpec) -> IMRChart:
    """Individuals and moving-range charts of ``x`` with limits from ``baseline``.

    I chart: μ ± 3σ. MR chart: centre MR̄ = d2(2)·σ, UCL = D4(2)·MR̄ = 3.267·MR̄, LCL = 0. With a baseline
    estimated from individuals, σ = MR̄/1.128, so these are the textbook X̄ ± 2.66·MR̄ limits.
    """
    data = _individuals(x, "data", 2)
    base = _resolve(data, baseline)
    mu, sigma = base.mean, base.sigma
    idx = np.arange(data.size, dtype=np.intp)
    ind = _shewhart("individuals", data.copy(), idx, mu, mu - 3 * sigma, mu + 3 * sigma, sigma)
    k = constants(2)
    mr_bar = k.d2 * sigma
    mr = _shewhart(
        "moving range", np.abs(np.diff(data)), idx[1:], mr_bar, k.D3 * mr_bar, k.D4 * mr_bar, k.d3 * sigma
    )
    return IMRChart(individuals=ind, moving_range=mr, baseline=base)


def _subgroup_chart(
    subgroups: npt.ArrayLike, baseline: BaselineSpec, sigma_from: SubgroupSigma
) -> SubgroupChart:
    data = _subgroups(subgroups, "data", 1)
    base = _resolve(data, baseline, sigma_from)
    m, n = data.shape
    k = constants(n)
    mu, sigma = base.mean, base.sigma
    idx = np.arange(m, dtype=np.intp)
    se = sigma / math.sqrt(n)
    # μ ± 3σ/√n is X̄̄ ± A2·R̄ (σ = R̄/d2) or X̄̄ ± A3·S̄ (σ = S̄/c4): the same numbers, from any baseline.
    xbar = _shewhart("xbar", data.mean(axis=1), idx, mu, mu - 3 * se, mu + 3 * se, se)
    if sigma_from == "range":
        r_bar = k.d2 * sigma
        spread = _shewhart(
            "range", np.ptp(data, axis=1), idx, r_bar, k.D3 * r_bar, k.D4 * r_bar, k.d3 * sigma
        )
    else:
        s_bar = k.c4 * sigma
        s_sd = sigma * math.sqrt(1 - k.c4**2)
        spread = _shewhart("stdev", data.std(axis=1, ddof=1), idx, s_bar, k.B3 * s_bar, k.B4 * s_bar, s_sd)
    return SubgroupChart(xbar=xbar, spread=spread, subgroup_size=n, baseline=base)


def xbar_r_chart(subgroups: npt.ArrayLike, baseline: BaselineSpec) -> SubgroupChart:
    """X̄ and R charts of equal-size subgroups (rows), n = 2..25: X̄̄ ± A2·R̄, D3·R̄ .. D4·R̄."""
    return _subgroup_chart(subgroups, baseline, "range")


def xbar_s_chart(subgroups: npt.ArrayLike, baseline: BaselineSpec) -> SubgroupChart:
    """X̄ and S charts of equal-size subgroups (rows), n = 2..25: X̄̄ ± A3·S̄, B3·S̄ .. B4·S̄."""
    return _subgroup_chart(subgroups, baseline, "std")


def _series(data: npt.ArrayLike) -> FloatArray:
    """Individuals (1-D, at least 1 point) or subgroups (2-D, size 2..25, at least 1 subgroup)."""
    arr = _as_array(data, "data")
    return _individuals(arr, "data", 1) if arr.ndim == 1 else _subgroups(arr, "data", 1)


def _plotted(data: FloatArray, base: Baseline) -> tuple[FloatArray, float]:
    """Individuals as they are, subgroups as their means (with σ/√n)."""
    if data.ndim == 1:
        return data, base.sigma
    return data.mean(axis=1), base.sigma_of_mean(data.shape[1])


def _ewma_filter(x: FloatArray, lam: float, z0: float) -> FloatArray:
    """z_i = λ·x_i + (1−λ)·z_(i−1) without a loop per sample.

    Within a block of B samples z_(s+j) = (1−λ)^(j+1)·z_s + λ·(1−λ)^j·Σ_(i≤j) x_(s+i)/(1−λ)^i, a cumulative
    sum; B is chosen so (1−λ)^(−B) stays far from overflow, so the loop runs over blocks only.
    """
    a = 1.0 - lam
    if a == 0.0:
        return x.copy()
    block = max(1, min(x.size, int(600.0 / -math.log(a))))
    j = np.arange(block, dtype=np.float64)
    grow, decay = a**-j, a**j
    out = np.empty_like(x)
    z = z0
    for s in range(0, x.size, block):
        seg = x[s : s + block]
        b = seg.size
        zs = a * decay[:b] * z + lam * decay[:b] * np.cumsum(seg * grow[:b])
        out[s : s + b] = zs
        z = float(zs[-1])
    return out


def ewma_chart(
    data: npt.ArrayLike, baseline: BaselineSpec, *, lam: float = 0.2, L: float = 3.0, asymptotic: bool = False
) -> EwmaChart:
    """EWMA chart of individuals (1-D) or subgroup means (2-D), starting at the baseline mean.

    Exact limits μ0 ± L·σ·√(λ/(2−λ)·(1 − (1−λ)^(2i))), i = 1, 2, ...; ``asymptotic=True`` judges with
    μ0 ± L·σ·√(λ/(2−λ)) instead (what ARL tables such as Lucas & Saccucci's assume).
    """
    lam = _finite_float(lam, "lam")
    L = _finite_float(L, "L")
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"lam must be in (0, 1], got {lam}")
    if L <= 0:
        raise ValueError(f"L must be > 0, got {L}")
    arr = _series(data)
    base = _resolve(arr, baseline)
    x, sigma = _plotted(arr, base)
    mu = base.mean
    z = _ewma_filter(x - mu, lam, 0.0) + mu
    i = np.arange(1, x.size + 1, dtype=np.float64)
    sigma_z = sigma * np.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * i)))
    half_inf = L * sigma * math.sqrt(lam / (2 - lam))
    half = np.full_like(sigma_z, half_inf) if asymptotic else L * sigma_z
    lcl, ucl = mu - half, mu + half
    beyond = np.flatnonzero((z > ucl) | (z < lcl))
    return EwmaChart(
        statistic=_frozen(z),
        centre=mu,
        lcl=_frozen(lcl),
        ucl=_frozen(ucl),
        sigma_z=_frozen(sigma_z),
        asymptotic_lcl=mu - half_inf,
        asymptotic_ucl=mu + half_inf,
        lam=lam,
        L=L,
        asymptotic=asymptotic,
        out_of_control=_frozen(beyond.astype(np.intp)),
        baseline=base,
    )


def _one_sided_cusum(d: FloatArray) -> tuple[FloatArray, IntArray]:
    """C_i = max(0, C_(i−1) + d_i), C_0 = 0, as S_i − min(0, min_(j≤i) S_j) with S the cumulative sum."""
    s = np.cumsum(d)
    c = s - np.minimum(np.minimum.accumulate(s), 0.0)
    idx = np.arange(d.size, dtype=np.intp)
    last_zero = np.maximum.accumulate(np.where(c == 0.0, idx, -1))
    return c, (idx - last_zero).astype(np.intp)


def cusum_chart(data: npt.ArrayLike, baseline: BaselineSpec, *, k: float = 0.5, h: float = 5.0) -> CusumChart:
    """Tabular CUSUM of individuals (1-D) or subgroup means (2-D) around the baseline mean.

    ``k`` and ``h`` are in units of σ of one plotted value; a signal is C+ > h·σ or C− > h·σ.
    """
    k = _finite_float(k, "k")
    h = _finite_float(h, "h")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if h <= 0:
        raise ValueError(f"h must be > 0, got {h}")
    arr = _series(data)
    base = _resolve(arr, baseline)
    x, sigma = _plotted(arr, base)
    mu = base.mean
    K, H = k * sigma, h * sigma
    c_plus, n_plus = _one_sided_cusum(x - (mu + K))
    c_minus, n_minus = _one_sided_cusum((mu - K) - x)
    up = np.flatnonzero(c_plus > H).astype(np.intp)
    down = np.flatnonzero(c_minus > H).astype(np.intp)
    return CusumChart(
        c_plus=_frozen(c_plus),
        c_minus=_frozen(c_minus),
        n_plus=_frozen(n_plus),
        n_minus=_frozen(n_minus),
        centre=mu,
        sigma=sigma,
        k=k,
        h=h,
        K=K,
        H=H,
        signals_up=_frozen(up),
        signals_down=_frozen(down),
        out_of_control=_frozen(np.union1d(up, down).astype(np.intp)),
        baseline=base,
    )
