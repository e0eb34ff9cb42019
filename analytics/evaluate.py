"""Scoring the predictions against what really happened: detection, lead time, false alarms, RUL error.

Writes the report (Markdown + PNG), ``alerts.csv`` and ``health.csv`` so anyone can check the figures.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analytics.dataset import NS, Dataset, iso
from analytics.episodes import episodes, sensor_intervals
from analytics.pdm import Alert, AssetScores

DAY_NS = 86400 * NS
MONTH_DAYS = 30.0
NO_ONSET_LOOKBACK_NS = 14 * DAY_NS  # an alert counts for an episode without a logged onset this far back
SENSOR_SLACK_NS = 2 * 3600 * NS  # a sensor alert may come this long after the fault began or ended


@dataclass
class ModeResult:
    """Figures for one failure mode over the scored assets."""

    mode: str
    episodes: int = 0
    failures: int = 0
    detected: int = 0
    leads_h: list[float] = field(default_factory=list)  # to the failure or preventive repair
    rul_err: list[float] = field(default_factory=list)  # predicted - true, hours (last 30 % of life)
    rul_rel_ok: list[bool] = field(default_factory=list)
    rul_missing: int = 0  # windows in the last 30 % of life without an estimate

    @property
    def detection_rate(self) -> float:
        return self.detected / self.episodes if self.episodes else math.nan

    def lead(self, q: float) -> float:
        return float(np.quantile(self.leads_h, q)) if self.leads_h else math.nan

    def rmse(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.rul_err)))) if self.rul_err else math.nan

    def mae(self) -> float:
        return float(np.mean(np.abs(self.rul_err))) if self.rul_err else math.nan

    def within20(self) -> float:
        n = len(self.rul_rel_ok) + self.rul_missing
        return sum(self.rul_rel_ok) / n if n else math.nan


@dataclass
class SensorResult:
    kind: str
    faults: int = 0
    detected: int = 0


@dataclass
class Evaluation:
    modes: dict[str, ModeResult] = field(default_factory=dict)
    sensors: dict[str, SensorResult] = field(default_factory=dict)
    false_alarms: int = 0
    false_sensor_alerts: int = 0
    sensor_as_equipment: int = 0  # equipment alerts raised while only a sensor fault was present
    asset_months: float = 0.0
    assets: int = 0

    @property
    def false_per_asset_month(self) -> float:
        return self.false_alarms / self.asset_months if self.asset_months else math.nan

    @property
    def false_sensor_per_asset_month(self) -> float:
        return self.false_sensor_alerts / self.asset_months if self.asset_months else math.nan


def evaluate(ds: Dataset, scores: Iterable[AssetScores], alerts: dict[str, list[Alert]]) -> Evaluation:
    """Compare blind scores and alerts of each asset with its maintenance log."""
    ev = Evaluation()
    for sc in scores:
        if len(sc.t_ns) == 0:
            continue
        ev.assets += 1
        log = ds.events(sc.asset)
        t0, t1 = int(sc.t_ns[0]), int(sc.t_ns[-1])
        ev.asset_months += (t1 - t0) / DAY_NS / MONTH_DAYS
        eq = [a for a in alerts.get(sc.asset, []) if a.kind == "equipment"]
        used: set[int] = set()
        for ep in episodes(log, sc.asset, t1):
            if ep.end_ns <= t0:
                continue
            if ep.censored:  # still developing at the end: its alerts are not false, it is not scored
                start = ep.onset_ns if ep.onset_ns is not None else ep.end_ns
                used.update(i for i, a in enumerate(eq) if a.t_ns > start)
                continue
            r = ev.modes.setdefault(ep.mode, ModeResult(ep.mode))
            r.episodes += 1
            r.failures += int(ep.failed)
            start = ep.onset_ns if ep.onset_ns is not None else ep.end_ns - NO_ONSET_LOOKBACK_NS
            hits = [i for i, a in enumerate(eq) if start < a.t_ns <= ep.end_ns]
            if hits:
                r.detected += 1
                r.leads_h.append((ep.end_ns - eq[hits[0]].t_ns) / NS / 3600.0)
            # alerts still open from this episode when it ends belong to it too
            used.update(i for i, a in enumerate(eq) if start < a.t_ns <= ep.end_ns)
            if ep.failed and ep.onset_ns is not None:
                life = ep.end_ns - ep.onset_ns
                sel = (sc.t_ns >= ep.end_ns - 0.3 * life) & (sc.t_ns < ep.end_ns) & sc.valid
                true_h = (ep.end_ns - sc.t_ns[sel]) / NS / 3600.0
                pred = sc.rul[sel, 0]
                ok = np.isfinite(pred)
                r.rul_missing += int((~ok).sum())
                err = pred[ok] - true_h[ok]
                r.rul_err.extend(err.tolist())
                r.rul_rel_ok.extend((np.abs(err) <= 0.2 * true_h[ok]).tolist())
        true_sensor = sensor_intervals(log, sc.asset, t1)
        for i, a in enumerate(eq):
            if i in used:
                continue
            ev.false_alarms += 1
            if any(si.start_ns <= a.t_ns <= si.end_ns + SENSOR_SLACK_NS for si in true_sensor):
                ev.sensor_as_equipment += 1
        sens = [a for a in alerts.get(sc.asset, []) if a.kind == "sensor_fault"]
        matched: set[int] = set()
        for si in true_sensor:
            if si.end_ns <= t0:
                continue
            r2 = ev.sensors.setdefault(si.kind or "unspecified", SensorResult(si.kind or "unspecified"))
            r2.faults += 1
            hit = [
                i
                for i, a in enumerate(sens)
                if a.signal == si.signal and si.start_ns <= a.t_ns <= si.end_ns + SENSOR_SLACK_NS
            ]
            if hit:
                r2.detected += 1
                matched.update(hit)
        ev.false_sensor_alerts += sum(
            1
            for i, a in enumerate(sens)
            if i not in matched
            and not any(
                si.signal == a.signal and si.start_ns <= a.t_ns <= si.end_ns + SENSOR_SLACK_NS
                for si in true_sensor
            )
        )
    return ev


def _f(x: float, nd: int = 1) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{nd}f}"


def table_lines(ev: Evaluation) -> list[str]:
    """One line per figure, for the terminal."""
    out = []
    for m in sorted(ev.modes.values(), key=lambda r: r.mode):
        out.append(
            f"pdm {m.mode}: episodes {m.episodes} (failures {m.failures}), detected {_f(100 * m.detection_rate, 0)} %, "
            f"lead median {_f(m.lead(0.5))} h p10 {_f(m.lead(0.1))} h, RUL RMSE {_f(m.rmse())} h "
            f"MAE {_f(m.mae())} h within 20 % {_f(100 * m.within20(), 0)} % (n={len(m.rul_rel_ok) + m.rul_missing})"
        )
    out.append(
        f"pdm false alarms: {ev.false_alarms} over {ev.asset_months:.1f} asset-months = "
        f"{_f(ev.false_per_asset_month, 2)} per asset-month ({ev.sensor_as_equipment} during a sensor fault)"
    )
    for s in sorted(ev.sensors.values(), key=lambda r: r.kind):
        rate = 100 * s.detected / s.faults if s.faults else math.nan
        out.append(f"sensor fault {s.kind}: {s.faults} faults, detected {_f(rate, 0)} %")
    out.append(
        f"sensor fault false alerts: {ev.false_sensor_alerts} = {_f(ev.false_sensor_per_asset_month, 2)} per asset-month"
    )
    return out


def write_csvs(out: Path, scores: Iterable[AssetScores], alerts: dict[str, list[Alert]]) -> None:
    """``alerts.csv`` and ``health.csv`` (one row per asset and window) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "alerts.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "asset",
                "timestamp",
                "kind",
                "failure_mode",
                "rul_hours",
                "rul_low_hours",
                "rul_high_hours",
                "score",
            ]
        )
        rows = sorted((a for al in alerts.values() for a in al), key=lambda a: (a.t_ns, a.asset))
        for a in rows:
            mode = a.failure_mode if a.kind == "equipment" else f"{a.failure_mode}:{a.signal}"
            w.writerow(
                [
                    a.asset,
                    iso(a.t_ns),
                    a.kind,
                    mode,
                    _csv(a.rul_hours),
                    _csv(a.rul_low_hours),
                    _csv(a.rul_high_hours),
                    f"{a.score:.4f}",
                ]
            )
    with (out / "health.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "asset",
                "timestamp",
                "health",
                "anomaly_score",
                "failure_mode",
                "rul_hours",
                "rul_low_hours",
                "rul_high_hours",
            ]
        )
        for sc in scores:
            for i in np.flatnonzero(sc.valid):
                w.writerow(
                    [
                        sc.asset,
                        iso(int(sc.t_ns[i])),
                        f"{sc.health[i]:.4f}",
                        f"{sc.anomaly[i]:.4f}",
                        sc.mode[i],
                        *(_csv(v) for v in sc.rul[i]),
                    ]
                )


