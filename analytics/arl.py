"""Average run length (ARL) of Shewhart, EWMA and CUSUM charts: Monte Carlo, exact and Markov-chain values.

``python -m analytics.arl`` prints the Monte Carlo ARL beside the reference for each chart and shift.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_STATES = 301
DEFAULT_MAX_STEPS = 50_000
_BLOCK_ELEMENTS = 1 << 20  # at most this many normals per chunk (8 MB)
_MAX_CHUNK = 4096

# Published values (Montgomery, Introduction to Statistical Quality Control, Table 9.3 for the tabular
# CUSUM with k = 1/2, after Hawkins; Table 9.11 for the EWMA, after Lucas & Saccucci 1990).
PUBLISHED: dict[tuple[str, str, float], tuple[float, str]] = {
    ("shewhart", "L=3", 0.0): (370.4, "1/0.0027, Montgomery §6"),
    ("shewhart", "L=3", 1.0): (43.9, "Montgomery §6 (individuals, 1σ shift)"),
    ("ewma", "lam=0.1 L=2.814", 0.0): (500.0, "Montgomery Table 9.11"),
    ("ewma", "lam=0.1 L=2.814", 1.0): (10.3, "Montgomery Table 9.11"),
    ("cusum", "k=0.5 h=5", 0.0): (465.0, "Montgomery Table 9.3"),
    ("cusum", "k=0.5 h=5", 1.0): (10.4, "Montgomery Table 9.3"),
}


def _check(name: str, value: float, *, low: float | None = None, high: float | None = None) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if low is not None and v <= low:
        raise ValueError(f"{name} must be > {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


_erfc = np.frompyfunc(math.erfc, 1, 1)


def _norm_cdf(x: npt.ArrayLike) -> FloatArray:
    """Φ(x) to full double precision in both tails (math.erfc; scipy is not a Shopfloor dependency)."""
    return np.asarray(0.5 * _erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0)), dtype=np.float64)


# ------------------------------------------------------------------------------------ exact and Markov ARL


def shewhart_arl(shift: float, L: float = 3.0) -> float:
    """Exact ARL of an individuals chart with ±L·σ limits when the mean has moved by ``shift``·σ.

    ARL = 1/p with p = Φ(−L − δ) + 1 − Φ(L − δ); L = 3: 370.4 in control, 43.9 for δ = 1.
    """
    d = _check("shift", shift)
    L = _check("L", L, low=0.0)
    p = 0.5 * math.erfc((L - d) / math.sqrt(2.0)) + 0.5 * math.erfc((L + d) / math.sqrt(2.0))
    return 1.0 / p


def _check_k(k: float) -> float:
    v = _check("k", k)
    if v < 0:
        raise ValueError(f"k must be >= 0, got {v}")
    return v


def _states(states: int) -> int:
    if int(states) != states or states < 11:
        raise ValueError(f"states must be an integer >= 11, got {states}")
    return int(states)


def ewma_arl_markov(lam: float, L: float, shift: float, states: int = DEFAULT_STATES) -> float:
    """Zero-state ARL of the EWMA chart with asymptotic limits ±L·σ·√(λ/(2−λ)), by Brook & Evans' method.

    The in-control band (−H, H) of z is cut into ``states`` (odd) equal cells; the chain of cells, started
    in the centre one (z_0 = target), gives ARL = [(I − P)⁻¹·1]_centre. As Lucas & Saccucci (1990).
    """
    lam = _check("lam", lam, low=0.0, high=1.0)
    L = _check("L", L, low=0.0)
    d = _check("shift", shift)
    m = _states(states) | 1
    half = L * math.sqrt(lam / (2.0 - lam))
    w = 2.0 * half / m
    centres = -half + (np.arange(m) + 0.5) * w
    edges = -half + np.arange(m + 1) * w
    # x_t = (z_t − (1−λ)·z_(t−1))/λ ~ N(δ, 1): probability that z_t lands in each cell.
    cdf = _norm_cdf((edges[None, :] - (1.0 - lam) * centres[:, None]) / lam - d)
    p = np.diff(cdf, axis=1)
    arl = np.linalg.solve(np.eye(m) - p, np.ones(m))
    return float(arl[m // 2])


def _cusum_one_sided(k: float, h: float, drift: float, m: int) -> float:
    """Brook & Evans: C_t = max(0, C_(t−1) + x − k), x ~ N(drift, 1), signal when C > h, C_0 = 0.

    Cell 0 is [0, w/2) (it holds the atom at 0), cell i is [(i − ½)w, (i + ½)w), w = 2h/(2m − 1).
    """
    w = 2.0 * h / (2 * m - 1)
    lag = np.arange(-(m - 1), m, dtype=np.float64) * w  # (j − i)·w for every pair of cells
    upper = _norm_cdf(lag + w / 2.0 + k - drift)
    lower = _norm_cdf(lag - w / 2.0 + k - drift)
    band = upper - lower
    i = np.arange(m)
    p = band[(i[None, :] - i[:, None]) + (m - 1)]
    p[:, 0] = _norm_cdf(w / 2.0 - i * w + k - drift)
    arl = np.linalg.solve(np.eye(m) - p, np.ones(m))
    return float(arl[0])


def cusum_arl_markov(k: float, h: float, shift: float, states: int = DEFAULT_STATES) -> float:
    """Zero-state ARL of the two-sided tabular CUSUM (k, h in σ units) by Brook & Evans' Markov chain.

    Each one-sided CUSUM is a chain of ``states`` cells; the two-sided ARL comes from
    1/ARL = 1/ARL+ + 1/ARL− (Lucas & Crosier 1982), which is how the published k = 1/2 tables are made.
    """
    k = _check_k(k)
    h = _check("h", h, low=0.0)
    d = _check("shift", shift)
    m = _states(states)
    up = _cusum_one_sided(k, h, d, m)
    down = _cusum_one_sided(k, h, -d, m)
    return 1.0 / (1.0 / up + 1.0 / down)


# ------------------------------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True)
class ArlEstimate:
    """Monte Carlo ARL: mean run length over ``reps`` runs and its standard error sd/√reps.

    Runs still going after ``max_steps`` samples are counted with run length ``max_steps`` (``censored``
    of them): then ``arl`` is a lower bound.
    """

    arl: float
    se: float
    reps: int
    max_steps: int
    censored: int
    longest: int

    @property
    def truncated(self) -> bool:
        return self.censored > 0


# A chunk stepper gets the next observations (chunk × runs), the runs' state and the number of samples
# already taken; it returns the first signalling row per run (chunk if none) and the state after the chunk.
_Stepper = Callable[[FloatArray, tuple[FloatArray, ...], int], tuple[IntArray, tuple[FloatArray, ...]]]


def _first_signal(signal: npt.NDArray[np.bool_]) -> IntArray:
    first = signal.argmax(axis=0).astype(np.int64)
    first[~signal.any(axis=0)] = signal.shape[0]
    return first


def _simulate(
    step: _Stepper,
    state: tuple[FloatArray, ...],
    shift: float,
    reps: int,
    seed: int | np.random.SeedSequence | None,
    max_steps: int,
    max_chunk: int,
) -> ArlEstimate:
    """Run ``reps`` charts side by side, a chunk of time steps at a time, dropping those that signalled."""
    if int(reps) != reps or reps < 2:
        raise ValueError(f"reps must be an integer >= 2, got {reps}")
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps}")
    rng = np.random.default_rng(seed)
    run_length = np.zeros(int(reps), dtype=np.int64)
    alive = np.arange(int(reps))
    t = 0
    while alive.size and t < max_steps:
        # Chunks grow with the time already simulated (16, 16, 32, 64, ...): short runs waste little of a
        # chunk, long ones cost few Python iterations; the block of normals stays within _BLOCK_ELEMENTS.
        chunk = int(min(max(16, t), max(16, _BLOCK_ELEMENTS // alive.size), max_chunk, max_steps - t))
        x = rng.standard_normal((chunk, alive.size))
        x += shift
        first, state = step(x, state, t)
        hit = first < chunk
        run_length[alive[hit]] = t + first[hit] + 1
        alive = alive[~hit]
        state = tuple(s[~hit] for s in state)
        t += chunk
    run_length[alive] = max_steps
    return ArlEstimate(
        arl=float(run_length.mean()),
        se=float(run_length.std(ddof=1) / math.sqrt(run_length.size)),
        reps=int(reps),
        max_steps=int(max_steps),
        censored=int(alive.size),
        longest=int(run_length.max()),
    )


def shewhart_arl_mc(
    shift: float,
    L: float = 3.0,
    *,
    reps: int = 20_000,
    seed: int | np.random.SeedSequence | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> ArlEstimate:
    """Monte Carlo ARL of the individuals chart with ±L·σ limits, mean shifted by ``shift``·σ."""
    d = _check("shift", shift)
    L = _check("L", L, low=0.0)

    def step(x: FloatArray, state: tuple[FloatArray, ...], t: int) -> tuple[IntArray, tuple[FloatArray, ...]]:
        return _first_signal(np.abs(x) > L), state

    return _simulate(step, (), d, reps, seed, max_steps, _MAX_CHUNK)


def ewma_arl_mc(
    lam: float,
    L: float,
    shift: float,
    *,
    reps: int = 20_000,
    seed: int | np.random.SeedSequence | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    exact_limits: bool = False,
) -> ArlEstimate:
    """Monte Carlo ARL of the EWMA chart started at the target (z_0 = 0), mean shifted from sample 1.

    Asymptotic limits ±L·σ·√(λ/(2−λ)) by default, the ones the Markov-chain reference and the published
    tables use; ``exact_limits=True`` uses the time-varying limits of ``analytics.spc.ewma_chart``
    (narrower at the start, so a shorter in-control ARL).
    """
    lam = _check("lam", lam, low=0.0, high=1.0)
    L = _check("L", L, low=0.0)
    d = _check("shift", shift)
    a = 1.0 - lam
    asym = L * math.sqrt(lam / (2.0 - lam))
    # z over a chunk from its start value z0, as a cumulative sum (see analytics.spc._ewma_filter):
    # z_j = a^(j+1)·z0 + λ·a^j·Σ_(i≤j) x_i·a^(−i); the chunk is short enough that a^(−j) cannot overflow.
    cap = _MAX_CHUNK if a == 0.0 else max(1, min(_MAX_CHUNK, int(600.0 / -math.log(a))))
    j = np.arange(cap, dtype=np.float64)
    decay = a**j
    grow = np.zeros(cap) if a == 0.0 else a**-j

    def step(x: FloatArray, state: tuple[FloatArray, ...], t: int) -> tuple[IntArray, tuple[FloatArray, ...]]:
        (z0,) = state
        n = x.shape[0]
        if a == 0.0:
            z = x
        else:
            z = np.cumsum(x * grow[:n, None], axis=0)
            z *= lam * decay[:n, None]
            z += (a * decay[:n])[:, None] * z0[None, :]
        limit: FloatArray | float = asym
        if exact_limits:
            i = np.arange(t + 1, t + n + 1, dtype=np.float64)
            limit = (L * np.sqrt(lam / (2.0 - lam) * (1.0 - a ** (2.0 * i))))[:, None]
        return _first_signal(np.abs(z) > limit), (z[-1].copy(),)

    return _simulate(step, (np.zeros(int(reps)),), d, reps, seed, max_steps, cap)


def cusum_arl_mc(
    k: float,
    h: float,
    shift: float,
    *,
    reps: int = 20_000,
    seed: int | np.random.SeedSequence | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> ArlEstimate:
    """Monte Carlo ARL of the two-sided tabular CUSUM (C+ and C− run together, both from 0)."""
    k = _check_k(k)
    h = _check("h", h, low=0.0)
    d = _check("shift", shift)

    def side(incr: FloatArray, c0: FloatArray) -> FloatArray:
        # Lindley: C_j = S_j − min(−c0, min_(i≤j) S_i), S the cumulative sum of the increments.
        s = np.cumsum(incr, axis=0)
        return s - np.minimum(np.minimum.accumulate(s, axis=0), -c0[None, :])

    def step(x: FloatArray, state: tuple[FloatArray, ...], t: int) -> tuple[IntArray, tuple[FloatArray, ...]]:
        up0, down0 = state
        up = side(x - k, up0)
        down = side(-x - k, down0)
        return _first_signal((up > h) | (down > h)), (up[-1].copy(), down[-1].copy())

    zeros = np.zeros(int(reps))
    return _simulate(step, (zeros, zeros.copy()), d, reps, seed, max_steps, _MAX_CHUNK)


# ------------------------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class ReferenceValue:
    """A reference ARL: computed (exact or Markov chain) and, where a table has it, the published value."""

    chart: str
    params: str
    shift: float
    value: float
    method: str
    published: float | None
    published_source: str


@dataclass(frozen=True)
class ArlRow:
    """One cell of the ARL table: Monte Carlo against the reference; ``diff`` = (mc − ref)/ref."""

    chart: str
    params: str
    shift: float
    mc: ArlEstimate
    reference: float
    reference_method: str
    published: float | None
    diff: float

    @property
    def within(self) -> bool:
        """The team's goal: Monte Carlo within 5 % of the reference."""
        return abs(self.diff) <= 0.05

    def line(self) -> str:
        pub = "—" if self.published is None else f"{self.published:g}"
        cens = f" censored={self.mc.censored}" if self.mc.censored else ""
        return (
            f"ARL {self.chart} {self.params} shift={self.shift:.1f} mc={self.mc.arl:.2f} ±{self.mc.se:.2f} "
            f"reference={self.reference:.2f} diff={self.diff * 100:+.1f}% published={pub} "
            f"({self.reference_method}; reps={self.mc.reps} max_steps={self.mc.max_steps}{cens})"
        )


