"""The MES KPI engine on hand-computed scenarios: ISO 22400 times, A/E/Q, OEE, TEEP, MTBF/MTTR, energy.

Every expected figure below is worked out by hand in the comments; kpis_by is checked against kpis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest

from mes.kpi import (
    KPI_LABELS,
    WATERFALL_LABELS,
    WATERFALL_TITLE,
    CountArrays,
    IntervalArrays,
    Kpis,
    kpis,
    kpis_by,
)
from mes.losses import Loss

S = 1_000_000_000
M = 60 * S
H = 3600 * S
DAY = 24 * H
SUNDAY = 1767484800 * S  # 2026-01-04T00:00:00Z, a Sunday
MONDAY = SUNDAY + DAY
SAT = SUNDAY - DAY

SECOND_FIELDS = (
    "calendar_s",
    "not_scheduled_s",
    "planned_operation_s",
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
)
COUNT_FIELDS = (
    "total_units",
    "good_units",
    "scrap_units",
    "rework_units",
    "n_failures",
    "energy_kwh",
    "mass_kg",
)


def at(day: int, hh: float) -> int:
    """Monday ``day`` days later, ``hh`` hours after midnight."""
    return MONDAY + day * DAY + round(hh * H)


def intervals(rows: Sequence[tuple[int, int, int, Loss]]) -> IntervalArrays:
    """(asset, start_ns, end_ns, loss) rows."""
    if not rows:
        return IntervalArrays.empty()
    a, s, e, lo = zip(*rows)
    return IntervalArrays(np.array(a), np.array(s), np.array(e), np.array([int(x) for x in lo]))


def counts(rows: Sequence[tuple[int, int, float, float, float, float, float, float]]) -> CountArrays:
    """(asset, bucket_ns, total, scrap, rework, ideal_s, energy_kwh, mass_kg) rows; good = total-scrap-rework."""
    if not rows:
        return CountArrays.empty()
    a, b, tot, scr, rew, ideal, en, mass = (np.array(c) for c in zip(*rows))
    return CountArrays(a, b, tot, tot - scr - rew, scr, rew, ideal, en, mass)


def shift(day: int, h0: float, h1: float) -> list[int]:
    return [at(day, h0), at(day, h1)]


def per_minute(asset: int, t0: int, t1: int, units_per_min: float, ideal_s: float) -> list[tuple]:
    """One bucket a minute from t0 to t1 with ``units_per_min`` good units each."""
    return [(asset, t, units_per_min, 0.0, 0.0, ideal_s, 0.0, 0.0) for t in range(t0, t1, M)]


def same(x: float, y: float, rel: float = 1e-12) -> bool:
    if isinstance(x, float) and math.isnan(x):
        return isinstance(y, float) and math.isnan(y)
    return x == y or math.isclose(x, y, rel_tol=rel, abs_tol=1e-9)


def assert_same_kpis(a: Kpis, b: Kpis, rel: float = 1e-12) -> None:
    da, db = a.as_dict(), b.as_dict()
    for k, va in da.items():
        vb = db[k]
        if k == "waterfall":
            assert [(s, k2) for s, _, k2 in a.waterfall()] == [(s, k2) for s, _, k2 in b.waterfall()]
            for (_, x, _), (_, y, _) in zip(a.waterfall(), b.waterfall()):
                assert same(x, y, rel), (k, x, y)
        elif va is None or vb is None:
            assert va is None and vb is None, (k, va, vb)
        else:
            assert same(va, vb, rel), (k, va, vb)


def check_waterfall(k: Kpis) -> None:
    """Each total equals the previous total minus the losses since; the ends are CT and FPT."""
    steps = k.waterfall()
    assert [s for s, _, _ in steps] == list(WATERFALL_LABELS)
    assert steps[0] == ("calendar", k.calendar_s, "total")
    assert steps[-1] == ("fully_productive", k.fully_productive_s, "total")
    running = steps[0][1]
    for name, value, kind in steps[1:]:
        if kind == "loss":
            running -= value
        else:
            assert value == pytest.approx(running, abs=1e-6), name
            running = value


# -- 1. one asset, one 8 h shift -------------------------------------------------------------------------


def one_shift() -> tuple[IntervalArrays, CountArrays, np.ndarray]:
    """Monday 08-16: 08-09 planned maintenance; 09-11 run; 11-11:30 breakdown; 11:30-13:00 run;
    13:00-13:20 setup; 13:20-16:00 five times (30 min run + 2 min micro-stop)."""
    rows: list[tuple[int, int, int, Loss]] = [
        (0, at(0, 8), at(0, 9), Loss.PLANNED_DOWNTIME),
        (0, at(0, 9), at(0, 11), Loss.RUNNING),
        (0, at(0, 11), at(0, 11.5), Loss.BREAKDOWN),
        (0, at(0, 11.5), at(0, 13), Loss.RUNNING),
        (0, at(0, 13), at(0, 13) + 20 * M, Loss.SETUP),
    ]
    t = at(0, 13) + 20 * M
    for _ in range(5):
        rows.append((0, t, t + 30 * M, Loss.RUNNING))
        rows.append((0, t + 30 * M, t + 32 * M, Loss.MINOR_STOP))
        t += 32 * M
    assert t == at(0, 16)
    rows.append((0, at(0, 16), at(0, 18), Loss.BREAKDOWN))  # after the window: neither time nor a failure
    rows.append((1, at(0, 8), at(0, 16), Loss.BREAKDOWN))  # another asset, not selected
    # 10 buckets of 100 units (2 scrap, 1 rework), ideal 18 s, 40 kWh and 250 kg each, inside the shift
    c = [(0, at(0, 9) + i * 30 * M, 100.0, 2.0, 1.0, 18.0, 40.0, 250.0) for i in range(10)]
    c.append((0, at(0, 16), 500.0, 0.0, 0.0, 18.0, 99.0, 99.0))  # bucket at the window end: excluded
    c.append((0, at(0, 8) - M, 500.0, 0.0, 0.0, 18.0, 99.0, 99.0))  # bucket before the window: excluded
    c.append((1, at(0, 9), 500.0, 0.0, 0.0, 18.0, 99.0, 99.0))  # another asset
    return intervals(rows), counts(c), np.array([shift(0, 8, 16)])


def test_one_shift_every_figure() -> None:
    iv, c, sched = one_shift()
    k = kpis(iv, c, at(0, 8), at(0, 16), [0], scheduled=sched)
    assert k.calendar_s == 28800  # 8 h
    assert k.not_scheduled_s == 0
    assert k.planned_operation_s == 28800
    assert k.planned_downtime_s == 3600
    assert k.planned_busy_s == 25200  # 7 h
    assert k.breakdown_s == 1800
    assert k.setup_s == 1200
    assert k.unplanned_stop_s == 0
    assert k.no_data_s == 0
    assert k.minor_stop_s == 600  # 5 x 2 min
    assert k.running_s == 21600  # 2 h + 1.5 h + 5 x 30 min
    assert k.actual_production_s == 22200  # 21600 + 600
    assert k.net_productive_s == 18000  # 1000 x 18 s
    assert k.reduced_speed_s == 3600  # 22200 - 600 - 18000
    assert k.performance_loss_s == 4200  # 600 + 3600
    assert k.fully_productive_s == 17460  # 970 x 18 s
    assert k.quality_loss_s == 540  # 30 x 18 s
    assert (k.total_units, k.good_units, k.scrap_units, k.rework_units) == (1000, 970, 20, 10)
    assert k.units_without_ideal == 0
    assert k.availability == pytest.approx(22200 / 25200)
    assert k.effectiveness == pytest.approx(18000 / 22200)
    assert k.quality_ratio == pytest.approx(0.97)
    assert k.first_pass_yield == pytest.approx(0.97)
    assert k.scrap_ratio == pytest.approx(0.02)
    assert k.rework_ratio == pytest.approx(0.01)
    assert k.oee == pytest.approx(k.availability * k.effectiveness * k.quality_ratio)
    assert k.oee == pytest.approx(k.fully_productive_s / k.planned_busy_s)  # 17460 / 25200
    assert k.oee == pytest.approx(0.6928571428571428)
    assert k.teep == pytest.approx(17460 / 28800)
    assert k.n_failures == 1
    assert k.mtbf_s == 22200
    assert k.mttr_s == 1800
    assert k.energy_kwh == 400
    assert k.mass_kg == 2500
    assert k.energy_per_good_unit == pytest.approx(400 / 970)
    assert k.energy_per_tonne == pytest.approx(160.0)  # 400 kWh / 2.5 t
    check_waterfall(k)
    assert k.waterfall() == [
        ("calendar", 28800, "total"),
        ("not_scheduled", 0, "loss"),
        ("planned_downtime", 3600, "loss"),
        ("planned_busy", 25200, "total"),
        ("breakdowns", 1800, "loss"),
        ("setup", 1200, "loss"),
        ("unplanned_stops", 0, "loss"),
        ("actual_production", 22200, "total"),
        ("micro_stops", 600, "loss"),
        ("reduced_speed", 3600, "loss"),
        ("net_productive", 18000, "total"),
        ("quality_loss", 540, "loss"),
        ("fully_productive", 17460, "total"),
    ]


def test_same_shift_without_a_calendar_and_via_kpis_by() -> None:
    iv, c, sched = one_shift()
    a = kpis(iv, c, at(0, 8), at(0, 16), [0], scheduled=sched)
    assert_same_kpis(a, kpis(iv, c, at(0, 8), at(0, 16), [0]))  # the window is all scheduled anyway
    assert_same_kpis(a, kpis_by(iv, c, np.array([shift(0, 8, 16)]), [0], scheduled=sched)[0])


# -- 2. speed loss ---------------------------------------------------------------------------------------


def test_running_at_80_percent_of_the_ideal_rate() -> None:
    # 8 h running; ideal 18 s, actual 22.5 s a unit -> 1280 units (2.666.. a minute, 480 buckets)
    iv = intervals([(0, at(0, 8), at(0, 16), Loss.RUNNING)])
    c = counts(per_minute(0, at(0, 8), at(0, 16), 60 / 22.5, 18.0))
    k = kpis(iv, c, at(0, 8), at(0, 16), [0], scheduled=np.array([shift(0, 8, 16)]))
    assert k.total_units == pytest.approx(1280)
    assert k.availability == 1.0
    assert k.effectiveness == pytest.approx(0.8)
    assert k.net_productive_s == pytest.approx(23040)  # 1280 x 18
    assert k.reduced_speed_s == pytest.approx(0.2 * k.actual_production_s)  # 5760 s
    assert k.minor_stop_s == 0
    assert k.oee == pytest.approx(0.8)
    assert not k.above_ideal
    check_waterfall(k)


def test_an_ideal_set_too_slow_gives_a_negative_speed_loss() -> None:
    # 1 h running, 100 units with an ideal of 40 s = 4000 s of net productive time > 3600 s
    iv = intervals([(0, at(0, 8), at(0, 9), Loss.RUNNING)])
    c = counts([(0, at(0, 8), 100.0, 0.0, 0.0, 40.0, 0.0, 0.0)])
    k = kpis(iv, c, at(0, 8), at(0, 9), [0])
    assert k.reduced_speed_s == -400
    assert k.effectiveness == pytest.approx(4000 / 3600)
    assert k.above_ideal


def test_a_long_cycle_finishing_after_the_shift_change_is_flagged_not_clipped() -> None:
    # a 4 h heat runs 06:00-10:00 and is counted when it ends; the 08:00 shift saw 2 h of it
    iv = intervals([(0, at(0, 6), at(0, 10), Loss.RUNNING)])
    c = counts([(0, at(0, 10) - M, 1.0, 0.0, 0.0, 4 * 3600.0, 0.0, 0.0)])
    k = kpis(iv, c, at(0, 8), at(0, 10), [0])
    assert k.actual_production_s == 7200 and k.net_productive_s == 14400
    assert k.oee == pytest.approx(2.0)  # the figure is reported as it is ...
    assert k.above_ideal  # ... and flagged, so the dashboard can say why
    whole = kpis(iv, c, at(0, 6), at(0, 10), [0])
    assert whole.oee == pytest.approx(1.0) and not whole.above_ideal


def test_units_without_an_ideal_make_effectiveness_undefined() -> None:
    iv = intervals([(0, at(0, 8), at(0, 9), Loss.RUNNING)])
    c = counts(
        [
            (0, at(0, 8), 100.0, 0.0, 0.0, 18.0, 0.0, 0.0),
            (0, at(0, 8) + M, 10.0, 1.0, 0.0, math.nan, 0.0, 0.0),
        ]
    )
    k = kpis(iv, c, at(0, 8), at(0, 9), [0])
    assert k.units_without_ideal == 10
    assert k.total_units == 110
    assert k.net_productive_s == 1800  # only the units with an ideal
    assert k.fully_productive_s == 1800
    assert math.isnan(k.effectiveness) and math.isnan(k.oee) and math.isnan(k.teep)
    assert math.isnan(k.reduced_speed_s)
    assert k.quality_ratio == pytest.approx(109 / 110)


# -- 3. a shift boundary inside a stop --------------------------------------------------------------------


def test_a_breakdown_across_a_shift_change_is_split_and_counted_once() -> None:
    iv = intervals(
        [
            (0, at(0, 8), at(0, 15.5), Loss.RUNNING),
            (0, at(0, 15.5), at(0, 16.5), Loss.BREAKDOWN),
            (0, at(0, 16.5), at(0, 24), Loss.RUNNING),
        ]
    )
    sched = np.array([shift(0, 8, 16), shift(0, 16, 24)])
    first, second = kpis_by(iv, CountArrays.empty(), sched, [0], scheduled=sched)
    assert first.breakdown_s == 1800 and second.breakdown_s == 1800
    assert first.running_s == 27000 and second.running_s == 27000
    assert first.n_failures == 1 and second.n_failures == 0
    assert first.mtbf_s == 27000 and first.mttr_s == 1800
    assert math.isnan(second.mtbf_s) and math.isnan(second.mttr_s)
    for w, k in zip(sched, (first, second)):
        assert_same_kpis(k, kpis(iv, CountArrays.empty(), int(w[0]), int(w[1]), [0], scheduled=sched))
    day = kpis(iv, CountArrays.empty(), at(0, 0), at(0, 24), [0], scheduled=sched)
    assert day.not_scheduled_s == 8 * 3600 and day.breakdown_s == 3600 and day.n_failures == 1
    # only the first shift scheduled: the second half of the stop is not scheduled time
    late = kpis(iv, CountArrays.empty(), at(0, 8), at(0, 24), [0], scheduled=sched[:1])
    assert late.breakdown_s == 1800 and late.not_scheduled_s == 8 * 3600


# -- 4. a planned stop (break) over running time ------------------------------------------------------------


def test_a_break_over_running_time_is_planned_downtime() -> None:
    iv = intervals([(0, at(0, 8), at(0, 16), Loss.RUNNING)])
    sched = np.array([shift(0, 8, 16)])
    brk = np.array([shift(0, 12, 12.5), shift(0, 12.25, 12.5), shift(0, 20, 21)])  # overlapping; one outside
    k = kpis(iv, CountArrays.empty(), at(0, 8), at(0, 16), [0], scheduled=sched, planned=brk)
    assert k.planned_downtime_s == 1800
    assert k.running_s == 28800 - 1800
    assert k.planned_busy_s == 27000
    assert k.availability == 1.0
    # a break outside every shift is not-scheduled time, not planned downtime
    k2 = kpis(iv, CountArrays.empty(), at(0, 8), at(0, 24), [0], scheduled=sched, planned=brk)
    assert k2.planned_downtime_s == 1800 and k2.not_scheduled_s == 8 * 3600


# -- 5. not scheduled ----------------------------------------------------------------------------------------


def test_sunday_without_a_shift_is_not_scheduled_and_teep_is_below_oee() -> None:
    # Sunday 00:00 .. Monday 16:00 (40 h); one shift Monday 08-16; idle until then, then running at ideal:
    # 480 units of 60 s, 24 scrapped.
    iv = intervals([(0, SUNDAY, at(0, 8), Loss.UNPLANNED_STOP), (0, at(0, 8), at(0, 16), Loss.RUNNING)])
    c = [(0, t, 1.0, 0.0, 0.0, 60.0, 0.0, 0.0) for t in range(at(0, 8), at(0, 16), M)]
    c[:24] = [(0, t, 1.0, 1.0, 0.0, 60.0, 0.0, 0.0) for (_, t, *_) in c[:24]]
    k = kpis(iv, counts(c), SUNDAY, at(0, 16), [0], scheduled=np.array([shift(0, 8, 16)]))
    assert k.calendar_s == 40 * 3600
    assert k.not_scheduled_s == 32 * 3600
    assert k.unplanned_stop_s == 0  # idle time outside the shift is not a loss of the shift
    assert k.planned_busy_s == 28800
    assert k.availability == 1.0 and k.effectiveness == pytest.approx(1.0)
    assert k.oee == pytest.approx(0.95)
    assert k.teep == pytest.approx(456 * 60 / (40 * 3600))  # 0.19
    assert k.teep < k.oee
    check_waterfall(k)


# -- 6. an order over two shifts ------------------------------------------------------------------------------


def test_an_order_over_two_shifts_adds_up() -> None:
    iv = intervals(
        [
            (0, at(0, 11), at(0, 13.5), Loss.RUNNING),
            (0, at(0, 13.5), at(0, 14), Loss.SETUP),
            (0, at(0, 14), at(0, 15.9), Loss.RUNNING),
            (0, at(0, 15.9), at(0, 16.2), Loss.BREAKDOWN),
            (0, at(0, 16.2), at(0, 17), Loss.RUNNING),
            (0, at(0, 17), at(0, 17) + 90 * S, Loss.MINOR_STOP),
            (0, at(0, 17) + 90 * S, at(0, 21), Loss.RUNNING),
        ]
    )
    c = counts(
        [(0, at(0, 12) + i * 5 * M, 12.0, 1.0, 1.0, 20.0, 3.0, 40.0) for i in range(8 * 12)]
        + [(0, at(0, 11), 99.0, 0.0, 0.0, 20.0, 1.0, 1.0)]  # before the order
    )
    sched = np.array([shift(0, 8, 16), shift(0, 16, 24)])
    brk = np.array([shift(0, 12, 12.5), shift(0, 19, 19.25)])
    order = kpis(iv, c, at(0, 12), at(0, 20), [0], scheduled=sched, planned=brk)
    parts = kpis_by(iv, c, np.array([shift(0, 12, 16), shift(0, 16, 20)]), [0], scheduled=sched, planned=brk)
    for f in (*SECOND_FIELDS, *COUNT_FIELDS, "units_without_ideal"):
        assert getattr(parts[0], f) + getattr(parts[1], f) == pytest.approx(getattr(order, f)), f
    assert order.planned_downtime_s == 2700  # 30 + 15 min of breaks
    assert order.breakdown_s == pytest.approx(0.3 * 3600)
    assert parts[0].breakdown_s == pytest.approx(0.1 * 3600)  # 15:54-16:00
    assert order.minor_stop_s == 90
    assert order.total_units == 96 * 12
    assert order.n_failures == 1 and parts[0].n_failures == 1 and parts[1].n_failures == 0


# -- 7. a line of two assets --------------------------------------------------------------------------------


def test_the_times_and_counts_of_a_line_add_up() -> None:
    iv = intervals(
        [
            (0, at(0, 8), at(0, 16), Loss.RUNNING),
            (1, at(0, 8), at(0, 14), Loss.RUNNING),
            (1, at(0, 14), at(0, 16), Loss.BREAKDOWN),
        ]
    )
    c = counts(per_minute(0, at(0, 8), at(0, 16), 1.0, 60.0) + per_minute(1, at(0, 8), at(0, 14), 2.0, 30.0))
    sched = np.array([shift(0, 8, 16)])
    line = kpis(iv, c, at(0, 8), at(0, 16), [0, 1], scheduled=sched)
    a0 = kpis(iv, c, at(0, 8), at(0, 16), [0], scheduled=sched)
    a1 = kpis(iv, c, at(0, 8), at(0, 16), np.array([1]), scheduled=sched)
    assert line.n_assets == 2
    assert line.calendar_s == 57600
    assert line.actual_production_s == 50400
    assert line.breakdown_s == 7200
    assert line.availability == pytest.approx(0.875)
    assert line.total_units == 480 + 720
    assert line.net_productive_s == 28800 + 21600
    for f in (*SECOND_FIELDS, *COUNT_FIELDS):
        assert getattr(line, f) == pytest.approx(getattr(a0, f) + getattr(a1, f)), f
    assert line.oee == pytest.approx(line.fully_productive_s / line.planned_busy_s)
    assert_same_kpis(line, kpis(iv, c, at(0, 8), at(0, 16), [1, 0, 1], scheduled=sched))  # a set


# -- 8. no data -----------------------------------------------------------------------------------------------


def test_a_gap_inside_a_shift_is_no_data_and_an_availability_loss() -> None:
    iv = intervals([(0, at(0, 8), at(0, 10), Loss.RUNNING), (0, at(0, 11), at(0, 16), Loss.RUNNING)])
    k = kpis(iv, CountArrays.empty(), at(0, 6), at(0, 16), [0], scheduled=np.array([shift(0, 8, 16)]))
    assert k.no_data_s == 3600  # 10-11; the uncovered 06-08 is not scheduled, not missing data
    assert k.not_scheduled_s == 7200
    assert k.unplanned_stop_s == 0
    assert k.planned_busy_s == 28800
    assert k.availability == pytest.approx(25200 / 28800)
    assert dict((s, v) for s, v, _ in k.waterfall())["unplanned_stops"] == 3600
    check_waterfall(k)
    empty = kpis(IntervalArrays.empty(), CountArrays.empty(), at(0, 8), at(0, 16), [0, 1])
    assert empty.no_data_s == 57600 and empty.availability == 0.0


# -- 9. 0/0 is NaN ---------------------------------------------------------------------------------------------


def test_undefined_ratios_are_nan_and_none_in_json() -> None:
    iv = intervals([(0, at(0, 8), at(0, 16), Loss.UNPLANNED_STOP)])
    k = kpis(iv, CountArrays.empty(), at(0, 8), at(0, 16), [0], scheduled=np.empty((0, 2), np.int64))
    assert k.not_scheduled_s == 28800 and k.planned_busy_s == 0 and k.actual_production_s == 0
    for f in (
        "availability",
        "effectiveness",
        "quality_ratio",
        "oee",
        "first_pass_yield",
        "scrap_ratio",
        "rework_ratio",
        "mtbf_s",
        "mttr_s",
        "energy_per_good_unit",
        "energy_per_tonne",
    ):
        assert math.isnan(getattr(k, f)), f
    assert k.teep == 0.0  # 0 s of 28800 s: defined
    d = k.as_dict()
    assert d["oee"] is None and d["availability"] is None and d["calendar_s"] == 28800
    assert [w["step"] for w in d["waterfall"]] == list(WATERFALL_LABELS)
    json.dumps(d, allow_nan=False)
    nothing = kpis(iv, CountArrays.empty(), at(0, 8), at(0, 8), [0])  # an empty window
    assert nothing.calendar_s == 0 and math.isnan(nothing.teep) and math.isnan(nothing.availability)
    none = kpis(iv, CountArrays.empty(), at(0, 8), at(0, 16), [])  # no assets
    assert none.calendar_s == 0 and math.isnan(none.oee)


# -- 10. kpis_by equals kpis ----------------------------------------------------------------------------------


def random_case(
    rng: np.random.Generator,
) -> tuple[IntervalArrays, CountArrays, np.ndarray, np.ndarray, np.ndarray]:
    n_assets, t0, span = 4, MONDAY, 3 * DAY
    rows = []
    for a in range(n_assets):
        cuts = np.sort(rng.integers(t0 - DAY // 4, t0 + span + DAY // 4, size=2 * rng.integers(5, 60)))
        for s, e in cuts.reshape(-1, 2):  # disjoint stretches with gaps between them
            rows.append((a, int(s), int(e), Loss(int(rng.integers(0, len(Loss))))))
    rng.shuffle(rows)
    iv = intervals(rows)
    nb = 3000
    bucket = t0 + rng.integers(-100, span // M + 100, size=nb) * M
    ideal = np.where(rng.random(nb) < 0.03, np.nan, rng.choice([15.0, 18.0, 60.0], size=nb))
    tot = rng.integers(0, 20, size=nb).astype(float)
    scr = np.minimum(tot, rng.integers(0, 3, size=nb))
    c = CountArrays(
        rng.integers(0, n_assets, size=nb),
        bucket,
        tot,
        tot - scr,
        scr,
        np.zeros(nb),
        ideal,
        rng.random(nb) * 10,
        tot * 2.5,
    )
    day0 = t0 + np.arange(-1, 4) * DAY
    sched = np.concatenate(
        [np.stack([day0 + 6 * H, day0 + 14 * H], 1), np.stack([day0 + 13 * H, day0 + 22 * H], 1)]
    )
    planned = np.stack([day0 + 12 * H, day0 + 12 * H + 30 * M], 1)
    planned = np.concatenate([planned, planned + 5 * M, [[day0[1] + 23 * H, day0[1] + 25 * H]]])
    starts = rng.integers(t0 - DAY // 2, t0 + span, size=40)
    windows = np.stack([starts, starts + rng.integers(0, DAY, size=40)], 1)
    windows = np.concatenate([windows, [[t0, t0 + span], [t0, t0], [t0 + 5 * H, t0 + 6 * H]]])
    return iv, c, sched, planned, windows


@pytest.mark.parametrize("seed", range(4))
def test_kpis_by_equals_kpis_per_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    iv, c, sched, planned, windows = random_case(rng)
    for assets in ([0], [1, 3], [0, 1, 2, 3]):
        for s, p in ((sched, planned), (None, None), (sched, None), (None, planned)):
            got = kpis_by(iv, c, windows, assets, scheduled=s, planned=p)
            assert len(got) == len(windows)
            for w, k in zip(windows, got):
                want = kpis(iv, c, int(w[0]), int(w[1]), assets, scheduled=s, planned=p)
                assert_same_kpis(k, want)
                check_waterfall(k) if not math.isnan(k.reduced_speed_s) else None


def test_the_time_model_partitions_calendar_time_on_random_data() -> None:
    rng = np.random.default_rng(42)
    iv, c, sched, planned, windows = random_case(rng)
    for k in kpis_by(iv, c, windows, [0, 1, 2, 3], scheduled=sched, planned=planned):
        parts = k.not_scheduled_s + k.planned_downtime_s + k.breakdown_s + k.setup_s
        parts += k.unplanned_stop_s + k.no_data_s + k.running_s + k.minor_stop_s
        assert parts == pytest.approx(k.calendar_s)
        assert min(k.not_scheduled_s, k.planned_downtime_s, k.no_data_s) >= 0


# -- input checks and labels --------------------------------------------------------------------------------


def test_overlapping_intervals_of_one_asset_are_refused() -> None:
    iv = intervals([(0, at(0, 8), at(0, 10), Loss.RUNNING), (0, at(0, 9), at(0, 11), Loss.BREAKDOWN)])
    with pytest.raises(ValueError, match="overlap"):
        kpis(iv, CountArrays.empty(), at(0, 8), at(0, 16), [0])
    with pytest.raises(ValueError, match="overlap"):
        kpis_by(iv, CountArrays.empty(), np.array([shift(0, 8, 16)]), [0])
    # other assets may overlap each other, and a selection without the bad asset is fine
    ok = intervals([(0, at(0, 8), at(0, 10), Loss.RUNNING), (1, at(0, 9), at(0, 11), Loss.BREAKDOWN)])
    assert kpis(ok, CountArrays.empty(), at(0, 8), at(0, 16), [0, 1]).breakdown_s == 7200
    assert kpis(iv, CountArrays.empty(), at(0, 8), at(0, 16), [1]).calendar_s == 28800
    with pytest.raises(ValueError):
        intervals([(0, at(0, 10), at(0, 9), Loss.RUNNING)])
    with pytest.raises(ValueError):
        kpis(ok, CountArrays.empty(), at(0, 9), at(0, 8), [0])


def test_duplicated_shifts_are_merged() -> None:
    iv, c, sched = one_shift()
    twice = np.concatenate([sched, sched, [[at(0, 9), at(0, 10)]]])
    assert_same_kpis(
        kpis(iv, c, at(0, 6), at(0, 18), [0], scheduled=sched),
        kpis(iv, c, at(0, 6), at(0, 18), [0], scheduled=twice),
    )


def test_labels() -> None:
    zh = {k: v[1] for k, v in KPI_LABELS.items()}
    assert zh["oee"] == "设备综合效率（OEE）"
    assert zh["availability"] == "时间开动率（可用率）"
    assert zh["effectiveness"] == "性能开动率"
    assert zh["quality_ratio"] == "合格品率"
    assert zh["mtbf_s"] == "平均故障间隔时间"
    assert zh["mttr_s"] == "平均修复时间"
    assert zh["energy_per_tonne"] == "吨产品能耗"
    assert WATERFALL_TITLE[1] == "损失瀑布图"
    wz = {k: v[1] for k, v in WATERFALL_LABELS.items()}
    assert wz["micro_stops"] == "短暂停机" and wz["reduced_speed"] == "速度损失"
    assert wz["planned_downtime"] == "计划停机" and wz["breakdowns"] == "设备故障"
    assert wz["setup"] == "换型调机" and wz["not_scheduled"] == "非计划工作时间"
    assert wz["unplanned_stops"].startswith("非计划停机")


def test_combine_adds_seconds_and_counts_and_recomputes_ratios() -> None:
    """Two orders of one product on two assets: the product's figures are sums, not averages of ratios."""
    h = H
    iv = IntervalArrays(
        asset=np.array([0, 0, 1], np.int32),
        start_ns=np.array([0, 3 * h, 0], np.int64),
        end_ns=np.array([3 * h, 4 * h, h], np.int64),
        loss=np.array([Loss.RUNNING, Loss.BREAKDOWN, Loss.RUNNING], np.int8),
    )
    counts = CountArrays(
        asset=np.array([0, 1], np.int32),
        bucket_ns=np.array([0, 0], np.int64),
        total=np.array([1000.0, 100.0]),
        good=np.array([990.0, 50.0]),
        scrap=np.array([10.0, 50.0]),
        rework=np.zeros(2),
        ideal_s=np.array([10.0, 36.0]),
        energy_kwh=np.array([40.0, 10.0]),
        mass_kg=np.array([2000.0, 500.0]),
    )
    a = kpis(iv, counts, 0, 4 * h, [0])
    b = kpis(iv, counts, 0, h, [1])
    both = Kpis.combine([a, b])
    assert both.calendar_s == a.calendar_s + b.calendar_s == 5 * 3600
    assert both.total_units == 1100 and both.good_units == 1040
    assert both.availability == pytest.approx((3 * 3600 + 3600) / (5 * 3600))
    assert both.quality_ratio == pytest.approx(1040 / 1100)  # not the mean of 0.99 and 0.5
    assert both.quality_ratio != pytest.approx((a.quality_ratio + b.quality_ratio) / 2)
    assert both.oee == pytest.approx(both.availability * both.effectiveness * both.quality_ratio)
    assert both.energy_per_tonne == pytest.approx(50 / 2.5)
    assert both.n_failures == 1 and both.mtbf_s == pytest.approx(4 * 3600)
    with pytest.raises(ValueError):
        Kpis.combine([])