def _csv(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.1f}"


def plot(out: Path, sc: AssetScores, ds: Dataset, alerts: list[Alert]) -> Path:
    """One PNG per asset: health, RUL band and the logged truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = (sc.t_ns - sc.t_ns[0]) / DAY_NS
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    a1.plot(days, sc.health, lw=0.8, label="health index")
    a1.set_ylim(-0.05, 1.05)
    a1.set_ylabel("health")
    for e in ds.events(sc.asset):
        d = (e.ts_ns - sc.t_ns[0]) / DAY_NS
        colour = {"defect_onset": "orange", "failure": "red", "preventive_repair": "green"}.get(e.event)
        if colour:
            a1.axvline(d, color=colour, lw=0.8)
    for a in alerts:
        if a.kind == "equipment":
            a1.axvline((a.t_ns - sc.t_ns[0]) / DAY_NS, color="purple", ls="--", lw=0.8)
    a2.plot(days, sc.rul[:, 0], lw=0.8, label="RUL")
    a2.fill_between(days, sc.rul[:, 1], sc.rul[:, 2], alpha=0.3)
    a2.set_ylabel("RUL h")
    a2.set_xlabel("days")
    a1.set_title(f"{sc.asset}: orange onset, red failure, green preventive repair, purple alert")
    fig.tight_layout()
    path = out / (sc.asset.replace("/", "_") + ".png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def report(
    out: Path,
    ev: Evaluation,
    scores: list[AssetScores],
    ds: Dataset,
    alerts: dict[str, list[Alert]],
    header: list[str],
    extra: list[str] | None = None,
) -> Path:
    """``report.md`` with the table, the plots and what was skipped, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Shopfloor analytics evaluation", "", *header, ""]
    lines += ["## Predictive maintenance (held-out data, scored blind)", ""]
    lines += [
        "| failure mode | episodes | failures | detected | lead median h | lead p10 h | RUL RMSE h | RUL MAE h | RUL within ±20 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in sorted(ev.modes.values(), key=lambda r: r.mode):
        lines.append(
            f"| {m.mode} | {m.episodes} | {m.failures} | {_f(100 * m.detection_rate, 0)} % | {_f(m.lead(0.5))} | "
            f"{_f(m.lead(0.1))} | {_f(m.rmse())} | {_f(m.mae())} | {_f(100 * m.within20(), 0)} % |"
        )
    lines += [
        "",
        f"False equipment alarms: {ev.false_alarms} over {ev.asset_months:.1f} asset-months "
        f"({_f(ev.false_per_asset_month, 2)} per asset-month); {ev.sensor_as_equipment} of them during a sensor fault.",
        "",
        "## Sensor faults",
        "",
        "| kind | faults | detected |",
        "|---|---|---|",
    ]
    for s in sorted(ev.sensors.values(), key=lambda r: r.kind):
        lines.append(
            f"| {s.kind} | {s.faults} | {_f(100 * s.detected / s.faults if s.faults else math.nan, 0)} % |"
        )
    lines += [
        "",
        f"False sensor-fault alerts: {ev.false_sensor_alerts} ({_f(ev.false_sensor_per_asset_month, 2)} per asset-month).",
        "",
    ]
    if extra:
        lines += [*extra, ""]
    if ds.skipped:
        lines += ["## Skipped", ""] + [f"- {what}: {why}" for what, why in ds.skipped] + [""]
    if ds.unknown_events:
        kinds = sorted({e.event for e in ds.unknown_events})
        lines += [
            "## Log events not used",
            "",
            f"{len(ds.unknown_events)} events of kinds {', '.join(kinds)} are kept in the log and not scored.",
            "",
        ]
    lines += ["## Assets", ""]
    for sc in scores:
        if len(sc.t_ns):
            p = plot(out, sc, ds, alerts.get(sc.asset, []))
            lines.append(f"![{sc.asset}]({p.name})")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
