"""The MES KPI engine: the ISO 22400-2 time model, OEE and its loss waterfall, computed from numpy columns.

Pure numpy, no database: the caller passes state intervals and count buckets; docs/mes-kpis.md has the rules.

Rules (one formula per KPI; times in seconds, over the window ``[start_ns, end_ns)`` and the selected assets):

* Intervals are clipped to the window; a range boundary (shift, break) inside an interval splits its time
  exactly. Intervals of one asset must not overlap (ValueError). Several assets add up: a line's figure is
  the sum of its assets' times and counts.
* calendar_s (CT) = window length × number of assets.
* Time outside every ``scheduled`` range is NOT_SCHEDULED whatever the state (``scheduled=None``: all
  time is scheduled). Time inside a ``planned`` range and inside scheduled time is PLANNED_DOWNTIME
  whatever the state. Other time takes the loss of the interval covering it; scheduled, not planned
  time covered by no interval is ``no_data_s`` and counts as an unplanned stop (an availability loss).
  Overlapping or touching ranges are merged first.
* not_scheduled_s = CT − |scheduled time| + intervals of loss NOT_SCHEDULED inside scheduled, unplanned time.
* planned_downtime_s = |scheduled ∩ planned time| + intervals of loss PLANNED_DOWNTIME elsewhere in it.
* planned_operation_s (POT) = CT − not_scheduled_s; planned_busy_s (PBT) = POT − planned_downtime_s.
* running_s, breakdown_s, setup_s, unplanned_stop_s, minor_stop_s: intervals of that loss in scheduled,
  unplanned time. PBT = breakdown_s + setup_s + unplanned_stop_s + no_data_s + running_s + minor_stop_s.
* actual_production_s (APT) = running_s + minor_stop_s; availability = APT / PBT.
* Counts: a bucket belongs to the window when start_ns <= bucket_ns < end_ns (resolution: one bucket).
  total/good/scrap/rework_units = Σ of the column; units_without_ideal = Σ total of buckets with NaN ideal_s.
* net_productive_s (NPT) = Σ total × ideal_s and fully_productive_s (FPT) = Σ good × ideal_s, over buckets
  with a known ideal_s. effectiveness = NPT / APT (NaN when units_without_ideal > 0).
* reduced_speed_s = APT − minor_stop_s − NPT (negative when the ideal is set too slow or units counted in
  the window were started before it: ``above_ideal``; not clamped; NaN
  when units_without_ideal > 0); performance_loss_s = minor_stop_s + reduced_speed_s.
* quality_ratio = good / total; quality_loss_s = NPT − FPT; oee = availability × effectiveness ×
  quality_ratio (= FPT / PBT when every unit of the window has the same ideal_s); teep = FPT / CT
  (NaN when units_without_ideal > 0).
* first_pass_yield = good / total (equals the quality ratio when each unit is inspected once);
  scrap_ratio = scrap / total; rework_ratio = rework / total.
* n_failures = number of BREAKDOWN intervals of the selected assets whose start is in the window;
  mtbf_s = APT / n_failures; mttr_s = breakdown_s / n_failures.
* energy_kwh = Σ energy_kwh; energy_per_good_unit = energy_kwh / good; energy_per_tonne = energy_kwh /
  (Σ mass_kg / 1000).
* Any ratio whose denominator is 0 is NaN (never 0 or 1).

``kpis_by`` computes many windows at once in O((n + m) log n): per asset and loss, the time covered inside
scheduled, unplanned time is a piecewise-linear cumulative function of t evaluated at the window bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from mes.losses import Loss

NS_PER_S = 1_000_000_000
_N_LOSS = len(Loss)

WaterfallKind = Literal["total", "loss"]

#: Waterfall steps in order: (step name, kind, English, Simplified Chinese).
WATERFALL_STEPS: tuple[tuple[str, WaterfallKind, str, str], ...] = (
    ("calendar", "total", "Calendar time", "日历时间"),
    ("not_scheduled", "loss", "Not scheduled", "非计划工作时间"),
    ("planned_downtime", "loss", "Planned downtime", "计划停机"),
    ("planned_busy", "total", "Planned busy time", "计划占用时间"),
    ("breakdowns", "loss", "Breakdowns", "设备故障"),
    ("setup", "loss", "Setup and adjustment", "换型调机"),
    ("unplanned_stops", "loss", "Unplanned stops (incl. no data)", "非计划停机（含无数据）"),
    ("actual_production", "total", "Actual production time", "实际生产时间"),
    ("micro_stops", "loss", "Micro-stops", "短暂停机"),
    ("reduced_speed", "loss", "Speed loss", "速度损失"),
    ("net_productive", "total", "Net productive time", "净生产时间"),
    ("quality_loss", "loss", "Quality loss", "质量损失"),
    ("fully_productive", "total", "Fully productive time", "完全有效生产时间"),
)

#: step name -> (English, Simplified Chinese)
WATERFALL_LABELS: dict[str, tuple[str, str]] = {s: (en, zh) for s, _, en, zh in WATERFALL_STEPS}

#: Title of the chart.
WATERFALL_TITLE: tuple[str, str] = ("Loss waterfall", "损失瀑布图")

#: KPI field -> (English, Simplified Chinese)
KPI_LABELS: dict[str, tuple[str, str]] = {
    "oee": ("OEE", "设备综合效率（OEE）"),
    "availability": ("Availability", "时间开动率（可用率）"),
    "effectiveness": ("Performance", "性能开动率"),
    "quality_ratio": ("Quality rate", "合格品率"),
    "teep": ("TEEP", "完全有效生产率（TEEP）"),
    "first_pass_yield": ("First pass yield", "一次合格率"),
    "scrap_ratio": ("Scrap ratio", "废品率"),
    "rework_ratio": ("Rework ratio", "返工率"),
    "mtbf_s": ("MTBF", "平均故障间隔时间"),
    "mttr_s": ("MTTR", "平均修复时间"),
    "energy_per_good_unit": ("Energy per good unit", "单位合格品能耗"),
    "energy_per_tonne": ("Energy per tonne", "吨产品能耗"),
    "minor_stop_s": ("Micro-stops", "短暂停机"),
    "reduced_speed_s": ("Speed loss", "速度损失"),
    "planned_downtime_s": ("Planned downtime", "计划停机"),
    "breakdown_s": ("Breakdowns", "设备故障"),
    "setup_s": ("Setup and adjustment", "换型调机"),
    "unplanned_stop_s": ("Unplanned stops", "非计划停机"),
    "not_scheduled_s": ("Not scheduled", "非计划工作时间"),
    "no_data_s": ("No data", "无数据"),
}


def _col(x: Any, dtype: type, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


@dataclass(frozen=True)
class IntervalArrays:
    """State intervals, one row per stretch of one asset in one loss class ``[start_ns, end_ns)``."""

    asset: np.ndarray  # int32, index into the caller's asset list
    start_ns: np.ndarray  # int64 UTC ns
    end_ns: np.ndarray  # int64 (open intervals were closed at 'now' by the caller)
    loss: np.ndarray  # int8 mes.losses.Loss

    def __post_init__(self) -> None:
        for name, dt in (
            ("asset", np.int32),
            ("start_ns", np.int64),
            ("end_ns", np.int64),
            ("loss", np.int8),
        ):
            object.__setattr__(self, name, _col(getattr(self, name), dt, name))
        n = len(self.asset)
        if any(len(getattr(self, f)) != n for f in ("start_ns", "end_ns", "loss")):
            raise ValueError("IntervalArrays columns must have the same length")
        if np.any(self.end_ns < self.start_ns):
            raise ValueError("an interval ends before it starts")
        if n and (self.loss.min() < 0 or self.loss.max() >= _N_LOSS):
            raise ValueError(f"loss codes must be 0..{_N_LOSS - 1} (mes.losses.Loss)")

    def __len__(self) -> int:
        return len(self.asset)

    @classmethod
    def empty(cls) -> IntervalArrays:
        return cls(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int8))


_COUNT_FLOATS = ("total", "good", "scrap", "rework", "ideal_s", "energy_kwh", "mass_kg")


@dataclass(frozen=True)
class CountArrays:
    """Count buckets: per asset, what its counters added in the bucket starting at ``bucket_ns``."""

    asset: np.ndarray  # int32
    bucket_ns: np.ndarray  # int64, start of the bucket
    total: np.ndarray  # float64 units produced in the bucket (good + scrap + rework)
    good: np.ndarray  # float64 good first time
    scrap: np.ndarray  # float64
    rework: np.ndarray  # float64
    ideal_s: np.ndarray  # float64 ideal seconds per unit for the units of this bucket (NaN: unknown)
    energy_kwh: np.ndarray  # float64
    mass_kg: np.ndarray  # float64 mass produced

    def __post_init__(self) -> None:
        object.__setattr__(self, "asset", _col(self.asset, np.int32, "asset"))
        object.__setattr__(self, "bucket_ns", _col(self.bucket_ns, np.int64, "bucket_ns"))
        for name in _COUNT_FLOATS:
            object.__setattr__(self, name, _col(getattr(self, name), np.float64, name))
        n = len(self.asset)
        if any(len(getattr(self, f)) != n for f in ("bucket_ns", *_COUNT_FLOATS)):
            raise ValueError("CountArrays columns must have the same length")

    def __len__(self) -> int:
        return len(self.asset)

    @classmethod
    def empty(cls) -> CountArrays:
        z = np.empty(0, np.float64)
        return cls(np.empty(0, np.int32), np.empty(0, np.int64), z, z, z, z, z, z, z)


def _ratios(
    apt_s: float, pbt_s: float, npt: float, fpt: float, cal_s: float, total: float, good: float, scrap: float,
    rework: float, no_ideal: float, nf: int, breakdown_s: float, energy: float, mass: float,
) -> dict[str, float]:  # fmt: skip
    """Every ratio of a window from its sums (the formulas of docs/mes-kpis.md)."""
    known = no_ideal == 0
    avail, q = _div(apt_s, pbt_s), _div(good, total)
    eff = _div(npt, apt_s) if known else math.nan
    return {
        "availability": avail,
        "effectiveness": eff,
        "quality_ratio": q,
        "oee": avail * eff * q,
        "teep": _div(fpt, cal_s) if known else math.nan,
        "first_pass_yield": q,
        "scrap_ratio": _div(scrap, total),
        "rework_ratio": _div(rework, total),
        "mtbf_s": _div(apt_s, nf),
        "mttr_s": _div(breakdown_s, nf),
        "energy_per_good_unit": _div(energy, good),
        "energy_per_tonne": _div(energy, mass / 1000.0),
    }


_ADDITIVE = (
    "calendar_s", "not_scheduled_s", "planned_operation_s", "planned_downtime_s", "planned_busy_s", "breakdown_s",
    "setup_s", "unplanned_stop_s", "no_data_s", "minor_stop_s", "running_s", "actual_production_s",
    "net_productive_s", "reduced_speed_s", "performance_loss_s", "fully_productive_s", "quality_loss_s",
    "total_units", "good_units", "scrap_units", "rework_units", "units_without_ideal", "n_failures", "energy_kwh",
    "mass_kg",
)  # fmt: skip


def _div(a: float, b: float) -> float:
    return a / b if b != 0 and not math.isnan(b) else math.nan


@dataclass(frozen=True)
class Kpis:
    """The KPIs of one window over a set of assets (seconds summed over the assets); NaN = undefined."""

    start_ns: int
    end_ns: int
    n_assets: int
    # time model, seconds
    calendar_s: float
    not_scheduled_s: float
    planned_operation_s: float
    planned_downtime_s: float
    planned_busy_s: float
    breakdown_s: float
    setup_s: float
    unplanned_stop_s: float  # excludes no_data_s; the waterfall's "unplanned stops" step adds it
    no_data_s: float
    minor_stop_s: float
    running_s: float
    actual_production_s: float
    net_productive_s: float
    reduced_speed_s: float
    performance_loss_s: float
    fully_productive_s: float
    quality_loss_s: float
    # counts
    total_units: float
    good_units: float
    scrap_units: float
    rework_units: float
    units_without_ideal: float
    n_failures: int
    energy_kwh: float
    mass_kg: float
    # ratios
    availability: float
    effectiveness: float
    quality_ratio: float
    oee: float
    teep: float
    first_pass_yield: float
    scrap_ratio: float
    rework_ratio: float
    mtbf_s: float
    mttr_s: float
    energy_per_good_unit: float
    energy_per_tonne: float

    @classmethod
    def from_sums(
        cls,
        start_ns: int,
        end_ns: int,
        n_assets: int,
        scheduled_ns: int,
        effective_ns: int,
        loss_ns: Sequence[int] | np.ndarray,
        counts: Sequence[float] | np.ndarray,
        n_failures: int,
    ) -> Kpis:
        """The KPIs from the raw sums of one window.

        ``scheduled_ns``/``effective_ns``: length of the window inside scheduled time / inside scheduled,
        unplanned time (per asset). ``loss_ns[l]``: interval time of loss ``l`` inside scheduled, unplanned
        time, summed over the assets. ``counts``: Σ total, good, scrap, rework, total×ideal, good×ideal,
        units without ideal, energy, mass (see ``_count_columns``).
        """
        n = int(n_assets)
        lo = [int(x) for x in loss_ns]
        window = int(end_ns) - int(start_ns)
        cal = window * n
        not_sched = (window - int(scheduled_ns)) * n + lo[Loss.NOT_SCHEDULED]
        planned = (int(scheduled_ns) - int(effective_ns)) * n + lo[Loss.PLANNED_DOWNTIME]
        no_data = int(effective_ns) * n - sum(lo)
        pot = cal - not_sched
        pbt = pot - planned
        apt = lo[Loss.RUNNING] + lo[Loss.MINOR_STOP]
        s = 1.0 / NS_PER_S
        total, good, scrap, rework, npt, fpt, no_ideal, energy, mass = (float(c) for c in counts)
        apt_s, pbt_s, cal_s, minor_s = apt * s, pbt * s, cal * s, lo[Loss.MINOR_STOP] * s
        reduced = apt_s - minor_s - npt if no_ideal == 0 else math.nan
        nf = int(n_failures)
        return cls(
            start_ns=int(start_ns),
            end_ns=int(end_ns),
            n_assets=n,
            calendar_s=cal_s,
            not_scheduled_s=not_sched * s,
            planned_operation_s=pot * s,
            planned_downtime_s=planned * s,
            planned_busy_s=pbt_s,
            breakdown_s=lo[Loss.BREAKDOWN] * s,
            setup_s=lo[Loss.SETUP] * s,
            unplanned_stop_s=lo[Loss.UNPLANNED_STOP] * s,
            no_data_s=no_data * s,
            minor_stop_s=minor_s,
            running_s=lo[Loss.RUNNING] * s,
            actual_production_s=apt_s,
            net_productive_s=npt,
            reduced_speed_s=reduced,
            performance_loss_s=minor_s + reduced,
            fully_productive_s=fpt,
            quality_loss_s=npt - fpt,
            total_units=total,
            good_units=good,
            scrap_units=scrap,
            rework_units=rework,
            units_without_ideal=no_ideal,
            n_failures=nf,
            energy_kwh=energy,
            mass_kg=mass,
            **_ratios(
                apt_s,
                pbt_s,
                npt,
                fpt,
                cal_s,
                total,
                good,
                scrap,
                rework,
                no_ideal,
                nf,
                lo[Loss.BREAKDOWN] * s,
                energy,
                mass,
            ),
        )

    @classmethod
    def combine(cls, parts: Sequence[Kpis]) -> Kpis:
        """The KPIs of several windows taken together (e.g. every order of a product): the seconds and
        counts add up, the ratios are computed again from the sums (never averaged)."""
        if not parts:
            raise ValueError("nothing to combine")
        add = {f: sum(getattr(k, f) for k in parts) for f in _ADDITIVE}
        sums = {f: add[f] for f in _ADDITIVE}
        return cls(
            start_ns=min(k.start_ns for k in parts),
            end_ns=max(k.end_ns for k in parts),
            n_assets=sum(k.n_assets for k in parts),
            **sums,
            **_ratios(
                add["actual_production_s"], add["planned_busy_s"], add["net_productive_s"], add["fully_productive_s"],
                add["calendar_s"], add["total_units"], add["good_units"], add["scrap_units"], add["rework_units"],
                add["units_without_ideal"], add["n_failures"], add["breakdown_s"], add["energy_kwh"], add["mass_kg"],
            ),
        )  # fmt: skip

    @property
    def above_ideal(self) -> bool:
        """More net productive time than production time (effectiveness > 1, so OEE can pass 100 %).

        Either units counted in the window were started before it (a long cycle finishing just after a
        shift change) or the ideal cycle time is set slower than the machine really runs. Not clipped:
        the reader is told instead, so a wrong ideal stays visible."""
        return self.effectiveness > 1.0  # False for NaN

    def waterfall(self) -> list[tuple[str, float, WaterfallKind]]:
        """``(step, seconds, kind)`` from calendar time down to fully productive time.

        Each "total" step equals the previous total minus the "loss" steps between them; labels are in
        ``WATERFALL_LABELS``. The unplanned-stops step includes ``no_data_s``.
        """
        value = {
            "calendar": self.calendar_s,
            "not_scheduled": self.not_scheduled_s,
            "planned_downtime": self.planned_downtime_s,
            "planned_busy": self.planned_busy_s,
            "breakdowns": self.breakdown_s,
            "setup": self.setup_s,
            "unplanned_stops": self.unplanned_stop_s + self.no_data_s,
            "actual_production": self.actual_production_s,
            "micro_stops": self.minor_stop_s,
            "reduced_speed": self.reduced_speed_s,
            "net_productive": self.net_productive_s,
            "quality_loss": self.quality_loss_s,
            "fully_productive": self.fully_productive_s,
        }
        return [(step, value[step], kind) for step, kind, _, _ in WATERFALL_STEPS]

    def as_dict(self) -> dict[str, Any]:
        """Every field plus ``waterfall`` (a list of {step, seconds, kind}), NaN as None: JSON-ready."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and math.isnan(v) else v

        out: dict[str, Any] = {f.name: clean(getattr(self, f.name)) for f in fields(self)}
        out["waterfall"] = [{"step": s, "seconds": clean(v), "kind": k} for s, v, k in self.waterfall()]
        return out


