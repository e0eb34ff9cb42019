"""SPC charts, run rules and capability against textbook examples and hand-computed cases.

Expected figures are worked out in the comments; scipy-computed values are written as literals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from analytics import capability as cap
from analytics import spc
from analytics import spc_rules as rules

# Montgomery, Introduction to Statistical Quality Control, Example 6.1 (Table 6.3 and 6.4): inside
# diameters (mm) of forged piston rings, 40 subgroups of 5; subgroups 1-25 are the Phase I (trial) data.
# The values as distributed with the R package qcc (dataset ``pistonrings``).
PISTON = [
    [74.030, 74.002, 74.019, 73.992, 74.008], [73.995, 73.992, 74.001, 74.011, 74.004],
    [73.988, 74.024, 74.021, 74.005, 74.002], [74.002, 73.996, 73.993, 74.015, 74.009],
    [73.992, 74.007, 74.015, 73.989, 74.014], [74.009, 73.994, 73.997, 73.985, 73.993],
    [73.995, 74.006, 73.994, 74.000, 74.005], [73.985, 74.003, 73.993, 74.015, 73.988],
    [74.008, 73.995, 74.009, 74.005, 74.004], [73.998, 74.000, 73.990, 74.007, 73.995],
    [73.994, 73.998, 73.994, 73.995, 73.990], [74.004, 74.000, 74.007, 74.000, 73.996],
    [73.983, 74.002, 73.998, 73.997, 74.012], [74.006, 73.967, 73.994, 74.000, 73.984],
    [74.012, 74.014, 73.998, 73.999, 74.007], [74.000, 73.984, 74.005, 73.998, 73.996],
    [73.994, 74.012, 73.986, 74.005, 74.007], [74.006, 74.010, 74.018, 74.003, 74.000],
    [73.984, 74.002, 74.003, 74.005, 73.997], [74.000, 74.010, 74.013, 74.020, 74.003],
    [73.988, 74.001, 74.009, 74.005, 73.996], [74.004, 73.999, 73.990, 74.006, 74.009],
    [74.010, 73.989, 73.990, 74.009, 74.014], [74.015, 74.008, 73.993, 74.000, 74.010],
    [73.982, 73.984, 73.995, 74.017, 74.013], [74.012, 74.015, 74.030, 73.986, 74.000],
    [73.995, 74.010, 73.990, 74.015, 74.001], [73.987, 73.999, 73.985, 74.000, 73.990],
    [74.008, 74.010, 74.003, 73.991, 74.006], [74.003, 74.000, 74.001, 73.986, 73.997],
    [73.994, 74.003, 74.015, 74.020, 74.004], [74.008, 74.002, 74.018, 73.995, 74.005],
    [74.001, 74.004, 73.990, 73.996, 73.998], [74.015, 74.000, 74.016, 74.025, 74.000],
    [74.030, 74.005, 74.000, 74.016, 74.012], [74.001, 73.990, 73.995, 74.010, 74.024],
    [74.015, 74.020, 74.024, 74.005, 74.019], [74.035, 74.010, 74.012, 74.015, 74.026],
    [74.017, 74.013, 74.036, 74.025, 74.026], [74.010, 74.005, 74.029, 74.000, 74.020],
]  # fmt: skip

# Montgomery Table 9.1: 20 observations from N(10, 1), then 10 after the mean moved to 11 (Examples 9.1, 9.2).
TABLE_9_1 = [
    9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34, 9.03, 11.47, 10.51, 9.40, 10.08,
    9.37, 10.62, 10.31, 8.52, 10.84, 10.90, 9.33, 12.29, 11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52,
]  # fmt: skip


# ---------------------------------------------------------------------------------------------- constants


@pytest.mark.parametrize(
    ("n", "A2", "D3", "D4", "A3", "B3", "B4", "c4", "d2", "d3"),
    [  # Montgomery, Appendix VI (3 or 4 decimals as printed)
        (2, 1.880, 0.0, 3.267, 2.659, 0.0, 3.267, 0.7979, 1.128, 0.853),
        (5, 0.577, 0.0, 2.114, 1.427, 0.0, 2.089, 0.9400, 2.326, 0.864),
        (10, 0.308, 0.223, 1.777, 0.975, 0.284, 1.716, 0.9727, 3.078, 0.797),
        (25, 0.153, 0.459, 1.541, 0.606, 0.565, 1.435, 0.9896, 3.931, 0.708),
    ],
)
def test_constants_match_the_textbook_table(
    n: int, A2: float, D3: float, D4: float, A3: float, B3: float, B4: float, c4: float, d2: float, d3: float
) -> None:
    k = spc.constants(n)
    for got, want in [
        (k.A2, A2),
        (k.D3, D3),
        (k.D4, D4),
        (k.A3, A3),
        (k.B3, B3),
        (k.B4, B4),
        (k.d2, d2),
        (k.d3, d3),
    ]:
        assert got == pytest.approx(want, abs=5.1e-4)
    assert k.c4 == pytest.approx(c4, abs=5.1e-5)


def test_c4_is_exact() -> None:
    # c4(2) = sqrt(2/pi); c4(3) = sqrt(pi)/2; c4(4) = 2*sqrt(2/(3*pi)) (Gamma(2)/Gamma(3/2) = 2/sqrt(pi)).
    assert spc.c4(2) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-15)
    assert spc.c4(3) == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-15)
    assert spc.c4(4) == pytest.approx(2 * math.sqrt(2 / (3 * math.pi)), rel=1e-15)


def test_d2_table_matches_numerical_integration() -> None:
    # d2(n) = ∫ 1 − Φ(x)^n − (1 − Φ(x))^n dx, integrated here independently of the table.
    x = np.linspace(-12.0, 12.0, 240_001)
    phi = 0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in x])
    for n in range(2, 26):
        f = 1.0 - phi**n - (1.0 - phi) ** n
        integral = float(np.sum((f[1:] + f[:-1]) / 2.0) * (x[1] - x[0]))
        assert spc.d2(n) == pytest.approx(integral, abs=1e-6)


def test_subgroup_size_outside_the_table_is_refused() -> None:
    for n in (1, 26):
        with pytest.raises(ValueError, match=r"out of the table range 2\.\.25"):
            spc.constants(n)
    with pytest.raises(ValueError, match="out of the table range"):
        spc.xbar_r_chart(np.ones((30, 26)), spc.known_baseline(1.0, 1.0))


# ------------------------------------------------------------------------------------------ X̄-R, X̄-S


def test_piston_rings_xbar_r_limits_match_montgomery_example_6_1() -> None:
    chart = spc.xbar_r_chart(PISTON, slice(0, 25))
    b = chart.baseline
    # Σ x̄ = 1850.0294, Σ R = 0.569 over the 25 trial subgroups: X̄̄ = 74.001176, R̄ = 0.02276.
    assert b.mean == pytest.approx(74.001176, abs=1e-9)
    assert b.spread == pytest.approx(0.02276, abs=1e-12)
    assert b.method == "Rbar/d2" and b.n == 25 and b.subgroup_size == 5 and b.source == "data[0:25]"
    # The book: X̄̄ = 74.001, R̄ = 0.023, UCL = 74.014, LCL = 73.988 (to the 3 decimals printed).
    assert round(chart.xbar.centre, 3) == 74.001
    assert round(b.spread, 3) == 0.023
    assert round(chart.xbar.ucl, 3) == 74.014
    assert round(chart.xbar.lcl, 3) == 73.988
    # X̄̄ ± A2·R̄ with the exact A2 = 3/(d2·√5).
    a2 = 3 / (2.325929 * math.sqrt(5))
    assert chart.xbar.ucl == pytest.approx(74.001176 + a2 * 0.02276, abs=1e-9)
    # R chart: D4·R̄ = 2.1145 × 0.02276 = 0.04813; the book's 0.049 is 2.114 × (R̄ rounded to 0.023).
    assert chart.spread.ucl == pytest.approx(0.048126, abs=1e-6)
    assert round(2.114 * 0.023, 3) == 0.049
    assert chart.spread.lcl == 0.0
    # Phase II: subgroups 37, 38, 39 (1-based) plot above the UCL (x̄ = 74.0166, 74.0196, 74.0234).
    assert chart.xbar.out_of_control.tolist() == [36, 37, 38]
    assert chart.spread.out_of_control.tolist() == []


def test_piston_rings_xbar_s_uses_sbar_over_c4() -> None:
    chart = spc.xbar_s_chart(PISTON, slice(0, 25))
    s_bar = float(np.std(np.array(PISTON[:25]), axis=1, ddof=1).mean())
    assert chart.baseline.method == "Sbar/c4"
    assert chart.baseline.sigma == pytest.approx(s_bar / spc.c4(5), rel=1e-12)
    assert chart.xbar.ucl == pytest.approx(74.001176 + 3 / (spc.c4(5) * math.sqrt(5)) * s_bar, abs=1e-9)
    assert chart.spread.ucl == pytest.approx(spc.constants(5).B4 * s_bar, rel=1e-12)
    assert round(chart.xbar.ucl, 3) == 74.014 and round(chart.xbar.lcl, 3) == 73.988
    assert chart.xbar.out_of_control.tolist() == [36, 37, 38]


# Five subgroups of 5 with hand-picked means and ranges: x̄ = 10, 11, 9, 10, 10 → X̄̄ = 10;
# R = 2, 2, 2, 3, 1 → R̄ = 2.
HAND_SUBGROUPS = [
    [9.0, 10.0, 10.0, 10.0, 11.0],
    [10.0, 11.0, 11.0, 11.0, 12.0],
    [8.0, 9.0, 9.0, 9.0, 10.0],
    [8.5, 10.0, 10.0, 10.0, 11.5],
    [9.5, 10.0, 10.0, 10.0, 10.5],
]


def test_hand_computed_xbar_r_chart() -> None:
    base = spc.subgroup_baseline(HAND_SUBGROUPS)
    assert base.mean == 10.0 and base.spread == 2.0
    assert base.sigma == pytest.approx(2.0 / 2.325929)  # R̄/d2(5) = 0.85987
    judged = [*HAND_SUBGROUPS, [11.0, 12.0, 12.0, 12.0, 13.0]]  # x̄ = 12, R = 2
    chart = spc.xbar_r_chart(judged, base)
    # Textbook constants: UCL = 10 + 0.577·2 = 11.154, LCL = 8.846; R chart: D4·R̄ = 2.114·2 = 4.228, LCL 0.
    assert chart.xbar.ucl == pytest.approx(11.154, abs=1e-3)
    assert chart.xbar.lcl == pytest.approx(8.846, abs=1e-3)
    assert chart.spread.centre == pytest.approx(2.0)
    assert chart.spread.ucl == pytest.approx(4.228, abs=1e-3)
    assert chart.spread.lcl == 0.0
    assert chart.xbar.statistic.tolist() == [10.0, 11.0, 9.0, 10.0, 10.0, 12.0]
    assert chart.spread.statistic.tolist() == [2.0, 2.0, 2.0, 3.0, 1.0, 2.0]
    assert chart.xbar.out_of_control.tolist() == [5]  # 12 > 11.154
    assert chart.out_of_control.tolist() == [5]
    assert chart.xbar.sigma == pytest.approx(base.sigma / math.sqrt(5))


def test_hand_computed_xbar_s_chart() -> None:
    # Every subgroup is a shift of (−1, 0, 0, 0, +1): s = √(2/4) = 0.70711, S̄ = 0.70711, x̄ = 10, 11, 9, 10, 10.
    groups = [[m - 1, m, m, m, m + 1] for m in (10.0, 11.0, 9.0, 10.0, 10.0)]
    chart = spc.xbar_s_chart(groups, spc.subgroup_baseline(groups, sigma_from="std"))
    s_bar = math.sqrt(0.5)
    # UCL = 10 + A3·S̄ = 10 + 1.427·0.70711 = 11.009; S chart UCL = B4·S̄ = 2.089·0.70711 = 1.477, LCL = 0.
    assert chart.xbar.ucl == pytest.approx(11.009, abs=1e-3)
    assert chart.xbar.lcl == pytest.approx(8.991, abs=1e-3)
    assert chart.spread.centre == pytest.approx(s_bar)
    assert chart.spread.ucl == pytest.approx(1.477, abs=1e-3)
    assert chart.spread.lcl == 0.0
    assert chart.out_of_control.tolist() == []


# --------------------------------------------------------------------------------------------------- I-MR


def test_hand_computed_imr_chart() -> None:
    # Baseline 10, 12, 10, 12, ...: mean 11, every moving range 2 → MR̄ = 2, σ = 2/1.128379 = 1.77245.
    base = spc.individuals_baseline([10.0, 12.0] * 5)
    assert base.mean == 11.0 and base.spread == 2.0
    assert base.sigma == pytest.approx(2.0 / 1.128379)
    assert base.method == "MRbar/d2"
    chart = spc.imr_chart([11.0, 17.0, 11.0, 4.0], base)
    # I chart: 11 ± 3·1.77245 = 11 ± 5.3174 → 5.6826 .. 16.3174 (the rounded 2.66·MR̄ gives 11 ± 5.32).
    # MR chart: D4(2)·MR̄ = 3.2665·2 = 6.533, LCL 0.
    assert chart.individuals.ucl == pytest.approx(16.3174, abs=1e-4)
    assert chart.individuals.lcl == pytest.approx(5.6826, abs=1e-4)
    assert chart.individuals.ucl == pytest.approx(11 + 2.66 * 2, abs=3e-3)
    assert chart.moving_range.centre == pytest.approx(2.0)
    assert chart.moving_range.ucl == pytest.approx(6.533, abs=1e-3)
    assert chart.moving_range.lcl == 0.0
    # MR = 6, 6, 7 at data indexes 1, 2, 3; only 7 > 6.533. Individuals: 17 > UCL, 4 < LCL.
    assert chart.moving_range.statistic.tolist() == [6.0, 6.0, 7.0]
    assert chart.moving_range.index.tolist() == [1, 2, 3]
    assert chart.moving_range.out_of_control.tolist() == [3]
    assert chart.individuals.out_of_control.tolist() == [1, 3]
    assert chart.out_of_control.tolist() == [1, 3]


def test_results_are_read_only() -> None:
    chart = spc.imr_chart([11.0, 12.0], spc.known_baseline(11.0, 1.0))
    with pytest.raises(ValueError):
        chart.individuals.statistic[0] = 0.0


# ------------------------------------------------------------------------------------------------ baseline


def _in_control_then_shifted(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(50.0, 2.0, 60), rng.normal(50.0 + 2 * 4.0, 2.0, 20)])


def test_limits_come_from_the_baseline_and_a_shifted_segment_is_flagged() -> None:
    x = _in_control_then_shifted()
    chart = spc.imr_chart(x, slice(0, 60))
    assert chart.baseline.source == "data[0:60]" and chart.baseline.n == 60
    flagged = chart.individuals.out_of_control
    assert flagged.size >= 15 and (flagged >= 60).all()  # a 4σ shift: (nearly) every shifted point
    # Judged against the same baseline given as a separate array: identical limits.
    again = spc.imr_chart(x, x[:60])
    assert (again.individuals.lcl, again.individuals.ucl) == (chart.individuals.lcl, chart.individuals.ucl)


def test_judging_different_data_does_not_move_the_limits() -> None:
    x = _in_control_then_shifted()
    base = spc.individuals_baseline(x[:60])
    a = spc.imr_chart(x[60:], base)
    b = spc.imr_chart(x[:60] + 100.0, base)
    limits = [(c.individuals.lcl, c.individuals.ucl, c.moving_range.ucl) for c in (a, b)]
    assert limits[0] == limits[1]
    ewma_a = spc.ewma_chart(x[60:], base, lam=0.2, L=3.0)
    ewma_b = spc.ewma_chart(x[:20] - 5.0, base, lam=0.2, L=3.0)
    assert np.array_equal(ewma_a.ucl, ewma_b.ucl)
    assert spc.cusum_chart(x[60:], base).H == spc.cusum_chart(x[:5], base).H


def test_a_self_baseline_only_when_the_caller_passes_the_same_array() -> None:
    x = _in_control_then_shifted()
    own = spc.imr_chart(x, x)  # explicit: the shift inflates σ and drags the mean
    stated = spc.imr_chart(x, slice(0, 60))
    assert own.baseline.mean > stated.baseline.mean
    assert own.individuals.out_of_control.size < stated.individuals.out_of_control.size
    with pytest.raises(ValueError, match="a baseline is required"):
        spc.imr_chart(x, None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- EWMA, CUSUM


def test_ewma_matches_montgomery_example_9_2_by_hand() -> None:
    chart = spc.ewma_chart(TABLE_9_1, spc.known_baseline(10.0, 1.0), lam=0.1, L=2.7)
    # z1 = 0.1·9.45 + 0.9·10 = 9.945; z2 = 0.1·7.99 + 0.9·9.945 = 9.7495.
    assert chart.statistic[:2] == pytest.approx([9.945, 9.7495], abs=1e-12)
    # UCL1 = 10 + 2.7·√(0.1/1.9·(1 − 0.9²)) = 10 + 2.7·0.1 = 10.27; UCL2 = 10 + 2.7·√(0.1/1.9·(1 − 0.9⁴)) = 10.3632.
    assert chart.ucl[:2] == pytest.approx([10.27, 10.36325], abs=1e-5)
    assert chart.lcl[0] == pytest.approx(9.73, abs=1e-12)
    # Asymptotic: 10 ± 2.7·√(0.1/1.9) = 10 ± 0.61942.
    assert chart.asymptotic_ucl == pytest.approx(10.61942, abs=1e-5)
    z, ref = 10.0, []
    for v in TABLE_9_1:
        z = 0.1 * v + 0.9 * z
        ref.append(z)
    assert chart.statistic == pytest.approx(ref, abs=1e-12)
    # z29 = 10.6468 > UCL29 = 10.6187 and z30 = 10.6341 > 10.6189: the shift at 21 is caught at 29.
    assert chart.out_of_control.tolist() == [28, 29]
    assert spc.ewma_chart(TABLE_9_1, spc.known_baseline(10.0, 1.0), lam=0.1, L=2.7, asymptotic=True).ucl[
        0
    ] == pytest.approx(10.61942, abs=1e-5)


def test_ewma_of_a_long_series_equals_the_recursion() -> None:
    x = np.random.default_rng(3).normal(size=20_000)
    for lam in (0.02, 0.3, 0.95, 1.0):
        z, ref = 0.0, np.empty_like(x)
        for i, v in enumerate(x):
            z = lam * v + (1 - lam) * z
            ref[i] = z
        got = spc.ewma_chart(x, spc.known_baseline(0.0, 1.0), lam=lam).statistic
        assert np.max(np.abs(got - ref)) < 1e-12


def test_cusum_matches_montgomery_table_9_2() -> None:
    chart = spc.cusum_chart(TABLE_9_1, spc.known_baseline(10.0, 1.0), k=0.5, h=5.0)
    # C+ for periods 1..29 as tabulated by Montgomery (Table 9.2), 2 decimals.
    upper = [
        0.0, 0.0, 0.0, 1.16, 2.82, 2.50, 0.04, 1.00, 0.0, 0.0, 0.0, 0.97, 0.98, 0.0, 0.0,
        0.0, 0.12, 0.0, 0.0, 0.34, 0.74, 0.0, 1.79, 2.79, 2.89, 3.47, 3.35, 4.47, 5.28,
    ]  # fmt: skip
    assert chart.c_plus[:29] == pytest.approx(upper, abs=0.005)
    # First signal at period 29 (C+ = 5.28 > H = 5), N+ = 7: the shift began after period 22.
    assert chart.signals_up.tolist() == [28, 29]
    assert chart.n_plus[28] == 7
    assert chart.signals_down.tolist() == []
    assert chart.out_of_control.tolist() == [28, 29]
    # C−_1 = max(0, 9.5 − 9.45) = 0.05; C−_2 = 0.05 + 9.5 − 7.99 = 1.56.
    assert chart.c_minus[:2] == pytest.approx([0.05, 1.56], abs=1e-12)
    assert (chart.K, chart.H) == (0.5, 5.0)


def test_ewma_and_cusum_chart_subgroup_means() -> None:
    # 2-D data are charted as subgroup means with σ/√n.
    base = spc.subgroup_baseline(PISTON[:25])
    e = spc.ewma_chart(PISTON, base, lam=0.2, L=3.0)
    c = spc.cusum_chart(PISTON, base)
    assert e.statistic[0] == pytest.approx(0.2 * np.mean(PISTON[0]) + 0.8 * base.mean)
    assert c.sigma == pytest.approx(base.sigma / math.sqrt(5))
    assert e.out_of_control.size and (e.out_of_control >= 25).all()
    assert c.signals_up.size and (c.signals_up >= 25).all()


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: spc.individuals_baseline([1.0, 2.0, 3.0]), "at least 10 points"),
        (lambda: spc.subgroup_baseline([[1.0, 2.0]] * 3), "at least 5 subgroups"),
        (lambda: spc.individuals_baseline([1.0, math.nan] * 10), "non-finite value .* at index 1"),
        (
            lambda: spc.xbar_r_chart([[1.0, 2.0], [1.0, math.inf]], spc.known_baseline(1, 1)),
            "subgroup 1, position 1",
        ),
        (lambda: spc.individuals_baseline([5.0] * 12), "zero spread"),
        (lambda: spc.known_baseline(1.0, 0.0), "sigma must be finite and > 0"),
        (lambda: spc.known_baseline(math.nan, 1.0), "mean must be finite"),
        (lambda: spc.imr_chart([1.0], spc.known_baseline(1, 1)), "at least 2 points"),
        (lambda: spc.imr_chart(np.ones((3, 3)), spc.known_baseline(1, 1)), "must be 1-D"),
        (lambda: spc.xbar_r_chart([1.0, 2.0, 3.0], spc.known_baseline(1, 1)), "must be 2-D"),
        (lambda: spc.imr_chart(np.ones((2, 2, 2)), spc.known_baseline(1, 1)), "got 3-D"),
        (lambda: spc.imr_chart(["a", "b"], spc.known_baseline(1, 1)), "must be numeric"),
        (lambda: spc.imr_chart(np.arange(20.0), slice(0, 20, 2)), "contiguous"),
        (lambda: spc.imr_chart(np.arange(20.0), slice(0, 4)), "at least 10 points"),
        (lambda: spc.ewma_chart([1.0], spc.known_baseline(1, 1), lam=0.0), "lam must be in"),
        (lambda: spc.ewma_chart([1.0], spc.known_baseline(1, 1), L=-1), "L must be > 0"),
        (lambda: spc.ewma_chart([], spc.known_baseline(1, 1)), "at least 1 point"),
        (lambda: spc.cusum_chart([1.0], spc.known_baseline(1, 1), h=0.0), "h must be > 0"),
        (lambda: spc.cusum_chart([1.0], spc.known_baseline(1, 1), k=-0.5), "k must be >= 0"),
        (lambda: spc.subgroup_baseline(HAND_SUBGROUPS, sigma_from="mad"), "sigma_from must be"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# -------------------------------------------------------------------------------------------------- rules


def _fired(rule_id: str, x: list[float], sigma: float = 1.0) -> list[int]:
    (result,) = rules.evaluate(x, 0.0, sigma, [rule_id])
    return result.indexes.tolist()


def test_rule_1_one_point_beyond_3_sigma() -> None:
    for rid in ("N1", "WE1"):
        assert _fired(rid, [0.0, 0.0, 3.5, 0.0, -3.2]) == [2, 4]
        assert _fired(rid, [0.0, 3.0, -3.0, 2.9]) == []  # on the limit is not beyond it


def test_nelson_2_nine_in_a_row_on_one_side() -> None:
    assert _fired("N2", [-0.5] + [0.5] * 9) == [9]
    assert _fired("N2", [-0.5] + [0.5] * 8) == []  # 8 in a row: near miss
    assert _fired("N2", [-0.5] * 10) == [8, 9]  # every point completing a run of 9
    assert _fired("N2", [0.5] * 4 + [0.0] + [0.5] * 4) == []  # a point on the centre line breaks it


def test_western_electric_4_eight_in_a_row_on_one_side() -> None:
    assert _fired("WE4", [0.3] + [-0.2] * 8) == [8]
    assert _fired("WE4", [0.3] + [-0.2] * 7) == []


def test_nelson_3_six_in_a_row_increasing_or_decreasing() -> None:
    assert _fired("N3", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]) == [5]
    assert _fired("N3", [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]) == [5]
    assert _fired("N3", [0.4, 0.0, 0.1, 0.2, 0.3, 0.35]) == []  # 5 increasing: near miss
    assert _fired("N3", [0.0, 0.1, 0.1, 0.2, 0.3, 0.4]) == []  # a tie breaks the trend


def test_nelson_4_fourteen_alternating() -> None:
    assert _fired("N4", [0.5, -0.5] * 7) == [13]
    assert _fired("N4", [0.5, -0.5] * 6 + [0.5]) == []  # 13 alternating: near miss
    assert _fired("N4", [0.5, -0.5] * 3 + [-0.7] + [0.5, -0.5] * 4) == []  # two downs in a row


def test_two_of_three_beyond_2_sigma_same_side() -> None:
    for rid in ("N5", "WE2"):
        # Window (2.5, 2.2) completes at index 3; the window ending at 4 holds two too, but 0 is not one.
        assert _fired(rid, [0.0, 0.0, 2.5, 2.2, 0.0]) == [3]
        assert _fired(rid, [0.0, -2.5, 0.0, -2.1]) == [3]
        assert _fired(rid, [0.0, 0.0, 2.5, -2.5, 0.0]) == []  # opposite sides: near miss
        assert _fired(rid, [2.5, 0.0, 0.0, 2.5]) == []  # 2 of 4


def test_four_of_five_beyond_1_sigma_same_side() -> None:
    for rid in ("N6", "WE3"):
        assert _fired(rid, [0.0, 1.5, 1.5, 0.0, 1.5, 1.5]) == [5]
        assert _fired(rid, [0.0, 1.5, 0.0, 0.0, 1.5, 1.5]) == []  # 3 of 5
        assert _fired(rid, [0.0, 1.5, -1.5, 1.5, 1.5, 0.0]) == []  # 4 beyond 1σ, but not on one side


def test_nelson_7_fifteen_within_1_sigma() -> None:
    hugging = [0.2, -0.3, 0.1, -0.1, 0.4, -0.2, 0.3, 0.0, -0.4, 0.2, 0.1, -0.3, 0.5, -0.1, 0.2]
    assert _fired("N7", [1.5, *hugging]) == [15]
    assert _fired("N7", [1.5, *hugging[:14]]) == []  # 14: near miss
    assert _fired("N7", [*hugging[:7], 1.0, *hugging[7:]]) == []  # exactly 1σ is not within


def test_nelson_8_eight_with_none_within_1_sigma() -> None:
    mixture = [1.5, -1.2, -2.0, 1.1, 1.8, -1.4, 2.2, -1.6]
    assert _fired("N8", [0.0, *mixture]) == [8]
    assert _fired("N8", [0.0, *mixture[:7]]) == []  # 7: near miss
    assert _fired("N8", [*mixture[:4], 0.5, *mixture[4:]]) == []


def test_rule_sets_descriptions_and_sigma_scaling() -> None:
    assert [r.rule_id for r in rules.WESTERN_ELECTRIC] == ["WE1", "WE2", "WE3", "WE4"]
    assert [r.rule_id for r in rules.NELSON] == [f"N{i}" for i in range(1, 9)]
    assert rules.RULES["N2"].description_zh == "连续9点落在中心线同一侧"
    assert rules.RULES["N3"].description_zh == "连续6点递增或递减"
    assert all(r.description and r.description_zh for r in rules.RULES.values())
    # A statistic with centre 10 and σ 0.5: 11.6 is 3.2σ out.
    results = rules.nelson([10.0, 11.6, 10.1], 10.0, 0.5)
    assert len(results) == 8 and results[0].triggered and results[0].indexes.tolist() == [1]
    assert not any(r.triggered for r in results[1:])
    assert rules.flagged(results).tolist() == [1]
    assert [r.rule_id for r in rules.western_electric([0.0] * 3, 0.0, 1.0)] == ["WE1", "WE2", "WE3", "WE4"]


def test_rules_on_an_xbar_chart_use_the_sigma_of_the_mean() -> None:
    chart = spc.xbar_r_chart(PISTON, slice(0, 25))
    fired = rules.nelson(chart.xbar.statistic, chart.xbar.centre, chart.xbar.sigma)
    assert fired[0].indexes.tolist() == chart.xbar.out_of_control.tolist()  # N1 is the 3σ limit
    assert set(rules.flagged(fired).tolist()) >= {36, 37, 38}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([], 0.0, 1.0), "non-empty 1-D"),
        (([1.0, math.nan], 0.0, 1.0), "non-finite value at index 1"),
        (([1.0, 2.0], 0.0, 0.0), "sigma .* must be > 0"),
        (([1.0, 2.0], 0.0, [1.0, 1.0, 1.0]), "sigma must be a number or an array as long"),
        (([1.0, 2.0], math.inf, 1.0), "centre must be finite"),
    ],
)
def test_rules_refuse_bad_input(args: tuple[Any, Any, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules.nelson(*args)
    with pytest.raises(ValueError, match="unknown rule id 'N9'"):
        rules.evaluate([1.0], 0.0, 1.0, ["N9"])


# -------------------------------------------------------------------------------------------- capability


def test_cpk_hand_example() -> None:
    # mean 10.0, σ 0.1, LSL 9.7, USL 10.4: Cp = 0.7/0.6 = 1.1667, Cpu = 0.4/0.3 = 1.3333,
    # Cpl = 0.3/0.3 = 1.0 → Cpk = 1.0.
    idx = cap.capability_indices(10.0, 0.1, lsl=9.7, usl=10.4, n=50, dof=49)
    assert idx.cp is not None and idx.cpu is not None and idx.cpl is not None
    assert idx.cp.estimate == pytest.approx(1.166667, abs=1e-6)
    assert idx.cpu.estimate == pytest.approx(1.333333, abs=1e-6)
    assert idx.cpk.estimate == pytest.approx(1.0, abs=1e-12)
    assert idx.cpk is idx.cpl
    # Chi-square interval, ν = 49: scipy.stats.chi2.ppf(0.025, 49) = 31.554916462667126,
    # chi2.ppf(0.975, 49) = 70.22241356643451 → 1.16667·√(31.5549/49) .. 1.16667·√(70.2224/49).
    assert idx.cp.lower == pytest.approx(7 / 6 * math.sqrt(31.554916462667126 / 49), rel=1e-12)
    assert idx.cp.upper == pytest.approx(7 / 6 * math.sqrt(70.22241356643451 / 49), rel=1e-12)
    assert (round(idx.cp.lower, 4), round(idx.cp.upper, 4)) == (0.9362, 1.3966)
    # Bissell: 1 ± 1.959964·√(1/(9·50) + 1/(2·49)) = 1 ± 1.959964·0.111473 = 0.7815 .. 1.2185.
    assert idx.cpk.lower == pytest.approx(1 - 1.959963984540054 * math.sqrt(1 / 450 + 1 / 98), rel=1e-12)
    assert (round(idx.cpk.lower, 4), round(idx.cpk.upper, 4)) == (0.7815, 1.2185)
    assert idx.cpk.confidence == 0.95


def test_one_sided_specs() -> None:
    upper_only = cap.capability_indices(10.0, 0.1, usl=10.4, n=50, dof=49)
    assert upper_only.cp is None and upper_only.cpl is None
    assert upper_only.cpk.estimate == pytest.approx(4 / 3)
    lower_only = cap.capability_indices(10.0, 0.1, lsl=9.7, n=50, dof=49)
    assert lower_only.cp is None and lower_only.cpu is None
    assert lower_only.cpk.estimate == pytest.approx(1.0)
    data = np.random.default_rng(5).normal(10.0, 0.1, 100)
    c = cap.capability(data, usl=10.4)
    assert c.cp is None and c.pp is None and c.within.cpu is c.cpk


def test_piston_ring_capability() -> None:
    # Montgomery Example 6.1, specs 74.000 ± 0.05 mm: Ĉp = 0.10/(6·σ̂), σ̂ = R̄/d2 = 0.02276/2.326 = 0.00979.
    # (The book prints Ĉp = 1.68 from the rounded σ̂ = 0.023/2.326 = 0.0099.)
    c = cap.capability(PISTON[:25], lsl=73.95, usl=74.05)
    assert c.within_method == "Rbar/d2" and c.n == 125
    assert c.sigma_within == pytest.approx(0.02276 / 2.325929, rel=1e-12)
    assert c.cp is not None and c.cp.estimate == pytest.approx(0.10 / (6 * 0.02276 / 2.325929), rel=1e-9)
    assert round(0.10 / (6 * 0.0099), 2) == 1.68
    assert c.cpk.estimate == pytest.approx((74.05 - 74.001176) / (3 * c.sigma_within), rel=1e-9)
    # Effective dof of R̄/d2 over 25 subgroups of 5: 25·d2²/(2·d3²) = 90.5718; scipy chi2.ppf with that ν:
    assert c.within.dof == pytest.approx(90.57180097695965, rel=1e-9)
    assert c.cp.lower == pytest.approx(1.4554313341783076, rel=1e-9)
    assert c.cp.upper == pytest.approx(1.950602212449469, rel=1e-9)
    # Pp from the overall sample std (0.010069968 over 125 values), chi-square with ν = 124:
    assert c.sigma_overall == pytest.approx(0.010069968126291413, rel=1e-12)
    assert c.pp is not None and c.pp.estimate == pytest.approx(0.1 / (6 * 0.010069968126291413), rel=1e-12)
    assert c.pp.lower == pytest.approx(1.4492114654252584, rel=1e-9)
    assert c.pp.upper == pytest.approx(1.860646425148877, rel=1e-9)
    assert c.ppk.estimate == pytest.approx((74.05 - 74.001176) / (3 * 0.010069968126291413), rel=1e-9)


def test_individuals_capability_uses_mrbar_and_its_effective_dof() -> None:
    data = [10.0, 12.0] * 10  # MR̄ = 2 → σ_within = 1.77245; N = 20
    c = cap.capability(data, lsl=0.0, usl=22.0)
    assert c.within_method == "MRbar/d2"
    assert c.sigma_within == pytest.approx(2 / 1.128379)
    # γ = 2·(2/π)·(√0.75 + π/12) − 4/π = 1.4359853 − 1.2732395 = 0.1627458; with M = 19 moving ranges
    # Var(MR̄)/σ² = (19·0.726760 + 2·18·0.1627458)/19² = 19.66729/361 = 0.0544800, and
    # ν = d2²/(2·0.0544800) = 1.2732395/0.1089600 = 11.685 (≈ 0.62·19).
    assert c.within.dof == pytest.approx(11.685, abs=1e-3)
    assert c.overall.dof == 19


@pytest.mark.parametrize(
    ("q", "dof", "expected"),
    [  # scipy.stats.chi2.ppf(q, dof)
        (0.025, 1, 0.0009820691171752555),
        (0.975, 4, 11.143286781877796),
        (0.05, 3.62, 0.5639337954379304),
        (0.975, 90.5735, 118.79322030644738),
        (0.001, 999, 866.5481881255059),
    ],
)
def test_chi_square_quantiles(q: float, dof: float, expected: float) -> None:
    assert cap.chi2_ppf(q, dof) == pytest.approx(expected, rel=1e-11)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cap.capability_indices(10, 0.1, n=50, dof=49), "at least one spec limit"),
        (lambda: cap.capability_indices(10, 0.1, lsl=10.4, usl=9.7, n=50, dof=49), "inverted"),
        (lambda: cap.capability_indices(10, 0.1, lsl=10.0, usl=10.0, n=50, dof=49), "inverted or equal"),
        (lambda: cap.capability_indices(10, 0.1, lsl=math.nan, n=50, dof=49), "lsl must be finite"),
        (lambda: cap.capability_indices(10, 0.0, usl=11, n=50, dof=49), "sigma must be > 0"),
        (lambda: cap.capability_indices(10, 0.1, usl=11, n=1, dof=49), "n must be an integer >= 2"),
        (
            lambda: cap.capability_indices(10, 0.1, usl=11, n=50, dof=49, confidence=95),
            "confidence must be in",
        ),
        (lambda: cap.capability([1.0, 2.0, 3.0], usl=4.0), "at least 10 points"),
        (lambda: cap.capability([1.0, math.nan] * 10, usl=4.0), "non-finite"),
        (lambda: cap.chi2_ppf(1.0, 3), "level must be in"),
        (lambda: cap.chi2_ppf(0.5, 0), "degrees of freedom"),
    ],
)
def test_capability_refuses_bad_input(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
