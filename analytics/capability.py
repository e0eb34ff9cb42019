"""Process capability: Cp, Cpk (within-subgroup sigma) and Pp, Ppk (overall sigma) with confidence intervals.

Cp/Pp intervals are chi-square intervals, Cpk/Ppk intervals Bissell's (1990) normal approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

from analytics.spc import (
    Baseline,
    SubgroupSigma,
    c4,
    d2,
    d3,
    individuals_baseline,
    subgroup_baseline,
)


# ---------------------------------------------------------------------------------- chi-square quantiles
def chi2_ppf(q: float, dof: float) -> float:
    """Quantile of the chi-square distribution with ``dof`` (> 0, not necessarily integer) degrees of freedom."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"chi-square quantile level must be in (0, 1), got {q}")
    if not (math.isfinite(dof) and dof > 0):
        raise ValueError(f"degrees of freedom must be finite and > 0, got {dof}")
    return float(chi2.ppf(q, dof))


# ------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Interval:
    """An index estimate with its two-sided confidence interval."""

    estimate: float
    lower: float
    upper: float
    confidence: float


@dataclass(frozen=True)
class Indices:
    """One family of indices from one sigma: Cp, Cpk, Cpu, Cpl (within) or Pp, Ppk, Ppu, Ppl (overall).

    ``cp`` is None unless both spec limits are given; ``cpu``/``cpl`` are None without USL/LSL.
    ``dof`` is the (effective) degrees of freedom of the sigma estimate used by the intervals.
    """

    sigma: float
    dof: float
    cp: Interval | None
    cpk: Interval
    cpu: Interval | None
    cpl: Interval | None


@dataclass(frozen=True)
class Capability:
    """Within (Cp, Cpk) and overall (Pp, Ppk) capability of one data set against its spec limits."""

    mean: float
    n: int
    lsl: float | None
    usl: float | None
    sigma_within: float
    within_method: str
    sigma_overall: float
    within: Indices
    overall: Indices
    confidence: float

    @property
    def cp(self) -> Interval | None:
        return self.within.cp

    @property
    def cpk(self) -> Interval:
        return self.within.cpk

    @property
    def pp(self) -> Interval | None:
        return self.overall.cp

    @property
    def ppk(self) -> Interval:
        return self.overall.cpk


# ------------------------------------------------------------------------------------------------- checks


def _spec(lsl: float | None, usl: float | None) -> tuple[float | None, float | None]:
    if lsl is None and usl is None:
        raise ValueError("at least one spec limit (lsl or usl) is required")
    out: list[float | None] = []
    for name, v in (("lsl", lsl), ("usl", usl)):
        if v is not None:
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, got {v!r}") from None
            if not math.isfinite(fv):
                raise ValueError(f"{name} must be finite, got {fv}")
            out.append(fv)
        else:
            out.append(None)
    lo, hi = out
    if lo is not None and hi is not None and lo >= hi:
        raise ValueError(f"spec limits are inverted or equal: lsl={lo} must be < usl={hi}")
    return lo, hi


def _confidence(confidence: float) -> float:
    if not (math.isfinite(confidence) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence}")
    return float(confidence)


# ---------------------------------------------------------------------------------------------- indices


def _bissell(index: float, n: int, dof: float, z: float, confidence: float) -> Interval:
    """Bissell (1990): Ĉpk ± z·√(1/(9n) + Ĉpk²/(2ν)), ν = n − 1 for the sample std."""
    half = z * math.sqrt(1.0 / (9.0 * n) + index * index / (2.0 * dof))
    return Interval(index, index - half, index + half, confidence)


