"""Predictive-maintenance building blocks on constructed data: features, alerts, RUL, sensor checks, metrics.

Each test builds the case by hand, so the expected answer is known without a model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics import evaluate as ev
from analytics import rul
from analytics.alerts import AlertRule, Tracker
from analytics.dataset import NS, AssetFrame, Dataset, LogEvent, to_grid
from analytics.features import FeatureSpec, compute, is_counter, shape_features
from analytics.health import fit, longest_run
from analytics.pdm import Alert, AssetScores, final_sensor_flags

HOUR = 3600 * NS


def frame(
    values: dict[str, np.ndarray], step_s: float = 60.0, running: np.ndarray | None = None
) -> AssetFrame:
    n = len(next(iter(values.values())))
    ts = 1_767_225_600 * NS + np.arange(n, dtype=np.int64) * int(step_s * NS)
    return AssetFrame(
        "s/a/l/x",
        "k",
        step_s,
        ts,
        list(values),
        [""] * len(values),
        np.vstack(list(values.values())),
        running,
    )


def test_shape_features_match_a_plain_loop() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 60)) * 3 + 10
    x[3, :30] = np.nan
    got = shape_features(x, ("mean", "std", "slope", "rms", "peak", "kurtosis", "crest"))
    for i in (0, 3, 49):
        row = x[i][np.isfinite(x[i])]
        k = np.flatnonzero(np.isfinite(x[i])).astype(float)
        assert got["mean"][i] == pytest.approx(row.mean())
        assert got["std"][i] == pytest.approx(row.std())
        assert got["slope"][i] == pytest.approx(np.polyfit(k, row, 1)[0])
        assert got["rms"][i] == pytest.approx(math.sqrt((row**2).mean()))
        assert got["peak"][i] == pytest.approx(np.abs(row).max())
        d = row - row.mean()
        assert got["kurtosis"][i] == pytest.approx((d**4).mean() / (d**2).mean() ** 2)
        assert got["crest"][i] == pytest.approx(np.abs(row).max() / math.sqrt((row**2).mean()))


def test_windows_are_aligned_to_the_epoch_and_use_running_samples_only() -> None:
    n = 600  # ten hours of minutes, starting on the hour
    v = np.arange(n, dtype=float) + np.random.default_rng(2).normal(0, 3, n)  # noisy: not a counter
    run = np.ones(n, bool)
    run[60:120] = False  # the second hour: stopped
    f = compute(frame({"temp": v}, running=run), FeatureSpec(shape=("mean",)))
    assert len(f.t_ns) == 10
    assert np.all(f.t_ns % HOUR == 0)
    assert f.column("temp:mean")[0] == pytest.approx(v[:60].mean())
    assert math.isnan(f.column("temp:mean")[1])  # no running sample: not scored, not 'healthy'
    assert not f.valid[1]


def test_counters_get_a_rate_and_resets_are_not_production() -> None:
    c = np.concatenate([np.arange(0, 120.0), np.arange(0, 120.0)])  # reset at minute 120
    assert is_counter(c)
    f = compute(frame({"parts": c}), FeatureSpec(shape=("mean",)))
    assert np.allclose(f.column("parts:rate"), 60.0)  # one per minute = 60 per hour


def test_noisy_level_raises_once_and_clears_only_after_it_is_over() -> None:
    rng = np.random.default_rng(3)
    level = np.r_[rng.uniform(0, 0.25, 50), 0.5 + rng.uniform(-0.2, 0.2, 40), rng.uniform(0, 0.1, 40)]
    tr = Tracker(AlertRule(on=0.35, off=0.2, persist=3, clear=12))
    events = [(i, e) for i, v in enumerate(level) if (e := tr.update(i, float(v)))]
    assert [e for _, e in events] == ["raise", "clear"]
    assert 50 <= events[0][0] < 60
    assert events[1][0] >= 90 + 11


def test_a_single_window_above_the_level_does_not_raise() -> None:
    tr = Tracker(AlertRule(on=0.5, off=0.3, persist=3))
    assert [tr.update(i, v) for i, v in enumerate([0.9, 0.1, 0.9, 0.9, 0.1, 0.9])] == [None] * 6


def test_alert_rule_refuses_off_above_on() -> None:
    with pytest.raises(ValueError, match="below on"):
        AlertRule(on=0.3, off=0.5)


def test_rul_of_a_straight_progress_line_is_exact() -> None:
    run_h = np.arange(0, 100.0)
    x = 0.2 + 0.005 * run_h  # reaches 1 at 160 running hours
    r = rul.estimate(x, run_h, util=0.5)
    assert r.hours == pytest.approx((160 - 99) / 0.5)
    cal = rul.RulCalibration(q10=0.5, q50=1.0, q90=2.0)
    r = rul.estimate(x, run_h, util=1.0, cal=cal)
    assert (r.low, r.hours, r.high) == pytest.approx((30.5, 61.0, 122.0))


def test_rul_is_withheld_without_a_rising_trend() -> None:
    run_h = np.arange(0, 50.0)
    assert math.isnan(rul.estimate(np.full(50, 0.5), run_h, 1.0).hours)
    assert math.isnan(rul.estimate(np.full(50, 0.05), run_h, 1.0).hours)  # below the trend range


def test_longest_run_per_window() -> None:
    b = np.array([[1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    assert longest_run(b).tolist() == [3, 0, 6]


def test_sensor_checks_find_dropout_stuck_and_spikes_on_the_faulty_signal_only() -> None:
    rng = np.random.default_rng(5)
    n = 60 * 24 * 6
    t = np.arange(n)
    a = 50 + 5 * np.sin(t / 300) + rng.standard_normal(n)
    b = 20 + 2 * np.cos(t / 500) + 0.3 * rng.standard_normal(n)
    day5 = 60 * 24 * 5
    a[day5 + 60 : day5 + 90] = np.nan  # dropout, 30 min
    a[day5 + 300 : day5 + 420] = a[day5 + 300]  # stuck, 2 h
    b[day5 + 800] += 40  # one spike
    fr = frame({"a": a, "b": b})
    feats = compute(fr, FeatureSpec(shape=("mean", "std")))
    hm = fit(fr, feats, feats.t_ns <= feats.t_ns[0] + 4 * 24 * HOUR)
    flags = hm.sensor_checks(fr, feats)
    hour = lambda i: (fr.ts_ns[i] - feats.t_ns[0]) // HOUR + 1  # noqa: E731 - the window holding sample i
    assert np.flatnonzero(flags["dropout"]["a"]).tolist() == [hour(day5 + 60)]
    assert hour(day5 + 360) in np.flatnonzero(flags["stuck"]["a"]).tolist()
    assert np.flatnonzero(flags["spikes"]["b"]).tolist() == [hour(day5 + 800)]
    assert (
        not flags["dropout"]["b"].any() and not flags["stuck"]["b"].any() and not flags["spikes"]["a"].any()
    )


def test_grid_bucketing_averages_and_leaves_gaps_empty() -> None:
    ts = np.array([0, 10, 70, 200]) * NS
    g, c = to_grid(ts, np.array([1.0, 3.0, 5.0, 7.0]), 0, 60 * NS, 4)
    assert c.tolist() == [2, 1, 0, 1]
    assert g[0] == 2.0 and g[1] == 5.0 and math.isnan(g[2]) and g[3] == 7.0


def scores_for(asset: str, t_ns: np.ndarray, rul_h: np.ndarray) -> AssetScores:
    n = len(t_ns)
    z = np.zeros(n)
    return AssetScores(
        asset, "k", t_ns, np.ones(n, bool), z, z, [""] * n, 1 - z, np.column_stack([rul_h] * 3), {}, [()] * n
    )


def test_metrics_count_detection_lead_false_alarms_and_rul_error() -> None:
    a = "s/a/l/x"
    t = np.arange(0, 40 * 24) * HOUR  # 40 days of hourly windows
    onset, fail = 10 * 24 * HOUR, 20 * 24 * HOUR
    true = (fail - t) / HOUR
    pred = np.where(t >= fail - 0.3 * (fail - onset), true * 1.1, np.nan)  # 10 % high: within 20 %
    sc = scores_for(a, t, pred)
    log = [LogEvent(a, "k", "defect_onset", onset, "bearing"), LogEvent(a, "k", "failure", fail, "bearing")]
    alert = lambda ts: Alert(a, ts, "equipment", "bearing", 1, 1, 1, 1.0)  # noqa: E731
    alerts = {a: [alert(onset + 5 * 24 * HOUR), alert(30 * 24 * HOUR)]}
    res = ev.evaluate(Dataset(log=log), [sc], alerts)
    m = res.modes["bearing"]
    assert (m.episodes, m.failures, m.detected) == (1, 1, 1)
    assert m.lead(0.5) == pytest.approx(5 * 24)
    assert res.false_alarms == 1
    assert res.asset_months == pytest.approx((40 * 24 - 1) / 24 / 30)
    assert m.within20() == 1.0
    assert m.mae() == pytest.approx(np.nanmean(np.abs(pred - true)[np.isfinite(pred) & (t < fail)]))


def test_the_cli_default_healthy_period_is_the_library_one() -> None:
    from analytics.pdm import HEALTHY_DAYS
    from shopfloor.app.analytics_args import HEALTHY_DAYS as CLI_DAYS

    assert CLI_DAYS == HEALTHY_DAYS


def test_drift_builds_up_from_the_healthy_level_not_from_the_first_window() -> None:
    rng = np.random.default_rng(8)
    n = 60 * 24 * 8
    t = np.arange(n)
    a = 50 + 5 * np.sin(t / 300) + rng.standard_normal(n)
    b = 20 + 0.3 * rng.standard_normal(n)
    fr = frame({"a": a, "b": b})
    feats = compute(fr, FeatureSpec(shape=("mean", "std")))
    hm = fit(fr, feats, feats.t_ns <= feats.t_ns[0] + 4 * 24 * HOUR)
    # scoring starts (as a live lookback does) in an hour when `b` happens to sit far from its level
    day5 = 60 * 24 * 5
    later = slice(day5, None)
    b2 = b.copy()
    b2[day5 : day5 + 60] += 6.0
    scored = frame({"a": a[later], "b": b2[later]})
    sf = compute(scored, FeatureSpec(shape=("mean", "std")))
    assert not hm.sensor_checks(scored, sf)["drift"]["b"].any()
    # a real drift, the level walking away for days, is still found
    b3 = b.copy()
    b3[day5:] += np.linspace(0, 4.0, n - day5)
    drifting = frame({"a": a[later], "b": b3[later]})
    df = compute(drifting, FeatureSpec(shape=("mean", "std")))
    assert hm.sensor_checks(drifting, df)["drift"]["b"][-24:].all()


def test_a_drift_on_one_signal_is_a_sensor_fault_and_on_two_at_once_it_is_the_equipment() -> None:
    rng = np.random.default_rng(9)
    n = 60 * 24 * 9
    day5 = 60 * 24 * 5
    base = {s: 20 + 0.3 * rng.standard_normal(n) for s in ("a", "b", "c")}
    fr = frame(base)
    feats = compute(fr, FeatureSpec(shape=("mean", "std")))
    hm = fit(fr, feats, feats.t_ns <= feats.t_ns[0] + 4 * 24 * HOUR)
    walk = np.r_[np.zeros(day5), np.linspace(0, 4.0, n - day5)]

    def drift_flags(*drifting: str) -> dict[str, np.ndarray]:
        fr2 = frame({s: v + walk if s in drifting else v for s, v in base.items()})
        f2 = compute(fr2, FeatureSpec(shape=("mean", "std")))
        z = hm.z(f2)
        return final_sensor_flags(hm, fr2, f2, z, None)["drift"]

    alone = drift_flags("b")
    assert alone["b"][-24:].all() and not alone["a"].any() and not alone["c"].any()
    together = drift_flags("a", "b")  # the process moved: no instrument is blamed
    assert not together["a"].any() and not together["b"].any()
