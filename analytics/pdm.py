"""Predictive maintenance end to end: fit health and failure-mode models, score windows, raise alerts.

Training reads labelled assets; scoring is blind (it never reads the maintenance log of what it scores).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from analytics import health as hmod
from analytics import modes as mmod
from analytics import rul as rmod
from analytics.alerts import AlertRule, Tracker
from analytics.dataset import NS, AssetFrame, Dataset
from analytics.episodes import episodes, repairs_after_failure, sensor_intervals
from analytics.features import Features, FeatureSpec, compute
from analytics.health import HealthModel, NotEnoughData

SETTLE_WINDOWS = 12
HEALTHY_DAYS = 5.0  # an asset never seen is assumed healthy for its first days of data
ANOMALY_FAIL = 100.0  # an anomaly score this many times the healthy 99.5 % level counts as health 0
OTHERS_HEALTHY = 0.25  # failure-mode index of the other signals below which the asset looks healthy
SENSOR_RULE = AlertRule(on=0.5, off=0.4, persist=2, clear=3)


@dataclass(frozen=True)
class Alert:
    """A raised alert: equipment (with mode, RUL and evidence) or sensor_fault (with signal and kind)."""

    asset: str
    t_ns: int
    kind: str  # equipment | sensor_fault
    failure_mode: str
    rul_hours: float
    rul_low_hours: float
    rul_high_hours: float
    score: float
    evidence: tuple[str, ...] = ()
    signal: str = ""
    cleared_ns: int | None = None


@dataclass
class AssetScores:
    """Per window of one asset: anomaly score, progress and its mode, health, RUL, sensor faults."""

    asset: str
    kind: str
    t_ns: np.ndarray
    valid: np.ndarray
    anomaly: np.ndarray
    progress: np.ndarray
    mode: list[str]
    health: np.ndarray
    rul: np.ndarray  # (windows, 3): hours, low, high
    sensor: dict[str, dict[str, np.ndarray]]  # sensor kind -> signal -> flagged per window
    evidence: list[tuple[str, ...]]
    run_h: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class Models:
    """Per-asset health models, per-kind failure-mode models and how they were made."""

    spec: FeatureSpec
    health: dict[str, HealthModel] = field(default_factory=dict)
    kinds: dict[str, mmod.KindModel] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


# -- labels -----------------------------------------------------------------------------------------------
def labels(
    ds: Dataset, frame: AssetFrame, feats: Features
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(healthy, mode_of, progress, late) per window, from the asset's log."""
    t = feats.t_ns
    win = int(t[1] - t[0]) if len(t) > 1 else 3600 * NS
    n = len(t)
    healthy = np.ones(n, bool)
    mode_of = [""] * n
    progress = np.full(n, np.nan)
    late = np.zeros(n, bool)
    run_h = np.cumsum(feats.running_s) / 3600.0
    log = ds.events(frame.asset)
    end = int(frame.ts_ns[-1]) if len(frame.ts_ns) else 0
    fixed = repairs_after_failure(log, frame.asset)
    for ep in episodes(log, frame.asset, end):
        start = ep.onset_ns if ep.onset_ns is not None else ep.end_ns - 3 * 86400 * NS
        back_up = fixed.get(ep.end_ns, ep.end_ns) if ep.failed else ep.end_ns
        # the smoothed scores need a few windows to settle after the repair: not 'healthy' yet
        inside = (t - win < back_up + SETTLE_WINDOWS * win) & (t > start)
        healthy &= ~inside
        sel = np.flatnonzero((t > start) & (t <= ep.end_ns))
        for i in sel:
            mode_of[i] = ep.mode
        if len(sel) == 0:
            continue
        r0, r1 = run_h[sel[0]], run_h[sel[-1]]
        frac = (run_h[sel] - r0) / max(r1 - r0, 1e-9)
        if ep.failed and ep.onset_ns is not None:
            progress[sel] = frac
            late[sel] = frac >= mmod.DEGRADED_FROM
        elif not ep.censored:
            late[sel] = frac >= 0.7
    for si in sensor_intervals(log, frame.asset, end):
        healthy &= ~((t > si.start_ns) & (t - win < si.end_ns))
    return healthy, mode_of, progress, late


