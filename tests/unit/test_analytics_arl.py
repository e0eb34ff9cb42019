"""ARL: exact Shewhart values, Markov-chain values against the published tables, Monte Carlo against both.

Monte Carlo runs use fixed seeds, so every figure here is reproducible; reps are chosen for a ~1 % standard error.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from analytics import arl

SEED = 20_240_601


# ------------------------------------------------------------------------------------------ exact values


def test_shewhart_exact_arl() -> None:
    # p = 2·(1 − Φ(3)) = 0.0026998 → ARL0 = 370.40; δ = 1: p = Φ(−4) + 1 − Φ(2) = 0.0000317 + 0.0227501.
    assert arl.shewhart_arl(0.0) == pytest.approx(370.398, abs=1e-3)
    assert arl.shewhart_arl(1.0) == pytest.approx(1 / (0.0000316712 + 0.0227501320), rel=1e-7)
    assert round(arl.shewhart_arl(1.0), 1) == 43.9
    assert arl.shewhart_arl(-1.0) == pytest.approx(arl.shewhart_arl(1.0))


@pytest.mark.parametrize(
    ("lam", "L", "shift", "published"),
    [  # Montgomery Table 9.11 (after Lucas & Saccucci 1990)
        (0.10, 2.814, 0.0, 500.0),
        (0.10, 2.814, 1.0, 10.3),
        (0.10, 2.814, 0.5, 31.3),
        (0.20, 2.962, 0.0, 500.0),
        (0.20, 2.962, 1.0, 10.5),
        (0.05, 2.615, 1.0, 11.4),
        (0.40, 3.054, 1.0, 14.3),
    ],
)
def test_ewma_markov_chain_reproduces_the_published_table(
    lam: float, L: float, shift: float, published: float
) -> None:
    assert arl.ewma_arl_markov(lam, L, shift) == pytest.approx(published, rel=5e-3)


@pytest.mark.parametrize(
    ("h", "shift", "published"),
    [  # Montgomery Table 9.3, k = 1/2
        (4.0, 0.0, 168.0),
        (4.0, 1.0, 8.38),
        (5.0, 0.0, 465.0),
        (5.0, 0.5, 38.0),
        (5.0, 1.0, 10.4),
        (5.0, 2.0, 4.01),
    ],
)
def test_cusum_markov_chain_reproduces_the_published_table(h: float, shift: float, published: float) -> None:
    assert arl.cusum_arl_markov(0.5, h, shift) == pytest.approx(published, rel=5e-3)


def test_markov_chain_has_converged_at_the_default_size() -> None:
    for fine, coarse in [
        (arl.ewma_arl_markov(0.1, 2.7, 0.0, states=1201), arl.ewma_arl_markov(0.1, 2.7, 0.0)),
        (arl.cusum_arl_markov(0.5, 5.0, 0.0, states=1201), arl.cusum_arl_markov(0.5, 5.0, 0.0)),
    ]:
        assert coarse == pytest.approx(fine, rel=5e-4)


def test_ewma_lambda_0_1_l_2_7_reference() -> None:
    # Not in the published table; the Markov chain (which reproduces the table above) gives 368.9 and 9.73.
    assert arl.ewma_arl_markov(0.1, 2.7, 0.0) == pytest.approx(368.9, abs=0.2)
    assert arl.ewma_arl_markov(0.1, 2.7, 1.0) == pytest.approx(9.73, abs=0.01)


# ------------------------------------------------------------------------------------------- Monte Carlo


def _close(est: arl.ArlEstimate, reference: float) -> None:
    assert est.censored == 0
    assert est.se / est.arl < 0.012  # ~1 % standard error
    assert abs(est.arl - reference) / reference < 0.05


def test_monte_carlo_shewhart_arl0_and_arl1() -> None:
    _close(arl.shewhart_arl_mc(0.0, reps=10_000, seed=SEED), arl.shewhart_arl(0.0))
    _close(arl.shewhart_arl_mc(1.0, reps=10_000, seed=SEED + 1), arl.shewhart_arl(1.0))


def test_monte_carlo_ewma_arl1() -> None:
    _close(arl.ewma_arl_mc(0.1, 2.7, 1.0, reps=5_000, seed=SEED), arl.ewma_arl_markov(0.1, 2.7, 1.0))


def test_monte_carlo_cusum_arl1() -> None:
    _close(arl.cusum_arl_mc(0.5, 5.0, 1.0, reps=5_000, seed=SEED), arl.cusum_arl_markov(0.5, 5.0, 1.0))


@pytest.mark.slow
def test_monte_carlo_ewma_and_cusum_arl0() -> None:
    _close(arl.ewma_arl_mc(0.1, 2.7, 0.0, reps=10_000, seed=SEED), arl.ewma_arl_markov(0.1, 2.7, 0.0))
    _close(arl.cusum_arl_mc(0.5, 5.0, 0.0, reps=10_000, seed=SEED), arl.cusum_arl_markov(0.5, 5.0, 0.0))


def test_monte_carlo_is_deterministic_for_a_seed() -> None:
    a = arl.cusum_arl_mc(0.5, 4.0, 1.0, reps=2_000, seed=11)
    b = arl.cusum_arl_mc(0.5, 4.0, 1.0, reps=2_000, seed=11)
    assert a == b
    assert arl.cusum_arl_mc(0.5, 4.0, 1.0, reps=2_000, seed=12) != a


def test_exact_ewma_limits_give_a_shorter_in_control_arl() -> None:
    # Exact limits are narrower for the first samples, so early false alarms are more frequent.
    asym = arl.ewma_arl_mc(0.1, 2.7, 0.0, reps=4_000, seed=SEED)
    exact = arl.ewma_arl_mc(0.1, 2.7, 0.0, reps=4_000, seed=SEED, exact_limits=True)
    assert exact.arl < asym.arl


def test_runs_longer_than_max_steps_are_censored_and_reported() -> None:
    est = arl.shewhart_arl_mc(0.0, reps=1_000, seed=SEED, max_steps=50)
    assert est.truncated and est.censored > 800  # P(RL > 50) = (1 − 0.0027)^50 = 0.87
    assert est.max_steps == 50 and est.longest == 50 and est.arl <= 50


def test_arl_table_and_main(capsys: pytest.CaptureFixture[str]) -> None:
    rows = arl.arl_table(reps=3_000, seed=SEED)
    assert [(r.chart, r.params, r.shift) for r in rows] == [
        ("shewhart", "L=3", 0.0),
        ("shewhart", "L=3", 1.0),
        ("ewma", "lam=0.1 L=2.7", 0.0),
        ("ewma", "lam=0.1 L=2.7", 1.0),
        ("ewma", "lam=0.1 L=2.814", 0.0),
        ("ewma", "lam=0.1 L=2.814", 1.0),
        ("cusum", "k=0.5 h=5", 0.0),
        ("cusum", "k=0.5 h=5", 1.0),
    ]
    for r in rows:
        assert r.diff == pytest.approx((r.mc.arl - r.reference) / r.reference)
        assert r.mc.reps == 3_000
    assert rows[0].reference == pytest.approx(370.398, abs=1e-3) and rows[0].published == 370.4
    assert rows[2].published is None  # λ = 0.1, L = 2.7 is not in the table
    assert [v.value for v in arl.reference_values()] == [r.reference for r in rows]
    arl.main(["--reps", "500", "--seed", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9
    assert lines[1].startswith("ARL shewhart L=3 shift=1.0 mc=")
    assert "reference=43.89" in lines[1] and "diff=" in lines[1]
    assert lines[-1].endswith("cells within 5 % of the reference")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: arl.shewhart_arl_mc(0.0, reps=1), "reps must be an integer >= 2"),
        (lambda: arl.shewhart_arl_mc(0.0, reps=10, max_steps=0), "max_steps must be"),
        (lambda: arl.ewma_arl_mc(0.0, 2.7, 0.0), "lam must be > 0"),
        (lambda: arl.ewma_arl_markov(1.5, 2.7, 0.0), "lam must be <= 1"),
        (lambda: arl.cusum_arl_mc(-0.5, 5.0, 0.0), "k must be >= 0"),
        (lambda: arl.cusum_arl_markov(0.5, 0.0, 0.0), "h must be > 0"),
        (lambda: arl.cusum_arl_markov(0.5, 5.0, 0.0, states=5), "states must be an integer >= 11"),
        (lambda: arl.shewhart_arl(float("nan")), "shift must be finite"),
    ],
)
def test_bad_input_is_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
