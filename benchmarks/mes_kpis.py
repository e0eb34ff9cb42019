"""Benchmark of the MES KPI engine: OEE and loss waterfall of every shift of 90 simulated days, every asset.

``mes.kpi.kpis_by`` against an independent per-second numpy computation of the same figures (asserted
equal to 1e-9 relative). Run: .venv/bin/python benchmarks/mes_kpis.py [--days 90] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mes.kpi import CountArrays, IntervalArrays, Kpis, kpis, kpis_by
from mes.losses import Loss
from plant_simulator.clock import NS
from plant_simulator.codes import Reason, State
from plant_simulator.plant import default_plant

DAY_S = 86400
SHIFT_S = 8 * 3600
BREAK_AT_S, BREAK_S = 4 * 3600, 30 * 60  # a 30 min break 4 h into every shift
BUCKET_S = 60
MICRO_STOP_S = 120
NO_DATA = 7  # baseline class for seconds covered by no interval

# synthetic production per asset kind: (ideal s per unit, kg per unit, kW running, kW stopped)
KIND = {
    "CncMachiningCentre": (95.0, 28.0, 22.0, 4.0),
    "WeldingCell": (150.0, 30.0, 30.0, 3.0),
    "AssemblyTestStation": (60.0, 32.0, 15.0, 2.0),
    "MeasuringStation": (45.0, 32.0, 4.0, 1.0),
    "MeltingFurnace": (2.5 * 3600, 5000.0, 1800.0, 300.0),
    "HoldingFurnace": (2.5 * 3600, 5000.0, 350.0, 250.0),
    "ContinuousCaster": (1200.0, 1000.0, 300.0, 50.0),
    "RollingMill": (900.0, 5000.0, 2500.0, 300.0),
    "AnnealingFurnace": (10 * 3600, 20000.0, 450.0, 200.0),
    "SlittingLine": (1200.0, 5000.0, 200.0, 30.0),
    "ExtrusionPress": (120.0, 200.0, 700.0, 100.0),
}

FIELDS = (
    "calendar_s",
    "not_scheduled_s",
    "planned_downtime_s",
    "planned_busy_s",
    "breakdown_s",
    "setup_s",
    "unplanned_stop_s",
    "no_data_s",
    "minor_stop_s",
    "running_s",
    "actual_production_s",
    "net_productive_s",
    "reduced_speed_s",
    "fully_productive_s",
    "quality_loss_s",
    "total_units",
    "good_units",
    "n_failures",
    "energy_kwh",
    "availability",
    "effectiveness",
    "quality_ratio",
    "oee",
    "teep",
    "mtbf_s",
    "mttr_s",
    "energy_per_tonne",
)


@dataclass
class Data:
    names: list[str]
    lines: dict[str, list[int]]
    t0_ns: int
    days: int
    seg: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per asset: start_s, end_s, loss (sorted, gaps)
    iv: IntervalArrays
    counts: CountArrays
    scheduled: np.ndarray
    planned: np.ndarray
    windows: np.ndarray


def losses_of(state: np.ndarray, reason: np.ndarray, dur_s: np.ndarray) -> np.ndarray:
    """The default reason tree, vectorised: planned stays planned, stops shorter than 120 s are micro-stops."""
    loss = np.full(len(state), int(Loss.UNPLANNED_STOP), np.int8)  # idle, starved, blocked
    loss[state == State.RUNNING] = Loss.RUNNING
    loss[state == State.SETUP] = Loss.SETUP
    loss[state == State.DOWN] = Loss.BREAKDOWN
    loss[(state == State.DOWN) & np.isin(reason, [Reason.MINOR_STOP, Reason.MATERIAL_JAM])] = Loss.MINOR_STOP
    loss[state == State.PLANNED_MAINTENANCE] = Loss.PLANNED_DOWNTIME
    stop = np.isin(loss, [Loss.BREAKDOWN, Loss.SETUP, Loss.UNPLANNED_STOP])
    loss[stop & (dur_s < MICRO_STOP_S)] = Loss.MINOR_STOP
    return loss


def _scheduled(t0_ns: int, t_s: np.ndarray) -> np.ndarray:
    """Whether second ``t_s`` after the start is in a shift (all but Sunday 00-08, UTC)."""
    weekday = ((t0_ns // NS + t_s) // DAY_S + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return ~((weekday == 6) & (t_s % DAY_S < SHIFT_S))


def _in_break(t_s: np.ndarray) -> np.ndarray:
    pos = t_s % SHIFT_S
    return (pos >= BREAK_AT_S) & (pos < BREAK_AT_S + BREAK_S)


def build(days: int, seed: int) -> Data:
    plant = default_plant(seed=seed)
    t0, horizon = plant.start_ns, days * DAY_S
    assert t0 % (DAY_S * NS) == 0, "the benchmark's shifts assume a plant starting at midnight UTC"
    rng = np.random.default_rng(seed)
    names = list(plant.assets)
    lines: dict[str, list[int]] = {}
    seg, iv_cols, c_cols = [], [], []
    minutes = np.arange(0, horizon + 1, BUCKET_S, dtype=np.int64)
    working = _scheduled(t0, minutes[:-1]) & ~_in_break(minutes[:-1])
    for i, path in enumerate(names):
        rt = plant.assets[path]
        lines.setdefault(path.rsplit("/", 1)[0], []).append(i)
        rt.schedule.extend(horizon)
        starts, states, reasons = rt.schedule.arrays()
        ends = np.append(starts[1:], rt.schedule.horizon_s)
        keep = starts < horizon
        s, e = starts[keep], np.minimum(ends[keep], horizon)
        loss = losses_of(states[keep], reasons[keep], e - s)
        # a historian outage now and then: drop one interval in 400 (a gap of no data)
        gap = np.zeros(len(s), bool)
        gap[rng.integers(0, len(s), size=max(1, len(s) // 400))] = True
        s, e, loss = s[~gap], e[~gap], loss[~gap]
        seg.append((s, e, loss))
        iv_cols.append((np.full(len(s), i, np.int32), t0 + s * NS, t0 + e * NS, loss))
        # counts: one bucket a minute; units completed from the running seconds at the asset's actual rate
        name = type(rt.model).__name__
        ideal, kg, kw_run, kw_stop = KIND[name]
        ideal = float(rt.model.params.get("cycle_s", ideal))
        actual = ideal / rng.uniform(0.86, 0.98)
        run = loss == Loss.RUNNING
        rs, re_ = s[run], e[run]
        cum = np.concatenate([[0], np.cumsum(re_ - rs)])
        j = np.searchsorted(rs, minutes, side="right") - 1
        jc = np.maximum(j, 0)
        cum_at = np.where(j >= 0, cum[jc] + np.clip(minutes - rs[jc], 0, re_[jc] - rs[jc]), 0)
        # the crew stops the asset in breaks and outside shifts: no units there (state data still says running)
        run_s = np.diff(cum_at) * working
        total = np.diff(np.floor(np.concatenate([[0], np.cumsum(run_s)]) / actual))
        run_s = run_s.astype(np.float64)
        scrap = rng.binomial(total.astype(np.int64), 0.015).astype(np.float64)
        rework = rng.binomial((total - scrap).astype(np.int64), 0.01).astype(np.float64)
        energy = (run_s * kw_run + (BUCKET_S - run_s) * kw_stop) / 3600.0
        c_cols.append(
            (
                np.full(len(total), i, np.int32),
                t0 + minutes[:-1] * NS,
                total,
                total - scrap - rework,
                scrap,
                rework,
                np.full(len(total), ideal),
                energy,
                total * kg,
            )
        )
    iv = IntervalArrays(*(np.concatenate(c) for c in zip(*iv_cols)))
    counts = CountArrays(*(np.concatenate(c) for c in zip(*c_cols)))
    # calendar: three 8 h shifts a day, UTC, except the Sunday night shift (00-08); a break in every shift
    shift0 = t0 + np.arange(days * 3, dtype=np.int64) * SHIFT_S * NS
    windows = np.stack([shift0, shift0 + SHIFT_S * NS], 1)
    scheduled = windows[_scheduled(t0, (shift0 - t0) // NS)]
    planned = np.stack([shift0 + BREAK_AT_S * NS, shift0 + (BREAK_AT_S + BREAK_S) * NS], 1)
    return Data(names, lines, t0, days, seg, iv, counts, scheduled, planned, windows)


# -- ours ----------------------------------------------------------------------------------------------


def ours(d: Data, iv: IntervalArrays) -> dict[str, list[Kpis]]:
    out: dict[str, list[Kpis]] = {}
    for i, name in enumerate(d.names):
        out[name] = kpis_by(iv, d.counts, d.windows, [i], d.scheduled, d.planned)
    for line, members in d.lines.items():
        out[line] = kpis_by(iv, d.counts, d.windows, members, d.scheduled, d.planned)
    for ks in out.values():
        for k in ks:
            k.waterfall()
    return out


# -- baseline: every second of every asset classified, then bincount per shift -------------------------------


def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)


def baseline(d: Data) -> dict[str, dict[str, np.ndarray]]:
    n_win, horizon = len(d.windows), d.days * DAY_S
    t = np.arange(horizon, dtype=np.int64)
    scheduled = _scheduled(d.t0_ns, t)
    planned = scheduled & _in_break(t)
    win = t // SHIFT_S
    n_cls = NO_DATA + 1
    per_asset: list[dict[str, np.ndarray]] = []
    c = d.counts
    cwin = (c.bucket_ns - d.t0_ns) // NS // SHIFT_S
    for i, (s, e, loss) in enumerate(d.seg):
        # the timeline as consecutive pieces: each interval, then the gap (no data) up to the next one
        bounds = np.stack([s, e], 1).ravel()
        edges = np.concatenate([[0], bounds, [horizon]])
        codes = np.stack([np.full(len(s), NO_DATA), loss], 1).ravel()
        cls = np.repeat(np.append(codes, NO_DATA).astype(np.int64), np.diff(edges))
        cls = np.where(planned, int(Loss.PLANNED_DOWNTIME), cls)
        cls = np.where(scheduled, cls, int(Loss.NOT_SCHEDULED))
        sec = np.bincount(win * n_cls + cls, minlength=n_win * n_cls).reshape(n_win, n_cls).astype(np.float64)
        m = c.asset == i
        w = cwin[m]

        def wsum(x: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return np.bincount(w, weights=x, minlength=n_win)

        br = s[loss == Loss.BREAKDOWN]
        per_asset.append(
            {
                "sec": sec,
                "total": wsum(c.total[m]),
                "good": wsum(c.good[m]),
                "npt": wsum(c.total[m] * c.ideal_s[m]),
                "fpt": wsum(c.good[m] * c.ideal_s[m]),
                "energy": wsum(c.energy_kwh[m]),
                "mass": wsum(c.mass_kg[m]),
                "failures": np.bincount(br // SHIFT_S, minlength=n_win).astype(np.float64),
            }
        )
    out: dict[str, dict[str, np.ndarray]] = {}
    groups = {name: [i] for i, name in enumerate(d.names)} | d.lines
    for name, members in groups.items():
        agg = {k: sum(per_asset[i][k] for i in members) for k in per_asset[0]}
        sec = agg["sec"]
        cal = sec.sum(axis=1)
        pbt = cal - sec[:, Loss.NOT_SCHEDULED] - sec[:, Loss.PLANNED_DOWNTIME]
        apt = sec[:, Loss.RUNNING] + sec[:, Loss.MINOR_STOP]
        npt, fpt, total, good = agg["npt"], agg["fpt"], agg["total"], agg["good"]
        a, eff, q = div(apt, pbt), div(npt, apt), div(good, total)
        out[name] = {
            "calendar_s": cal,
            "not_scheduled_s": sec[:, Loss.NOT_SCHEDULED],
            "planned_downtime_s": sec[:, Loss.PLANNED_DOWNTIME],
            "planned_busy_s": pbt,
            "breakdown_s": sec[:, Loss.BREAKDOWN],
            "setup_s": sec[:, Loss.SETUP],
            "unplanned_stop_s": sec[:, Loss.UNPLANNED_STOP],
            "no_data_s": sec[:, NO_DATA],
            "minor_stop_s": sec[:, Loss.MINOR_STOP],
            "running_s": sec[:, Loss.RUNNING],
            "actual_production_s": apt,
            "net_productive_s": npt,
            "reduced_speed_s": apt - sec[:, Loss.MINOR_STOP] - npt,
            "fully_productive_s": fpt,
            "quality_loss_s": npt - fpt,
            "total_units": total,
            "good_units": good,
            "n_failures": agg["failures"],
            "energy_kwh": agg["energy"],
            "availability": a,
            "effectiveness": eff,
            "quality_ratio": q,
            "oee": a * eff * q,
            "teep": div(fpt, cal),
            "mtbf_s": div(apt, agg["failures"]),
            "mttr_s": div(sec[:, Loss.BREAKDOWN], agg["failures"]),
            "energy_per_tonne": div(agg["energy"], agg["mass"] / 1000.0),
        }
    return out


def max_rel_diff(got: dict[str, list[Kpis]], want: dict[str, dict[str, np.ndarray]]) -> tuple[float, int]:
    worst, n = 0.0, 0
    for name, ks in got.items():
        for f in FIELDS:
            a = np.array([getattr(k, f) for k in ks], dtype=np.float64)
            b = want[name][f]
            nan = np.isnan(a) | np.isnan(b)
            assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name} {f}: NaN in one result only"
            scale = np.maximum(np.abs(a), np.abs(b))
            rel = np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)[~nan]
            if rel.size:
                worst = max(worst, float(rel.max()))
            n += int((~nan).sum())
            if rel.size and rel.max() > 1e-9:
                k = int(np.argmax(np.where(nan, -1, np.abs(a - b))))
                raise AssertionError(f"{name} {f} window {k}: ours {a[k]!r}, baseline {b[k]!r}")
    return worst, n


def split(iv: IntervalArrays, parts: int) -> IntervalArrays:
    """Each interval that is not a breakdown cut into ``parts`` pieces (same time per loss, same failures)."""
    cut = iv.loss != Loss.BREAKDOWN
    reps = np.where(cut, parts, 1)
    idx = np.repeat(np.arange(len(iv)), reps)
    piece = np.arange(len(idx)) - np.repeat(np.cumsum(reps) - reps, reps)
    dur = iv.end_ns[idx] - iv.start_ns[idx]
    r = reps[idx]
    s = iv.start_ns[idx] + dur * piece // r
    e = iv.start_ns[idx] + dur * (piece + 1) // r
    return IntervalArrays(iv.asset[idx], s, e, iv.loss[idx])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t = time.perf_counter()
    d = build(a.days, a.seed)
    build_s = time.perf_counter() - t
    n_win, n_assets = len(d.windows), len(d.names)
    print(
        f"mes kpis data: {a.days} simulated days, {n_assets} assets in {len(d.lines)} lines, "
        f"{len(d.iv):,} state intervals, {len(d.counts):,} count buckets, built in {build_s:.1f} s "
        "(counts synthetic: one bucket a minute from each asset's running seconds and nominal cycle at a "
        "random 86-98 % rate, signals not rendered)"
    )
    t = time.perf_counter()
    got = ours(d, d.iv)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    want = baseline(d)
    base_s = time.perf_counter() - t
    worst, n = max_rel_diff(got, want)
    print(
        f"mes kpis ({n_win} shift windows x {n_assets} assets + {len(d.lines)} lines, kpis_by): "
        f"{ours_s:.2f} s, baseline {base_s:.2f} s ratio {base_s / ours_s:.2f}x "
        f"(baseline: per-second numpy classification + bincount; {n:,} figures agree, max rel diff {worst:.1e})"
    )
    big = split(d.iv, 6)
    t = time.perf_counter()
    got6 = ours(d, big)
    big_s = time.perf_counter() - t
    worst6, _ = max_rel_diff(got6, want)
    print(
        f"mes kpis, intervals cut in 6 ({len(big):,} intervals): {big_s:.2f} s, baseline {base_s:.2f} s "
        f"ratio {base_s / big_s:.2f}x (same figures, max rel diff {worst6:.1e})"
    )
    members = max(d.lines.values(), key=len)
    t = time.perf_counter()
    single = [kpis(d.iv, d.counts, int(w[0]), int(w[1]), members, d.scheduled, d.planned) for w in d.windows]
    one_s = time.perf_counter() - t
    t = time.perf_counter()
    many = kpis_by(d.iv, d.counts, d.windows, members, d.scheduled, d.planned)
    by_s = time.perf_counter() - t
    assert [k.oee for k in single] == [k.oee for k in many] or all(
        abs(x.oee - y.oee) <= 1e-12 or (x.oee != x.oee and y.oee != y.oee) for x, y in zip(single, many)
    )
    print(
        f"mes kpis, largest line ({len(members)} assets): {n_win} kpis() calls {one_s:.2f} s, "
        f"one kpis_by() {by_s:.3f} s ratio {one_s / by_s:.1f}x"
    )
    end = d.t0_ns + a.days * DAY_S * NS
    for line, members in d.lines.items():
        k = kpis(d.iv, d.counts, d.t0_ns, end, members, d.scheduled, d.planned)
        print(
            f"  {line} ({len(members)} asset{'s' if len(members) > 1 else ''}), {a.days} days: OEE {k.oee:.3f} = A {k.availability:.3f} x "
            f"E {k.effectiveness:.3f} x Q {k.quality_ratio:.3f}; FPT/PBT {k.fully_productive_s / k.planned_busy_s:.3f}; "
            f"TEEP {k.teep:.3f}; MTBF {k.mtbf_s / 3600:.1f} h, MTTR {k.mttr_s / 3600:.2f} h; "
            f"{k.energy_per_tonne:.0f} kWh/t"
        )


if __name__ == "__main__":
    main()