def true_sensor_masks(ds: Dataset, frame: AssetFrame, feats: Features) -> dict[str, np.ndarray]:
    """Per signal, the windows a logged sensor fault touches (training masks these, it does not guess)."""
    t = feats.t_ns
    win = int(t[1] - t[0]) if len(t) > 1 else 3600 * NS
    out: dict[str, np.ndarray] = {}
    end = int(frame.ts_ns[-1]) if len(frame.ts_ns) else 0
    for si in sensor_intervals(ds.events(frame.asset), frame.asset, end):
        m = (t > si.start_ns) & (t - win < si.end_ns)
        out[si.signal] = out.get(si.signal, np.zeros(len(t), bool)) | m
    return out


def first_days(feats: Features, days: float = HEALTHY_DAYS) -> np.ndarray:
    """The windows of the first ``days`` of an asset's data (its assumed-healthy period)."""
    if len(feats.t_ns) == 0:
        return np.zeros(0, bool)
    return feats.t_ns <= feats.t_ns[0] + int(days * 86400 * NS)


# -- training ---------------------------------------------------------------------------------------------
def train(
    ds: Dataset,
    spec: FeatureSpec,
    train_assets: Iterable[str],
    progress: Callable[[str], None] | None = None,
) -> tuple[Models, list[tuple[str, str]]]:
    """Models learned from the labelled ``train_assets``; returns them and what was skipped, with reasons."""
    models = Models(spec)
    skipped: list[tuple[str, str]] = []
    by_kind: dict[str, list[mmod.TrainingAsset]] = {}
    scored: dict[str, tuple[AssetFrame, Features]] = {}
    for asset in train_assets:
        frame = ds.assets.get(asset)
        if frame is None:
            skipped.append((asset, "no data"))
            continue
        feats = compute(frame, spec)
        healthy, mode_of, prog, late = labels(ds, frame, feats)
        try:
            hm = hmod.fit(frame, feats, healthy)
        except NotEnoughData as exc:
            skipped.append((asset, str(exc)))
            continue
        models.health[asset] = hm
        z = hm.z(feats)
        zm = hm.mask(z, true_sensor_masks(ds, frame, feats))
        by_kind.setdefault(frame.kind, []).append(
            mmod.TrainingAsset(asset, hm.names, zm, feats.valid, healthy, mode_of, prog, late)
        )
        scored[asset] = (frame, feats)
        if progress:
            progress(asset)
    for kind, assets in by_kind.items():
        names = mmod.common_names(assets)
        km = mmod.KindModel(kind)
        for mode in sorted({m for a in assets for m in a.mode_of if m}):
            mm = mmod.learn_mode(mode, assets, names)
            if mm is None:
                skipped.append((f"{kind}/{mode}", "too few degraded or healthy windows to learn the mode"))
            else:
                km.modes[mode] = mm
        if km.modes:
            set_levels(km, [(scored[a.asset], models.health[a.asset], a) for a in assets])
        models.kinds[kind] = km
    models.meta["metrics"] = training_metrics(models, by_kind)
    models.meta["features"] = sorted({n for hm in models.health.values() for n in hm.names})
    return models, skipped


def training_metrics(models: Models, by_kind: dict[str, list[mmod.TrainingAsset]]) -> dict:
    """What each kind model was learned from and the levels it chose (kept in the model file)."""
    out = {}
    for kind, km in models.kinds.items():
        assets = by_kind.get(kind, [])
        out[kind] = {
            "assets": len(assets),
            "healthy_windows": int(sum(int((a.healthy & a.valid).sum()) for a in assets)),
            "alert_on": km.on,
            "alert_off": km.off,
            "rul_calibration": {"q10": km.rul.q10, "q50": km.rul.q50, "q90": km.rul.q90, "n": km.rul.n},
            "modes": {
                m: {
                    "episodes": mm.episodes,
                    "failures": mm.failures,
                    "features_used": len(mm.cols),
                    "floor": mm.floor,
                }
                for m, mm in km.modes.items()
            },
        }
    return out


