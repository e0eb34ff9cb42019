"""Benchmark of the predictive-maintenance analytics: feature extraction, training, scoring per asset.

Feature extraction is timed beside a naive per-window Python loop computing the same features (asserted
equal); scoring latency is set beside the live scoring interval. Run: .venv/bin/python benchmarks/analytics.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics import pdm
from analytics.dataset import load_sim_dir
from analytics.features import SHAPE, FeatureSpec, compute
from plant_simulator.layout import qijiang_assets
from plant_simulator.offline import generate
from plant_simulator.plant import Plant


def naive_features(values: np.ndarray, running: np.ndarray, w: int) -> np.ndarray:
    """The same shape features, one window and one signal at a time in plain Python."""
    rows = []
    for k in range(values.shape[1] // w):
        row = []
        for j in range(values.shape[0]):
            xs = [
                float(v)
                for v, r in zip(values[j, k * w : (k + 1) * w], running[k * w : (k + 1) * w], strict=True)
                if r and v == v
            ]
            if len(xs) < 2:
                row += [float("nan")] * len(SHAPE)
                continue
            n = len(xs)
            mean = sum(xs) / n
            var = sum((x - mean) ** 2 for x in xs) / n
            idx = [
                i
                for i, (v, r) in enumerate(
                    zip(values[j, k * w : (k + 1) * w], running[k * w : (k + 1) * w], strict=True)
                )
                if r and v == v
            ]
            im = sum(idx) / n
            sxx = sum((i - im) ** 2 for i in idx)
            slope = (
                sum((i - im) * (x - mean) for i, x in zip(idx, xs, strict=True)) / sxx
                if sxx
                else float("nan")
            )
            rms = (sum(x * x for x in xs) / n) ** 0.5
            peak = max(abs(x) for x in xs)
            kurt = (sum((x - mean) ** 4 for x in xs) / n) / var**2 if var > 0 else float("nan")
            crest = peak / rms if rms > 0 else float("nan")
            row += [mean, var**0.5, slope, rms, peak, kurt, crest]
        rows.append(row)
    return np.array(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument(
        "--every-s", type=float, default=60.0, help="live scoring interval the latency is set beside"
    )
    args = ap.parse_args()
    kinds = {"cnc", "hot_rolling_mill", "cold_rolling_mill", "continuous_caster", "extrusion_press"}
    assets = [a for a in qijiang_assets() if a.kind in kinds]
    with tempfile.TemporaryDirectory() as tmp:
        generate(Plant(assets, seed=3), args.days, Path(tmp), every=60, progress=None)
        ds = load_sim_dir(Path(tmp))
    spec = FeatureSpec(shape=SHAPE)
    # features: vectorised vs naive, on every asset (values x running of the first CNC for the naive loop)
    frame = next(iter(ds.assets.values()))
    n_samples = frame.values.size
    t = time.perf_counter()
    for _ in range(3):
        f = compute(frame, spec)
    ours = (time.perf_counter() - t) / 3
    w = round(spec.window_s / frame.step_s)
    nv = frame.values[:, : (frame.values.shape[1] // w) * w]
    t = time.perf_counter()
    base = naive_features(nv, frame.running[: nv.shape[1]], w)
    naive = time.perf_counter() - t
    for j, name in enumerate(frame.names):  # the same numbers, where both give one
        for k, feat in enumerate(SHAPE):
            if f"{name}:{feat}" in f.names:
                a, b = f.column(f"{name}:{feat}"), base[:, j * len(SHAPE) + k]
                both = np.isfinite(a) & np.isfinite(b)
                assert np.allclose(a[both], b[both], rtol=1e-6, atol=1e-9), (name, feat)
    print(
        f"feature extraction {n_samples / ours:,.0f} samples/s ({len(f.names)} features x {len(f.t_ns)} windows) "
        f"vs naive loop {n_samples / naive:,.0f} samples/s ratio {naive / ours:.2f}x"
    )
    t = time.perf_counter()
    models, _ = pdm.train(ds, FeatureSpec(), list(ds.assets))
    train_s = time.perf_counter() - t
    total_days = args.days * len(ds.assets)
    print(
        f"training on {len(ds.assets)} assets x {args.days:g} days: {train_s:.1f} s ({total_days / train_s:.1f} asset-days/s)"
    )
    lat = []
    for frame in ds.assets.values():
        hm, _ = pdm.fit_blind(frame, FeatureSpec())
        last = frame.slice(int(frame.ts_ns[-1]) - 14 * 86400 * 10**9, int(frame.ts_ns[-1]) + 1)
        t = time.perf_counter()
        feats = compute(last, FeatureSpec())
        pdm.score(last, feats, hm, models.kinds.get(frame.kind))
        lat.append(time.perf_counter() - t)
    worst, total = max(lat), sum(lat)
    print(
        f"scoring latency per asset (14-day lookback) median {np.median(lat) * 1000:.0f} ms, worst {worst * 1000:.0f} ms; "
        f"all {len(lat)} assets {total:.2f} s of a {args.every_s:g} s interval ratio {total / args.every_s:.3f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
