"""Degradation episodes and sensor-fault intervals read from a maintenance log, and the labels they give.

An episode runs from a defect's onset to the failure or preventive repair that renews the component.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.dataset import RENEWALS, LogEvent


@dataclass(frozen=True)
class Episode:
    """One component life that degraded: onset (if logged), end (failure or preventive repair)."""

    asset: str
    mode: str
    onset_ns: int | None
    end_ns: int
    failed: bool  # ended in failure (true RUL known) rather than a preventive repair
    censored: bool = False  # still developing when the data ends (end_ns is the end of the data)


@dataclass(frozen=True)
class SensorInterval:
    asset: str
    signal: str
    kind: str  # drift, stuck, dropout, spikes, or '' when the log does not say
    start_ns: int
    end_ns: int


def episodes(log: list[LogEvent], asset: str, data_end_ns: int | None = None) -> list[Episode]:
    """Episodes of ``asset``: each renewal closes the open onset of its mode (or stands alone).

    With ``data_end_ns``, an onset still open when the data ends is a censored episode up to then.
    """
    out: list[Episode] = []
    open_onset: dict[str, int] = {}
    for e in log:
        if e.asset != asset:
            continue
        if e.event == "defect_onset":
            open_onset.setdefault(e.mode, e.ts_ns)
        elif e.event in RENEWALS:
            out.append(Episode(asset, e.mode, open_onset.pop(e.mode, None), e.ts_ns, e.event == "failure"))
    if data_end_ns is not None:
        out += [Episode(asset, m, t, max(t, data_end_ns), False, True) for m, t in open_onset.items()]
    return out


def sensor_intervals(log: list[LogEvent], asset: str, end_ns: int) -> list[SensorInterval]:
    """Sensor-fault intervals of ``asset``; one left open at the end of the log runs to ``end_ns``."""
    out: list[SensorInterval] = []
    open_: dict[str, tuple[int, str]] = {}
    for e in log:
        if e.asset != asset or not e.event.startswith("sensor_fault"):
            continue
        parts = [p.strip() for p in e.detail.split(";")]
        sig, kind = parts[0], (parts[1] if len(parts) > 1 else "")
        if e.event == "sensor_fault_start":
            open_[sig] = (e.ts_ns, kind)
        elif sig in open_:
            t0, k = open_.pop(sig)
            out.append(SensorInterval(asset, sig, k or kind, t0, e.ts_ns))
    out.extend(SensorInterval(asset, s, k, t0, end_ns) for s, (t0, k) in open_.items())
    return sorted(out, key=lambda i: i.start_ns)


def repairs_after_failure(log: list[LogEvent], asset: str) -> dict[int, int]:
    """For each failure time, the time the asset was repaired (the next ``repair``), if logged."""
    fails = [e.ts_ns for e in log if e.asset == asset and e.event == "failure"]
    reps = sorted(e.ts_ns for e in log if e.asset == asset and e.event == "repair")
    out = {}
    for f in fails:
        later = [r for r in reps if r >= f]
        if later:
            out[f] = later[0]
    return out


def in_any(t_ns: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Whether each time lies in one of the half-open spans."""
    m = np.zeros(len(t_ns), bool)
    for a, b in spans:
        m |= (t_ns > a) & (t_ns <= b)
    return m