def set_levels(
    km: mmod.KindModel, items: list[tuple[tuple[AssetFrame, Features], HealthModel, mmod.TrainingAsset]]
) -> None:
    """Alert levels from the training assets' healthy windows; RUL calibration from their failures."""
    persist = SENSOR_RULE.persist + 1
    worst = 0.0
    ratios: list[np.ndarray] = []
    for (frame, feats), hm, ta in items:
        sc = score(frame, feats, hm, km)
        h = ta.healthy & ta.valid
        p = np.where(h, sc.progress, 0.0)
        if len(p) >= persist:
            run_min = np.min(np.lib.stride_tricks.sliding_window_view(p, persist), axis=1)
            worst = max(worst, float(run_min.max()))
        lab = np.isfinite(ta.progress) & (ta.progress >= 0.7) & np.isfinite(sc.rul[:, 0]) & (sc.rul[:, 0] > 0)
        if lab.any():
            t_fail = _failure_times(ta, feats)
            true = (t_fail[lab] - feats.t_ns[lab]) / NS / 3600.0
            ratios.append(true / sc.rul[lab, 0])
    km.on = float(min(0.6, max(0.3, worst + 0.1)))
    km.off = 0.6 * km.on
    if ratios:
        r = np.concatenate(ratios)
        r = r[np.isfinite(r) & (r > 0)]
        if len(r) >= 10:
            km.rul = rmod.RulCalibration(*(float(np.quantile(r, q)) for q in (0.1, 0.5, 0.9)), n=len(r))


def _failure_times(ta: mmod.TrainingAsset, feats: Features) -> np.ndarray:
    """Per window in a failure-ended episode, the time of that failure (the last window of the episode)."""
    out = np.full(len(feats.t_ns), np.nan)
    lab = np.isfinite(ta.progress)
    idx = np.flatnonzero(lab)
    if len(idx) == 0:
        return out
    breaks = np.flatnonzero(np.diff(idx) > 1)
    for seg in np.split(idx, breaks + 1):
        out[seg] = float(feats.t_ns[seg[-1]])
    return out


# -- scoring ----------------------------------------------------------------------------------------------
def fit_blind(
    frame: AssetFrame, spec: FeatureSpec, days: float = HEALTHY_DAYS
) -> tuple[HealthModel, Features]:
    """A health model for an asset never seen, on its own first ``days`` of data."""
    feats = compute(frame, spec)
    return hmod.fit(frame, feats, first_days(feats, days)), feats


def final_sensor_flags(
    hm: HealthModel, frame: AssetFrame, feats: Features, z: np.ndarray, km: mmod.KindModel | None
) -> dict[str, dict[str, np.ndarray]]:
    """Sensor checks, with drift kept only where the equipment looks healthy once the signal is set aside.

    Dropout and stuck values are facts about the instrument. A spike or drift flag on a signal is a sensor
    fault only if, with that signal masked, the rest of the asset shows no degradation; otherwise the
    signal moved because the equipment did, and it stays in the evidence.
    """
    flags = hm.sensor_checks(frame, feats)
    for kind in ("spikes", "drift"):
        # a failing instrument moves one signal; several signals of the asset at once is the equipment
        # (or the process) moving, whatever the failure-mode knowledge says
        raised = {sig: m for sig, m in flags[kind].items() if m.any()}
        if len(raised) > 1:
            together = np.sum(list(raised.values()), axis=0) >= 2
            for sig in raised:
                flags[kind][sig] = raised[sig] & ~_spread(together, CONCURRENT_WINDOWS)
    if km is None or not km.modes:
        return flags
    hard = {s: m for k in ("dropout", "stuck") for s, m in flags[k].items()}
    lvl = hmod.level_z(hm, feats)
    stirring = _stirring(hm, km, hm.mask(z, hard))
    for kind in ("spikes", "drift"):
        for sig, m in flags[kind].items():
            if not m.any():
                continue
            others = _index(hm, km, hm.mask(z, {**hard, sig: np.ones(len(z), bool)}))
            # the rest of the asset looks healthy ...
            keep = m & (others < OTHERS_HEALTHY)
            if kind == "drift" and sig in lvl:
                # ... and the level does not move the way a failure mode moves it: that is evidence of the
                # mode (early degradation often shows in one signal first), not of the instrument
                level = hmod.ewma(np.nan_to_num(lvl[sig]), hmod.DRIFT_ALPHA, x0=0.0)
                along = np.sign(level) == _signature_sign(hm, km, sig)
                keep &= ~along
            elif kind == "spikes" and sig in stirring:
                # impulsive outliers on a signal a failure mode reads (a bearing defect's impacts in its
                # vibration) are that mode's evidence while any mode reading it is above its healthy floor
                keep &= ~stirring[sig]
            flags[kind][sig] = keep
    return flags