@dataclass(frozen=True)
class _Design:
    """A chart design of the table: how to compute its reference ARL and how to simulate it."""

    chart: str
    params: str
    reference: Callable[[float], float]
    method: str
    simulate: Callable[..., ArlEstimate]


_MARKOV = f"Markov chain, {DEFAULT_STATES} states"
_DESIGNS: tuple[_Design, ...] = (
    _Design(
        "shewhart", "L=3", partial(shewhart_arl, L=3.0), "exact, normal CDF", partial(shewhart_arl_mc, L=3.0)
    ),
    _Design(
        "ewma",
        "lam=0.1 L=2.7",
        partial(ewma_arl_markov, 0.1, 2.7),
        f"{_MARKOV}, asymptotic limits",
        partial(ewma_arl_mc, 0.1, 2.7),
    ),
    _Design(
        "ewma",
        "lam=0.1 L=2.814",
        partial(ewma_arl_markov, 0.1, 2.814),
        f"{_MARKOV}, asymptotic limits",
        partial(ewma_arl_mc, 0.1, 2.814),
    ),
    _Design(
        "cusum",
        "k=0.5 h=5",
        partial(cusum_arl_markov, 0.5, 5.0),
        f"{_MARKOV} per side",
        partial(cusum_arl_mc, 0.5, 5.0),
    ),
)
SHIFTS = (0.0, 1.0)


