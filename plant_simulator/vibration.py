"""Vibration features maintenance engineers trend: RMS, kurtosis, crest factor, defect-band energy.

Closed-form moments of broadband noise plus a bearing-defect impulse train, per 1 s window.
"""

from __future__ import annotations

import numpy as np


def bearing_defect_freqs(
    shaft_hz: float, n_balls: int, ball_d: float, pitch_d: float, angle_rad: float = 0.0
) -> tuple[float, float]:
    """Outer-race (BPFO) and inner-race (BPFI) defect frequencies of a rolling bearing, in Hz."""
    r = float(ball_d / pitch_d * np.cos(angle_rad))
    return n_balls / 2 * shaft_hz * (1 - r), n_balls / 2 * shaft_hz * (1 + r)


def features(
    rng: np.random.Generator,
    base_rms: np.ndarray,
    defect: np.ndarray,
    extra_rms: np.ndarray | float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rms, kurtosis, crest, band_energy) of a 1-second window.

    The signal is Gaussian broadband vibration (std ``base_rms``, plus ``extra_rms`` from the
    process) and, for a bearing defect of severity ``defect`` in [0, 1], an impulse train of
    amplitude ``A = 10*sqrt(d)*sigma`` active a fraction ``p = 0.01 + 0.25*d**2`` of the time.
    Its moments: ``m2 = s^2 + p A^2``, ``m4 = 3 s^4 + 6 s^2 p A^2 + p A^4``.  Early defects
    raise kurtosis and crest factor first; as damage spreads, RMS rises and kurtosis falls
    back, as seen on real run-to-failure bearings.  Band energy is the share of the impulse
    power in the envelope band around the defect frequency.  Window-to-window estimation
    noise is added to each feature.
    """
    n = len(defect)
    s2 = base_rms**2 + np.asarray(extra_rms) ** 2
    s = np.sqrt(s2)
    d = np.clip(defect, 0.0, 1.0)
    A = 10.0 * np.sqrt(d) * s
    p = np.where(d > 0, 0.01 + 0.25 * d * d, 0.0)
    pA2 = p * A * A
    m2 = s2 + pA2
    m4 = 3 * s2 * s2 + 6 * s2 * pA2 + pA2 * A * A
    z = rng.standard_normal((4, n))
    rms = np.sqrt(m2) * (1 + 0.03 * z[0])
    kurt = m4 / (m2 * m2) * (1 + 0.06 * z[1])
    peak = np.maximum(3.3 * s, A + 2.0 * s)
    crest = peak / np.sqrt(m2) * (1 + 0.04 * z[2])
    band = (0.6 * pA2 + 0.02 * s2) * np.exp(0.1 * z[3])
    return rms, kurt, crest, band