CONCURRENT_WINDOWS = 3  # flags on two signals this many windows apart count as at once


def _spread(b: np.ndarray, k: int) -> np.ndarray:
    """``b`` widened by ``k`` windows either side."""
    if not b.any():
        return b
    c = np.concatenate([[0], np.cumsum(b.astype(np.int64))])
    n = len(b)
    i = np.arange(n)
    return (c[np.minimum(i + k + 1, n)] - c[np.maximum(i - k, 0)]) > 0


def _stirring(hm: HealthModel, km: mmod.KindModel, zm: np.ndarray) -> dict[str, np.ndarray]:
    """Per signal a failure mode moves: the windows where such a mode's index is above its healthy floor."""
    out: dict[str, np.ndarray] = {}
    pos = {n: i for i, n in enumerate(hm.names)}
    for mm in km.modes.values():
        cols = [pos.get(n, -1) for n in mm.names]
        zc = np.column_stack([zm[:, c] if c >= 0 else np.zeros(len(zm)) for c in cols])
        above = mm.index(zc) > mm.floor
        for c in mm.cols.tolist():
            sig = mm.names[c].split(":", 1)[0]
            out[sig] = out[sig] | above if sig in out else above
    return out


def _signature_sign(hm: HealthModel, km: mmod.KindModel, sig: str) -> float:
    """+1/-1 if a failure mode of the kind moves ``sig``'s level up/down, 0 if none uses it."""
    name = f"{sig}:mean"
    for mm in km.modes.values():
        if name in mm.names:
            hit = np.flatnonzero(mm.cols == mm.names.index(name))
            late = mm.ref_y >= mmod.DEGRADED_FROM
            if len(hit) and late.any():
                return float(np.sign(np.median(mm.ref_X[late, hit[0]])))
    return 0.0


def _index(hm: HealthModel, km: mmod.KindModel, zm: np.ndarray) -> np.ndarray:
    """The largest smoothed failure-mode index over the kind's modes (1 = a typical degraded window)."""
    best = np.zeros(len(zm))
    pos = {n: i for i, n in enumerate(hm.names)}
    for mm in km.modes.values():
        cols = [pos.get(n, -1) for n in mm.names]
        zc = np.column_stack([zm[:, c] if c >= 0 else np.zeros(len(zm)) for c in cols])
        best = np.maximum(best, mm.index(zc))
    return best


def _progress(hm: HealthModel, km: mmod.KindModel, zm: np.ndarray) -> tuple[np.ndarray, list[str]]:
    best = np.zeros(len(zm))
    which = [""] * len(zm)
    pos = {n: i for i, n in enumerate(hm.names)}
    for mm in km.modes.values():
        cols = [pos.get(n, -1) for n in mm.names]
        zc = np.column_stack([zm[:, c] if c >= 0 else np.zeros(len(zm)) for c in cols])
        p = mm.progress(zc)
        better = p > best
        best = np.where(better, p, best)
        for i in np.flatnonzero(better):
            which[i] = mm.mode
    return best, which