def capability_indices(
    mean: float,
    sigma: float,
    *,
    lsl: float | None = None,
    usl: float | None = None,
    n: int,
    dof: float,
    confidence: float = 0.95,
) -> Indices:
    """Cp = (USL − LSL)/6σ, Cpu = (USL − μ)/3σ, Cpl = (μ − LSL)/3σ, Cpk = min of those defined.

    ``n`` is the number of observations behind ``mean``, ``dof`` the degrees of freedom of ``sigma``
    (n − 1 for a sample standard deviation). Cp interval: Cp·√(χ²(α/2, ν)/ν) .. Cp·√(χ²(1−α/2, ν)/ν).
    Cpk, Cpu, Cpl intervals: Bissell's normal approximation (``_bissell``).
    """
    lo, hi = _spec(lsl, usl)
    confidence = _confidence(confidence)
    for name, v in (("mean", mean), ("sigma", sigma), ("dof", dof)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n}")
    if dof <= 0:
        raise ValueError(f"dof must be > 0, got {dof}")
    alpha = 1.0 - confidence
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    cp = None
    if lo is not None and hi is not None:
        est = (hi - lo) / (6.0 * sigma)
        cp = Interval(
            est,
            est * math.sqrt(chi2_ppf(alpha / 2.0, dof) / dof),
            est * math.sqrt(chi2_ppf(1.0 - alpha / 2.0, dof) / dof),
            confidence,
        )
    cpu = None if hi is None else _bissell((hi - mean) / (3.0 * sigma), int(n), dof, z, confidence)
    cpl = None if lo is None else _bissell((mean - lo) / (3.0 * sigma), int(n), dof, z, confidence)
    sides = [s for s in (cpu, cpl) if s is not None]
    cpk = min(sides, key=lambda s: s.estimate)
    return Indices(sigma=float(sigma), dof=float(dof), cp=cp, cpk=cpk, cpu=cpu, cpl=cpl)


# Cov(MR_i, MR_(i+1))/σ² for consecutive moving ranges of independent normals: the two differences have
# correlation −1/2, and E|U·V| = 2σ²·(2/π)·(√(1−ρ²) + ρ·asin ρ) for U, V ~ N(0, 2σ²).
_MR_LAG1_COV = 2.0 * (2.0 / math.pi) * (math.sqrt(0.75) + math.pi / 12.0) - 4.0 / math.pi


def within_dof(base: Baseline) -> float:
    """Effective degrees of freedom ν of a within-subgroup sigma estimate, ν = 1/(2·CV²) (Patnaik).

    The chi-square interval treats σ̂² as σ²·χ²(ν)/ν, whose CV is ≈ 1/√(2ν); ν is matched to the exact
    variance of the estimator: S̄/c4 → m·c4²/(2(1−c4²)); R̄/d2 → m·d2²/(2·d3²) (≈ 0.9·m(n−1), Duncan);
    MR̄/d2 → d2²·M²/(2(M·d3² + 2(M−1)·γ)) with M = N − 1 moving ranges and γ their lag-1 covariance
    (≈ 0.62·(N − 1)). m subgroups of n, N individuals.
    """
    if base.method == "Sbar/c4":
        cc4 = c4(base.subgroup_size)
        return base.n * cc4 * cc4 / (2.0 * (1.0 - cc4 * cc4))
    if base.method == "Rbar/d2":
        n = base.subgroup_size
        return base.n * d2(n) ** 2 / (2.0 * d3(n) ** 2)
    if base.method == "MRbar/d2":
        m = base.n - 1
        var = (m * d3(2) ** 2 + 2.0 * (m - 1) * _MR_LAG1_COV) / (m * m)
        return d2(2) ** 2 / (2.0 * var)
    raise ValueError(f"no degrees of freedom for a sigma that was {base.method}")


def capability(
    data: npt.ArrayLike,
    *,
    lsl: float | None = None,
    usl: float | None = None,
    sigma_from: SubgroupSigma = "range",
    confidence: float = 0.95,
) -> Capability:
    """Capability of in-control data: individuals (1-D, σ_within = MR̄/1.128) or subgroups (2-D, σ_within
    = R̄/d2 or, with ``sigma_from="std"``, S̄/c4). σ_overall is the sample standard deviation of all values.
    """
    lo, hi = _spec(lsl, usl)
    confidence = _confidence(confidence)
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("data must be numeric") from None
    if arr.ndim == 1:
        base = individuals_baseline(arr, source="capability data")
    elif arr.ndim == 2:
        base = subgroup_baseline(arr, sigma_from=sigma_from, source="capability data")
    else:
        raise ValueError(f"data must be 1-D (individuals) or 2-D (subgroups x size), got {arr.ndim}-D")
    values = arr.ravel()
    n = int(values.size)
    sigma_overall = float(values.std(ddof=1))
    within = capability_indices(
        base.mean, base.sigma, lsl=lo, usl=hi, n=n, dof=within_dof(base), confidence=confidence
    )
    overall = capability_indices(
        base.mean, sigma_overall, lsl=lo, usl=hi, n=n, dof=n - 1, confidence=confidence
    )
    return Capability(
        mean=base.mean,
        n=n,
        lsl=lo,
        usl=hi,
        sigma_within=base.sigma,
        within_method=base.method,
        sigma_overall=sigma_overall,
        within=within,
        overall=overall,
        confidence=confidence,
    )