def reference_values() -> list[ReferenceValue]:
    """The textbook references of the table: computed values beside the published ones."""
    out = []
    for g in _DESIGNS:
        for d in SHIFTS:
            pub = PUBLISHED.get((g.chart, g.params, d))
            out.append(
                ReferenceValue(
                    chart=g.chart,
                    params=g.params,
                    shift=d,
                    value=g.reference(d),
                    method=g.method,
                    published=None if pub is None else pub[0],
                    published_source="" if pub is None else pub[1],
                )
            )
    return out


def arl_table(reps: int = 20_000, seed: int = 20_240_601, max_steps: int = DEFAULT_MAX_STEPS) -> list[ArlRow]:
    """Monte Carlo ARL against the reference for every chart of the table and shift 0 and 1σ.

    Each cell gets its own random stream, spawned from ``seed``: the table is reproducible cell by cell.
    """
    cells = [(g, d) for g in _DESIGNS for d in SHIFTS]
    streams = np.random.SeedSequence(seed).spawn(len(cells))
    rows = []
    for (g, d), stream in zip(cells, streams, strict=True):
        est = g.simulate(d, reps=reps, seed=stream, max_steps=max_steps)
        reference = g.reference(d)
        pub = PUBLISHED.get((g.chart, g.params, d))
        rows.append(
            ArlRow(
                chart=g.chart,
                params=g.params,
                shift=d,
                mc=est,
                reference=reference,
                reference_method=g.method,
                published=None if pub is None else pub[0],
                diff=(est.arl - reference) / reference,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the ARL table, one line per cell; exit status 1 if a cell misses the 5 % goal."""
    parser = argparse.ArgumentParser(prog="python -m analytics.arl", description=main.__doc__)
    parser.add_argument("--reps", type=int, default=20_000, help="Monte Carlo runs per cell (default 20000)")
    parser.add_argument("--seed", type=int, default=20_240_601, help="random seed (default 20240601)")
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="longest run simulated")
    args = parser.parse_args(argv)
    rows = arl_table(reps=args.reps, seed=args.seed, max_steps=args.max_steps)
    for row in rows:
        print(row.line())
    missed = [r for r in rows if not r.within]
    print(f"{len(rows) - len(missed)}/{len(rows)} cells within 5 % of the reference")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