def score(frame: AssetFrame, feats: Features, hm: HealthModel, km: mmod.KindModel | None) -> AssetScores:
    z = hm.z(feats)
    # carry the last valid window through stops, so a stopped asset is not 'healthy' by absence
    z = np.where(feats.valid[:, None], z, np.nan)
    zf = _ffill(z)
    flags = final_sensor_flags(hm, frame, feats, zf, km)
    faulty = {s: m for k in flags.values() for s, m in k.items()}
    zm = hm.mask(zf, faulty)
    s, contrib = hm.anomaly(zm)
    s_s = mmod.smooth(np.where(feats.valid, s, np.nan))
    if km is not None and km.modes:
        prog, mode = _progress(hm, km, zm)
    else:
        prog = np.clip(np.log10(np.maximum(s_s, 1.0)) / math.log10(ANOMALY_FAIL), 0.0, 1.0)
        mode = ["anomaly" if p > 0 else "" for p in prog]
    run_h = np.cumsum(feats.running_s) / 3600.0
    rul = np.full((len(prog), 3), np.nan)
    cal = km.rul if km is not None else rmod.RulCalibration()
    for i in np.flatnonzero(prog >= rmod.X_MIN):
        lo = max(0, i - 24 * 14)
        util = float(np.mean(feats.running_s[max(0, i - 47) : i + 1])) / _window_s(feats)
        r = rmod.estimate(prog[lo : i + 1], run_h[lo : i + 1], util, cal)
        rul[i] = (r.hours, r.low, r.high)
    top = np.argsort(-contrib, axis=1)[:, :3]
    evidence = [tuple(hm.names[j] for j in row) for row in top]
    return AssetScores(
        frame.asset,
        frame.kind,
        feats.t_ns,
        feats.valid,
        s_s,
        prog,
        mode,
        1.0 - prog,
        rul,
        flags,
        evidence,
        run_h,
    )


def _window_s(feats: Features) -> float:
    return float(feats.t_ns[1] - feats.t_ns[0]) / NS if len(feats.t_ns) > 1 else 3600.0


def _ffill(z: np.ndarray) -> np.ndarray:
    ok = np.isfinite(z[:, 0]) if z.shape[1] else np.ones(len(z), bool)
    idx = np.where(ok, np.arange(len(z)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = z[idx]
    return np.nan_to_num(out, nan=0.0)


def alerts(sc: AssetScores, km: mmod.KindModel | None) -> list[Alert]:
    """Alerts raised over the scored windows, each once per episode, with when it cleared."""
    rule = AlertRule(on=km.on, off=km.off, persist=3, clear=12) if km else AlertRule(on=0.3, off=0.15)
    eq = Tracker(rule)
    out: list[Alert] = []
    open_eq: int | None = None
    for i, t in enumerate(sc.t_ns):
        ev = eq.update(int(t), float(sc.progress[i]))
        if ev == "raise":
            r = sc.rul[i]
            out.append(
                Alert(
                    sc.asset,
                    int(t),
                    "equipment",
                    sc.mode[i] or "anomaly",
                    *(float(v) for v in r),
                    float(sc.progress[i]),
                    sc.evidence[i],
                )
            )
            open_eq = len(out) - 1
        elif ev == "clear" and open_eq is not None:
            out[open_eq] = _cleared(out[open_eq], int(t))
            open_eq = None
    for kind, sigs in sc.sensor.items():
        for sig, m in sigs.items():
            if not m.any():
                continue
            tr = Tracker(SENSOR_RULE)
            open_i: int | None = None
            for i in range(len(m)):
                ev = tr.update(int(sc.t_ns[i]), float(m[i]))
                if ev == "raise":
                    nan = math.nan
                    out.append(
                        Alert(sc.asset, int(sc.t_ns[i]), "sensor_fault", kind, nan, nan, nan, 1.0, (), sig)
                    )
                    open_i = len(out) - 1
                elif ev == "clear" and open_i is not None:
                    out[open_i] = _cleared(out[open_i], int(sc.t_ns[i]))
                    open_i = None
    return sorted(out, key=lambda a: (a.t_ns, a.asset))


def _cleared(a: Alert, t: int) -> Alert:
    from dataclasses import replace

    return replace(a, cleared_ns=t)