# -- range sets ---------------------------------------------------------------------------------------


def _merge(ranges: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Sorted disjoint (starts, ends) of the union of ``[start, end)`` ranges; empty ones dropped."""
    if ranges is None:
        return None
    r = np.asarray(ranges, dtype=np.int64)
    if r.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if r.ndim != 2 or r.shape[1] != 2:
        raise ValueError(f"ranges must be an (n, 2) array of [start_ns, end_ns), got shape {r.shape}")
    r = r[r[:, 1] > r[:, 0]]
    if len(r) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    r = r[np.argsort(r[:, 0], kind="stable")]
    s, e = r[:, 0], np.maximum.accumulate(r[:, 1])
    # a new run starts where a range begins after everything before it has ended
    new = np.empty(len(r), dtype=bool)
    new[0] = True
    new[1:] = s[1:] > e[:-1]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(r) - 1]
    return s[first], e[last]


def _clip_ranges(rs: tuple[np.ndarray, np.ndarray] | None, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Range set ∩ [lo, hi) (None: all time)."""
    if rs is None:
        return np.array([lo], np.int64), np.array([hi], np.int64)
    s, e = np.maximum(rs[0], lo), np.minimum(rs[1], hi)
    keep = e > s
    return s[keep], e[keep]


def _difference(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A \\ B for sorted disjoint range sets."""
    if len(b[0]) == 0 or len(a[0]) == 0:
        return a
    pts = np.unique(np.concatenate([a[0], a[1], b[0], b[1]]))
    left = pts[:-1]
    ia = np.searchsorted(a[0], left, side="right") - 1
    ib = np.searchsorted(b[0], left, side="right") - 1
    in_a = (ia >= 0) & (left < a[1][np.maximum(ia, 0)])
    in_b = (ib >= 0) & (left < b[1][np.maximum(ib, 0)])
    keep = in_a & ~in_b
    if not keep.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    s, e = left[keep], pts[1:][keep]
    new = np.r_[True, s[1:] != e[:-1]]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(s) - 1]
    return s[first], e[last]


class _Coverage:
    """C(t) = length of a range set before t (int64 ns); differences give the covered length of [a, b)."""

    def __init__(self, rs: tuple[np.ndarray, np.ndarray]) -> None:
        self.s, self.e = rs
        self.before = np.concatenate([[0], np.cumsum(self.e - self.s)]).astype(np.int64)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.int64)
        if len(self.s) == 0:
            return np.zeros(t.shape, np.int64)
        j = np.searchsorted(self.s, t, side="right") - 1
        jc = np.maximum(j, 0)
        inside = np.clip(t - self.s[jc], 0, self.e[jc] - self.s[jc])
        return np.where(j >= 0, self.before[jc] + inside, 0)


# -- selection and checks ------------------------------------------------------------------------------


def _assets(assets: Sequence[int] | np.ndarray) -> np.ndarray:
    """The selected asset indices as a set (a duplicate counts once)."""
    return np.unique(np.asarray(assets, dtype=np.int64))


def _select(asset_col: np.ndarray, assets: np.ndarray) -> np.ndarray:
    if len(assets) == 0:
        return np.zeros(len(asset_col), dtype=bool)
    return np.isin(asset_col, assets)


def _sorted_by_asset(iv: IntervalArrays, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the selected intervals of positive length sorted by (asset, start), and the asset group
    boundaries in that index. Raises ValueError when two intervals of one asset overlap.
    """
    idx = np.flatnonzero(sel & (iv.end_ns > iv.start_ns))
    order = np.lexsort((iv.end_ns[idx], iv.start_ns[idx], iv.asset[idx]))
    idx = idx[order]
    a = iv.asset[idx]
    bounds = np.flatnonzero(np.r_[True, a[1:] != a[:-1], True]) if len(idx) else np.array([0])
    same = a[1:] == a[:-1]
    if np.any(same & (iv.start_ns[idx][1:] < iv.end_ns[idx][:-1])):
        k = int(np.flatnonzero(same & (iv.start_ns[idx][1:] < iv.end_ns[idx][:-1]))[0])
        raise ValueError(
            f"intervals of asset {int(a[k])} overlap: [{iv.start_ns[idx[k]]}, {iv.end_ns[idx[k]]}) and "
            f"[{iv.start_ns[idx[k + 1]]}, {iv.end_ns[idx[k + 1]]}); one asset is in one state at a time"
        )
    return idx, bounds


def _calendar(
    scheduled: np.ndarray | None, planned: np.ndarray | None, lo: int, hi: int
) -> tuple[_Coverage, _Coverage]:
    """Coverage of scheduled time and of scheduled, unplanned ("effective") time within [lo, hi)."""
    sched = _clip_ranges(_merge(scheduled), lo, hi)
    plan = _merge(planned)
    eff = sched if plan is None else _difference(sched, _clip_ranges(plan, lo, hi))
    return _Coverage(sched), _Coverage(eff)


def _count_columns(c: CountArrays, idx: np.ndarray) -> Iterator[np.ndarray]:
    """The count columns summed per window for rows ``idx``, one at a time, in Kpis.from_sums order.

    Σ total, good, scrap, rework, total × ideal_s, good × ideal_s, units without ideal, energy, mass.
    """
    ideal = c.ideal_s[idx]
    known = ~np.isnan(ideal)
    ideal0 = np.where(known, ideal, 0.0)
    yield c.total[idx]
    yield c.good[idx]
    yield c.scrap[idx]
    yield c.rework[idx]
    yield c.total[idx] * ideal0
    yield c.good[idx] * ideal0
    yield np.where(known, 0.0, c.total[idx])
    yield c.energy_kwh[idx]
    yield c.mass_kg[idx]


def _window(start_ns: int, end_ns: int) -> tuple[int, int]:
    s, e = int(start_ns), int(end_ns)
    if e < s:
        raise ValueError(f"window ends before it starts: [{s}, {e})")
    return s, e


# -- public -------------------------------------------------------------------------------------------


def kpis(
    intervals: IntervalArrays,
    counts: CountArrays,
    start_ns: int,
    end_ns: int,
    assets: Sequence[int] | np.ndarray,
    scheduled: np.ndarray | None = None,
    planned: np.ndarray | None = None,
) -> Kpis:
    """The KPIs of the window ``[start_ns, end_ns)`` over ``assets`` (rules: the module docstring).

    ``scheduled``: (n, 2) int64 ``[start, end)`` shift instances, None = all time scheduled. ``planned``:
    (n, 2) planned stops (breaks) inside shifts. Both may overlap; they are merged.
    """
    ws, we = _window(start_ns, end_ns)
    sel_assets = _assets(assets)
    c_sched, c_eff = _calendar(scheduled, planned, ws, we)
    sched_ns = int(c_sched(np.array([we]))[0])
    eff_ns = int(c_eff(np.array([we]))[0])

    sel = _select(intervals.asset, sel_assets)
    _sorted_by_asset(intervals, sel)  # the overlap check
    a = np.clip(intervals.start_ns[sel], ws, we)
    b = np.clip(intervals.end_ns[sel], ws, we)
    covered = c_eff(b) - c_eff(a)
    loss = intervals.loss[sel]
    loss_ns = [int(covered[loss == k].sum()) for k in range(_N_LOSS)]
    st = intervals.start_ns[sel]
    n_failures = int(np.count_nonzero((loss == Loss.BREAKDOWN) & (st >= ws) & (st < we)))

    csel = _select(counts.asset, sel_assets) & (counts.bucket_ns >= ws) & (counts.bucket_ns < we)
    sums = [float(x.sum()) for x in _count_columns(counts, np.flatnonzero(csel))]
    return Kpis.from_sums(ws, we, len(sel_assets), sched_ns, eff_ns, loss_ns, sums, n_failures)


def kpis_by(
    intervals: IntervalArrays,
    counts: CountArrays,
    windows: np.ndarray,
    assets: Sequence[int] | np.ndarray,
    scheduled: np.ndarray | None = None,
    planned: np.ndarray | None = None,
) -> list[Kpis]:
    """``kpis`` for each row ``[start_ns, end_ns)`` of ``windows`` (m, 2), in one pass over the data.

    Windows may overlap and come in any order. Cost: O((n + m) log n) for n intervals and m windows,
    plus one sort of the selected count buckets by time.
    """
    w = np.asarray(windows, dtype=np.int64)
    if w.size == 0:
        return []
    if w.ndim != 2 or w.shape[1] != 2:
        raise ValueError(f"windows must be an (m, 2) array of [start_ns, end_ns), got shape {w.shape}")
    if np.any(w[:, 1] < w[:, 0]):
        raise ValueError("a window ends before it starts")
    ws, we = w[:, 0], w[:, 1]
    m = len(w)
    lo, hi = int(ws.min()), int(we.max())
    sel_assets = _assets(assets)
    c_sched, c_eff = _calendar(scheduled, planned, lo, hi)
    sched_ns = c_sched(we) - c_sched(ws)
    eff_ns = c_eff(we) - c_eff(ws)

    # intervals: per asset, F_l(t) = time of loss l inside effective time before t; per window F(we) - F(ws)
    sel = _select(intervals.asset, sel_assets)
    idx, bounds = _sorted_by_asset(intervals, sel)
    q = np.concatenate([ws, we])
    rows = np.arange(2 * m)
    loss_ns = np.zeros((m, _N_LOSS), np.int64)
    for g in range(len(bounds) - 1):
        gi = idx[bounds[g] : bounds[g + 1]]
        a = np.clip(intervals.start_ns[gi], lo, hi)
        b = np.clip(intervals.end_ns[gi], lo, hi)
        ca = c_eff(a)
        covered = c_eff(b) - ca
        loss = intervals.loss[gi].astype(np.intp)
        onehot = np.zeros((len(gi), _N_LOSS), np.int64)
        onehot[np.arange(len(gi)), loss] = covered
        cum = np.zeros((len(gi) + 1, _N_LOSS), np.int64)
        np.cumsum(onehot, axis=0, out=cum[1:])
        f = cum[np.searchsorted(b, q, side="right")]  # intervals ended by t, in full
        j = np.searchsorted(a, q, side="left") - 1  # the interval that may contain t
        jc = np.maximum(j, 0)
        part = (j >= 0) & (b[jc] > q)
        f[rows[part], loss[jc[part]]] += c_eff(q[part]) - ca[jc[part]]
        loss_ns += f[m:] - f[:m]

    # failures: BREAKDOWN intervals starting in the window
    br = np.sort(intervals.start_ns[sel & (intervals.loss == Loss.BREAKDOWN)])
    n_fail = np.searchsorted(br, we, side="left") - np.searchsorted(br, ws, side="left")

    # counts: sort the selected buckets by time; per window, sum the contiguous run
    cidx = np.flatnonzero(_select(counts.asset, sel_assets))
    bt = counts.bucket_ns[cidx]
    if len(bt) > 1 and np.any(bt[1:] < bt[:-1]):
        order = np.argsort(bt, kind="stable")
        cidx, bt = cidx[order], bt[order]
    i0 = np.searchsorted(bt, ws, side="left")
    i1 = np.searchsorted(bt, we, side="left")
    nonempty = i1 > i0
    by_start = np.argsort(i0, kind="stable")
    pairs = np.empty(2 * m, np.intp)
    pairs[0::2], pairs[1::2] = i0[by_start], i1[by_start]
    sums = np.zeros((m, 9))
    for k, col in enumerate(_count_columns(counts, cidx)):
        padded = np.concatenate([col, [0.0]])
        r = np.add.reduceat(padded, pairs)[0::2]
        sums[by_start, k] = r
    sums[~nonempty] = 0.0

    n = len(sel_assets)
    return [
        Kpis.from_sums(
            int(ws[i]), int(we[i]), n, int(sched_ns[i]), int(eff_ns[i]), loss_ns[i], sums[i], int(n_fail[i])
        )
        for i in range(m)
    ]
