"""Hot and cold rolling mills for copper strip: gauge-meter physics, AGC, eccentricity, drive bearing.

Exit thickness h solves the mill-stretch line h = S + F/M against the plastic curve F(h) of the strip.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plant_simulator import vibration
from plant_simulator.codes import Reason
from plant_simulator.degradation import FailureMode
from plant_simulator.dsp import ar1, lag, rising
from plant_simulator.lines.base import AssetModel, Block, cycle_events, phase
from plant_simulator.schedule import StateParams
from plant_simulator.signals import C, F, SignalSpec

RHO_CU = 8900.0

HOT = dict(
    roll_d=0.7,
    entry=12.0,
    target=8.0,
    tol=0.08,
    width=600.0,
    modulus=5000.0,
    ecc=0.015,
    speed=1.5,
    k0=90.0,
    temp0=800.0,
    beta=0.0025,
    t_entry=20.0,
    t_exit=20.0,
    coil_t=10.0,
    gap_s=90.0,
    dip_rate=1 / 3600,
)
COLD = dict(
    roll_d=0.4,
    entry=2.0,
    target=1.2,
    tol=0.012,
    width=600.0,
    modulus=4500.0,
    ecc=0.004,
    speed=5.0,
    k0=300.0,
    temp0=None,
    beta=0.0,
    t_entry=60.0,
    t_exit=80.0,
    coil_t=10.0,
    gap_s=120.0,
    dip_rate=0.0,
)


def plastic_force(
    width: float,
    k: np.ndarray | float,
    roll_r_mm: float,
    entry: np.ndarray | float,
    exit_: float,
    t_in: np.ndarray | float,
    t_out: np.ndarray | float,
) -> np.ndarray:
    """Roll force in kN: F = w * k * sqrt(R*dh) * 1.1 * (1 - 0.5*sigma_t/k), tensions in kN."""
    dh = np.maximum(np.asarray(entry) - exit_, 0.05)
    sigma_t = (
        np.asarray(t_in) * 1e3 / (width * np.asarray(entry)) + np.asarray(t_out) * 1e3 / (width * exit_)
    ) / 2
    return width * k * np.sqrt(roll_r_mm * dh) * 1.1 * (1 - 0.5 * sigma_t / k) / 1e3


class RollingMill(AssetModel):
    kind = "rolling_mill"
    max_kw = 3000.0

    def __init__(self, path: str, description: str = "", hot: bool = True, **params: Any) -> None:
        self.p = dict(HOT if hot else COLD)
        self.hot = hot
        self.kind = "hot_rolling_mill" if hot else "cold_rolling_mill"
        super().__init__(path, description, **params)
        self.p.update({k: v for k, v in params.items() if k in self.p})

    def own_signals(self) -> list[SignalSpec]:
        p = HOT if self.hot else COLD
        hmax = p["entry"] * 1.5
        sigs = [
            F("strip_speed", "m/s", 0, 10, "exit strip speed"),
            F("roll_speed", "rpm", 0, 400, "work-roll speed"),
            F("roll_gap", "mm", 0, hmax, "roll gap set by the AGC (unloaded)"),
            F("entry_thickness", "mm", 0, hmax, "entry gauge"),
            F("exit_thickness", "mm", 0, hmax, "exit gauge (X-ray)", faultable=True),
            F("thickness_deviation", "um", -500, 500, "exit thickness minus target"),
            F("roll_force", "kN", 0, 6000, "total roll force (load cells)"),
            F("entry_tension", "kN", 0, 200, "entry (back) tension"),
            F("exit_tension", "kN", 0, 200, "exit (front) tension"),
            F("motor_power", "kW", 0, 3000, "main drive power"),
            F("motor_current", "A", 0, 3000, "main drive current"),
            F("drive_bearing_temp", "degC", 0, 150, "main-drive bearing temperature", faultable=True),
            F("drive_vib_rms", "mm/s", 0, 50, "main-drive bearing vibration velocity RMS"),
            F("drive_vib_kurtosis", "1", 0, 40, "kurtosis of main-drive bearing vibration"),
            F("drive_vib_crest", "1", 0, 20, "crest factor of main-drive bearing vibration"),
            F("drive_vib_bpfo_energy", "(mm/s)^2", 0, 500, "envelope energy in the BPFO band"),
            C("coil_count", "coils", "coils rolled"),
            C("rolled_length", "m", "strip length rolled"),
            C("rolled_weight", "kg", "strip weight rolled"),
        ]
        if self.hot:
            sigs.insert(
                5, F("strip_temp", "degC", 0, 1100, "strip entry temperature (pyrometer)", faultable=True)
            )
        return sigs

    def failure_modes(self) -> list[FailureMode]:
        pr = self.params
        return [
            FailureMode(
                "main_drive_bearing",
                Reason.MAIN_DRIVE_BEARING,
                onset_days=pr.get("bearing_onset_days", (7.0, 35.0)),
                progression_days=pr.get("bearing_progression_days", (5.0, 15.0)),
                shape=2.0,
                repair_hours=(12, 36),
                pm_detect=0.5,
            ),
        ]

    def state_params(self) -> StateParams:
        return StateParams(run_mean_s=4 * 3600)

    def render(self, b: Block, c: dict[str, Any]) -> dict[str, np.ndarray]:
        p = self.p
        n = b.n
        h0, tol, w, M = p["target"], p["tol"], p["width"], p["modulus"]
        R = p["roll_d"] / 2 * 1000
        v_nom = p["speed"]
        coil_s = p["coil_t"] * 1000 / (RHO_CU * w / 1000 * h0 / 1000 * v_nom)
        cyc = coil_s + p["gap_s"]
        ph = phase(b.cumrun, cyc)
        rolling = b.running & (ph >= p["gap_s"] / cyc)
        threading = b.running & ~rolling
        d = b.severity["main_drive_bearing"]
        v = np.where(rolling, v_nom * (1 + 0.002 * b.noise()), np.where(threading, 0.3, 0.0))
        rel = 0.01 + 0.15 * d * d  # torsional vibration of a failing drive bearing shakes the tension
        t_in = np.where(rolling, p["t_entry"] * (1 + rel * b.noise()), 0.0)
        t_out = np.where(rolling, p["t_exit"] * (1 + rel * b.noise()), 0.0)
        entry = p["entry"] * (1 + ar1(b.rng, n, 0.995, 0.004, c.get("entry", 0.0)))
        c["entry"] = float(entry[-1] / p["entry"] - 1)
        dip = np.zeros(n)
        if self.hot:
            temp = p["temp0"] + ar1(b.rng, n, 0.98, 12.0, c.get("temp", 0.0))
            c["temp"] = float(temp[-1] - p["temp0"])
            starts = np.flatnonzero(b.rng.random(n) < p["dip_rate"])
            depth = b.rng.uniform(30, 90, len(starts))
            length = b.rng.integers(8, 20, len(starts))
            for s0, dd, ln in zip(starts, depth, length, strict=True):
                dip[s0 : s0 + ln] -= dd
            temp = temp + dip
            k = p["k0"] * np.exp(-p["beta"] * (temp - p["temp0"]))
        else:
            temp = None
            k = p["k0"] * (1 + ar1(b.rng, n, 0.999, 0.01, c.get("hard", 0.0)))
            c["hard"] = float(k[-1] / p["k0"] - 1)
        f_nom = float(plastic_force(w, p["k0"], R, p["entry"], h0, p["t_entry"], p["t_exit"]))
        s_nom = h0 - f_nom / M
        f0 = plastic_force(
            w, k, R, entry, h0, np.where(rolling, t_in, p["t_entry"]), np.where(rolling, t_out, p["t_exit"])
        )
        q = f0 / (2 * (entry - h0))
        f_roll = v / (math.pi * p["roll_d"])
        ang = c.get("ang", 0.0) + np.cumsum(2 * math.pi * f_roll)
        c["ang"] = float(ang[-1] % (2 * math.pi))
        ecc = p["ecc"] * np.sin(ang)
        h_ol = (M * (s_nom + ecc) + f0 + q * h0) / (M + q)
        slow = lag(h_ol - h0, 20.0, c.get("agc", 0.0))  # the AGC removes what is slower than ~20 s
        c["agc"] = float(slow[-1])
        h = h_ol - slow
        gap = s_nom - slow * (M + q) / M
        force = np.where(rolling, f0 - q * (h - h0), 0.0)
        h = np.where(rolling, h, np.nan)

        dev = np.where(rolling, h - h0, 0.0)
        out_tol = rolling & (np.abs(dev) > tol)
        for i in rising(out_tol, c.get("out", False)):
            if dip[i] < -30:
                cause = "strip_temperature_dip"
            elif d[i] > 0.3:
                cause = "main_drive_bearing"
            elif abs(entry[i] - p["entry"]) > 0.006 * p["entry"]:
                cause = "entry_thickness_variation"
            else:
                cause = "roll_eccentricity"
            b.defect(i, "thickness_deviation", cause, "exit_thickness", float(dev[i] * 1000))
        c["out"] = bool(out_tol[-1])

        dh = np.maximum(entry - h0, 0.05)
        arm = 0.45 * np.sqrt(R * dh) / 1000
        p_roll = 2 * force * arm * v / (R / 1000) + (t_in - t_out) * v
        spinning = v > 0
        motor = np.where(spinning, np.maximum(p_roll, 0) / 0.93 + 40 * v / v_nom + 30 * d, 0.0)
        power = motor + np.where(b.powered, 60.0, 2.0) + 0.5 * b.noise()
        current = motor * 1000 / (math.sqrt(3) * 690 * 0.9)
        btemp = lag(35 + 0.01 * motor + 25 * d * d * spinning, 1800, c.get("btemp", 35.0))
        c["btemp"] = float(btemp[-1])
        base = np.where(spinning, 1.0 + 0.8 * v / v_nom, 0.05)
        rms, kurt, crest, band = vibration.features(b.rng, base, d * spinning)
        coils, _ = cycle_events(b.cumrun, cyc, c.get("cumrun", 0.0))
        c["cumrun"] = float(b.cumrun[-1])
        length = c.get("len", 0.0) + np.cumsum(np.where(rolling, v, 0.0))
        c["len"] = float(length[-1])
        weight = c.get("wt", 0.0) + np.cumsum(np.where(rolling, v * w / 1000 * h0 / 1000 * RHO_CU, 0.0))
        c["wt"] = float(weight[-1])
        out = {
            "strip_speed": v,
            "roll_speed": f_roll * 60,
            "roll_gap": np.where(b.powered, gap, s_nom),
            "entry_thickness": np.where(rolling, entry, 0.0),
            "exit_thickness": np.where(rolling, h + 0.0005 * h0 * b.noise(), 0.0),
            "thickness_deviation": dev * 1000,
            "roll_force": force + np.where(rolling, 2 * b.noise(), 0.0),
            "entry_tension": t_in,
            "exit_tension": t_out,
            "motor_power": motor,
            "motor_current": current,
            "drive_bearing_temp": btemp + 0.1 * b.noise(),
            "drive_vib_rms": rms,
            "drive_vib_kurtosis": kurt,
            "drive_vib_crest": crest,
            "drive_vib_bpfo_energy": band,
            "coil_count": coils,
            "rolled_length": np.floor(length),
            "rolled_weight": np.floor(weight),
            "power": power,
        }
        if temp is not None:
            out["strip_temp"] = np.where(rolling, temp, 0.0)
        return out
