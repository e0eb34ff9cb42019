"""Run rules for control charts: the four Western Electric rules and Nelson's eight tests, vectorised.

Each rule reports the last point of every window that completes its pattern, described in English and 中文.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

# A detector gets z = (statistic − centre)/sigma and the statistic itself, and returns one boolean per
# point: True where a window ending at that point completes the pattern.
Detector = Callable[[FloatArray, FloatArray], BoolArray]


@dataclass(frozen=True)
class Rule:
    """One run rule: its id (``WE1``..``WE4``, ``N1``..``N8``), window length and descriptions."""

    rule_id: str
    window: int
    description: str
    description_zh: str
    detect: Detector = field(repr=False, compare=False)


@dataclass(frozen=True, eq=False)
class RuleResult:
    """The points where one rule fires: the last point of each window that completes the pattern."""

    rule: Rule
    indexes: IntArray

    @property
    def triggered(self) -> bool:
        return bool(self.indexes.size)

    @property
    def rule_id(self) -> str:
        return self.rule.rule_id


def _ends(mask: npt.ArrayLike, window: int, n: int) -> BoolArray:
    """Spread a per-window result (window ending at i = window−1 .. n−1) to one flag per point."""
    out = np.zeros(n, dtype=bool)
    if n >= window:
        out[window - 1 :] = np.asarray(mask, dtype=bool)
    return out


def _windows(a: npt.NDArray[np.generic], window: int) -> npt.NDArray[np.generic]:
    return sliding_window_view(a, window) if a.size >= window else np.empty((0, window), dtype=a.dtype)


def _beyond(limit: float) -> Detector:
    """One point strictly beyond ±limit·σ."""

    def detect(z: FloatArray, x: FloatArray) -> BoolArray:
        return np.abs(z) > limit

    return detect


def _same_side(run: int) -> Detector:
    """``run`` points in a row strictly on one side of the centre line (a point on the line breaks it)."""

    def detect(z: FloatArray, x: FloatArray) -> BoolArray:
        above = _windows(z > 0, run).all(axis=1)
        below = _windows(z < 0, run).all(axis=1)
        return _ends(above | below, run, z.size)

    return detect


def _k_of_m_beyond(k: int, m: int, limit: float) -> Detector:
    """k of m points in a row beyond limit·σ on the same side; the last point is one of them."""

    def detect(z: FloatArray, x: FloatArray) -> BoolArray:
        hi, lo = z > limit, z < -limit
        up = (_windows(hi, m).sum(axis=1) >= k) & hi[m - 1 :]
        down = (_windows(lo, m).sum(axis=1) >= k) & lo[m - 1 :]
        return _ends(up | down, m, z.size)

    return detect


def _trend(run: int) -> Detector:
    """``run`` points in a row strictly increasing or strictly decreasing (run − 1 steps; ties break it)."""

    def detect(z: FloatArray, x: FloatArray) -> BoolArray:
        step = np.diff(x)
        rising = _windows(step > 0, run - 1).all(axis=1)
        falling = _windows(step < 0, run - 1).all(axis=1)
        return _ends(rising | falling, run, x.size)

    return detect


def _alternating(run: int) -> Detector:
    """``run`` points in a row alternating up and down (run − 1 steps, each opposite to the one before)."""

    def detect(z: FloatArray, x: FloatArray) -> BoolArray:
        flip = (np.sign(np.diff(x))[1:] * np.sign(np.diff(x))[:-1]) < 0  # run − 2 sign changes
        return _ends(_windows(flip, run - 2).all(axis=1), run, x.size)

    return detect


def _within(run: int, limit: float) -> Detector:
    """``run`` points in a row strictly within ±limit·σ (either side)."""

    def detect(z: FloatArray, x: FloatArray) -> BoolArray:
        return _ends(_windows(np.abs(z) < limit, run).all(axis=1), run, z.size)

    return detect


def _outside(run: int, limit: float) -> Detector:
    """``run`` points in a row strictly beyond ±limit·σ, on either side."""

    def detect(z: FloatArray, x: FloatArray) -> BoolArray:
        return _ends(_windows(np.abs(z) > limit, run).all(axis=1), run, z.size)

    return detect


WESTERN_ELECTRIC: tuple[Rule, ...] = (
    Rule("WE1", 1, "1 point beyond 3σ", "1个点落在3σ以外（A区以外）", _beyond(3.0)),
    Rule(
        "WE2",
        3,
        "2 of 3 points in a row beyond 2σ, same side",
        "连续3点中有2点落在中心线同一侧的2σ以外（B区以外）",
        _k_of_m_beyond(2, 3, 2.0),
    ),
    Rule(
        "WE3",
        5,
        "4 of 5 points in a row beyond 1σ, same side",
        "连续5点中有4点落在中心线同一侧的1σ以外（C区以外）",
        _k_of_m_beyond(4, 5, 1.0),
    ),
    Rule(
        "WE4", 8, "8 points in a row on one side of the centre line", "连续8点落在中心线同一侧", _same_side(8)
    ),
)

NELSON: tuple[Rule, ...] = (
    Rule("N1", 1, "1 point beyond 3σ", "1个点落在3σ以外（A区以外）", _beyond(3.0)),
    Rule(
        "N2", 9, "9 points in a row on one side of the centre line", "连续9点落在中心线同一侧", _same_side(9)
    ),
    Rule("N3", 6, "6 points in a row steadily increasing or decreasing", "连续6点递增或递减", _trend(6)),
    Rule(
        "N4", 14, "14 points in a row alternating up and down", "连续14点中相邻点交替上下", _alternating(14)
    ),
    Rule(
        "N5",
        3,
        "2 of 3 points in a row beyond 2σ, same side",
        "连续3点中有2点落在中心线同一侧的2σ以外（B区以外）",
        _k_of_m_beyond(2, 3, 2.0),
    ),
    Rule(
        "N6",
        5,
        "4 of 5 points in a row beyond 1σ, same side",
        "连续5点中有4点落在中心线同一侧的1σ以外（C区以外）",
        _k_of_m_beyond(4, 5, 1.0),
    ),
    Rule(
        "N7",
        15,
        "15 points in a row within 1σ (either side)",
        "连续15点落在中心线两侧的1σ以内（C区内）",
        _within(15, 1.0),
    ),
    Rule(
        "N8",
        8,
        "8 points in a row with none within 1σ (either side)",
        "连续8点落在中心线两侧且无一在1σ以内（C区内）",
        _outside(8, 1.0),
    ),
)

RULES: dict[str, Rule] = {r.rule_id: r for r in (*WESTERN_ELECTRIC, *NELSON)}


def _prepare(
    statistic: npt.ArrayLike, centre: float | npt.ArrayLike, sigma: float | npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    try:
        x = np.asarray(statistic, dtype=np.float64)
        c = np.asarray(centre, dtype=np.float64)
        s = np.asarray(sigma, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("statistic, centre and sigma must be numeric") from None
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"statistic must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(
            f"statistic contains a non-finite value at index {int(np.flatnonzero(~np.isfinite(x))[0])}"
        )
    for name, a in (("centre", c), ("sigma", s)):
        if a.ndim > 1 or (a.ndim == 1 and a.size != x.size):
            raise ValueError(f"{name} must be a number or an array as long as the statistic ({x.size})")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")
    if (s <= 0).any():
        raise ValueError("sigma (of the plotted statistic) must be > 0")
    return (x - c) / s, x


def evaluate(
    statistic: npt.ArrayLike,
    centre: float | npt.ArrayLike,
    sigma: float | npt.ArrayLike,
    rules: Iterable[Rule | str] = NELSON,
) -> list[RuleResult]:
    """Apply ``rules`` (Rule objects or ids such as ``"N2"``) to a plotted statistic.

    ``sigma`` is the standard deviation of the plotted statistic (σ/√n on an X̄ chart), a number or one
    value per point; ``centre`` likewise. One ``RuleResult`` per rule, in the order given, even if empty.
    """
    z, x = _prepare(statistic, centre, sigma)
    chosen: list[Rule] = []
    for r in rules:
        if isinstance(r, str) and r not in RULES:
            raise ValueError(f"unknown rule id {r!r}; known: {', '.join(RULES)}")
        chosen.append(RULES[r] if isinstance(r, str) else r)
    return [RuleResult(rule=r, indexes=np.flatnonzero(r.detect(z, x)).astype(np.intp)) for r in chosen]


def western_electric(
    statistic: npt.ArrayLike, centre: float | npt.ArrayLike, sigma: float | npt.ArrayLike
) -> list[RuleResult]:
    """The four Western Electric rules (WE1..WE4)."""
    return evaluate(statistic, centre, sigma, WESTERN_ELECTRIC)


def nelson(
    statistic: npt.ArrayLike, centre: float | npt.ArrayLike, sigma: float | npt.ArrayLike
) -> list[RuleResult]:
    """Nelson's eight tests (N1..N8)."""
    return evaluate(statistic, centre, sigma, NELSON)


def flagged(results: Iterable[RuleResult]) -> IntArray:
    """Sorted indexes flagged by any of the results."""
    out: IntArray = np.zeros(0, dtype=np.intp)
    for r in results:
        out = np.union1d(out, r.indexes)
    return out.astype(np.intp)
