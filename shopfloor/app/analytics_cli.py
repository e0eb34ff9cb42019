"""``shopfloor analytics train|evaluate|run``: models from simulator seeds or a plant's own history.

Simulator runs are generated here (the analytics package never imports the simulator) and cached.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from analytics import evaluate as ev_mod
from analytics import pdm, store
from analytics.dataset import DataError, Dataset, LogEvent, SignalMap, load_sim_dir, load_table_dir
from analytics.features import SHAPE, FeatureSpec
from analytics.health import NotEnoughData

SIM_KINDS = (
    "cnc",
    "hot_rolling_mill",
    "cold_rolling_mill",
    "continuous_caster",
    "extrusion_press",
    "annealing_furnace",
    "induction_furnace",
)
DEFAULT_CACHE = Path("var/analytics/sim")
#: The virtual plant's signals that measure the product or count its rejects, per kind: outcomes, never
#: features of defect prediction (a plant names its own in ``DefectModel(kind, outcomes=...)``).
SIM_OUTCOMES: dict[str, tuple[str, ...]] = {
    "cnc": ("bore_diameter", "surface_roughness", "scrap_count"),
    "extrusion_press": ("scrap_count",),
    "hot_rolling_mill": ("exit_thickness", "thickness_deviation"),
    "cold_rolling_mill": ("exit_thickness", "thickness_deviation"),
    "welding_robot": ("scrap_count",),
    "slitting_line": (
        "burr_height",
        "scratch_count",
        "hole_count",
        "inclusion_count",
        "surface_verdict",
        "surface_class",
    ),
    "assembly_test": ("press_force", "test_torque", "leak_rate", "fail_count"),
    "measuring_station": ("measured_bore", "measured_flatness", "reject_count"),
}


def sim_run(seed: int, days: float, cache: Path, every: int = 60) -> Path:
    """A cached offline simulator run of the assets that degrade (generated on first use)."""
    from plant_simulator.layout import qijiang_assets
    from plant_simulator.offline import generate
    from plant_simulator.plant import Plant

    out = cache / f"seed{seed}-{days:g}d-every{every}s"
    if (out / "manifest.json").exists():
        return out
    assets = [a for a in qijiang_assets() if a.kind in SIM_KINDS]
    print(f"simulating seed {seed}: {days:g} days of {len(assets)} assets into {out}", file=sys.stderr)
    tmp = out.with_name(out.name + ".partial")
    generate(Plant(assets, seed=seed, site="qijiang"), days, tmp, every=every, progress=sys.stderr)
    tmp.rename(out)
    return out


def merged_sim(seeds: list[int], days: float, cache: Path) -> Dataset:
    """Several seeds as one dataset; asset paths get ``#seed`` so each seed's plant stays distinct."""
    ds = Dataset()
    for seed in seeds:
        part = load_sim_dir(sim_run(seed, days, cache))
        for path, frame in part.assets.items():
            frame.asset = f"{path}#{seed}"
            ds.assets[frame.asset] = frame
        ds.log += [LogEvent(f"{e.asset}#{seed}", e.kind, e.event, e.ts_ns, e.detail) for e in part.log]
        ds.unknown_events += [
            LogEvent(f"{e.asset}#{seed}", e.kind, e.event, e.ts_ns, e.detail) for e in part.unknown_events
        ]
    return ds


def read_maps(path: str | None) -> dict[str, SignalMap]:
    """Signal maps from YAML: ``{kind or asset: {state, running, ignore, rename, units}}``."""
    if not path:
        return {}
    raw = yaml.safe_load(Path(path).read_text()) or {}
    out = {}
    for key, d in raw.items():
        d = d or {}
        out[key] = SignalMap(
            state=d.get("state", "state"),
            running=tuple(float(x) for x in d.get("running", [1])),
            ignore=tuple(d.get("ignore", ())),
            rename=dict(d.get("rename", {})),
            units=dict(d.get("units", {})),
        )
    return out


def _spec(args: argparse.Namespace) -> FeatureSpec:
    shape = tuple(args.features.split(",")) if args.features else ("mean", "std")
    bad = [s for s in shape if s not in SHAPE]
    if bad:
        raise SystemExit(f"unknown features {', '.join(bad)}; known: {', '.join(SHAPE)}")
    return FeatureSpec(window_s=args.window_s, shape=shape)


def _bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="asset", file=sys.stderr, disable=None)


def _train(ds: Dataset, assets: list[str], spec: FeatureSpec, meta: dict) -> tuple[pdm.Models, list]:
    bar = _bar(len(assets), "training")
    try:
        models, skipped = pdm.train(ds, spec, assets, progress=lambda _a: bar.update(1))
    finally:
        bar.close()
    models.meta.update(meta)
    return models, skipped


def _data(args: argparse.Namespace) -> Dataset:
    try:
        return load_table_dir(Path(args.data), read_maps(args.map), step_s=args.step_s)
    except DataError as exc:
        raise SystemExit(f"analytics: {exc}") from exc


def default_training_assets(ds: Dataset) -> list[str]:
    """The assets whose log holds failures or repairs."""
    return sorted({e.asset for e in ds.log if e.event in ("failure", "preventive_repair")} & set(ds.assets))


def cmd_train(args: argparse.Namespace) -> int:
    spec = _spec(args)
    if args.data:
        ds = _data(args)
        assets = args.train.split(",") if args.train else default_training_assets(ds)
        meta = {"source": str(args.data), "train_assets": assets}
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
        ds = merged_sim(seeds, args.days, Path(args.cache))
        assets = list(ds.assets)
        meta = {"source": "simulator", "seeds": seeds, "days": args.days}
    t0 = min(int(f.ts_ns[0]) for f in ds.assets.values() if len(f.ts_ns))
    t1 = max(int(f.ts_ns[-1]) for f in ds.assets.values() if len(f.ts_ns))
    meta["training_window"] = [t0, t1]
    models, skipped = _train(ds, assets, spec, meta)
    for what, why in skipped + ds.skipped:
        print(f"skipped {what}: {why}", file=sys.stderr)
    path = store.save(models, Path(args.out))
    kinds = ", ".join(f"{k} ({', '.join(km.modes) or 'anomaly only'})" for k, km in models.kinds.items())
    print(f"saved {path}: {len(models.health)} asset models; kinds {kinds}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    spec = _spec(args)
    out = Path(args.out)
    t_start = time.monotonic()
    if args.data:
        ds = _data(args)
        train_assets = args.train.split(",") if args.train else default_training_assets(ds)
        models, skipped = _train(ds, train_assets, spec, {"source": str(args.data)})
        test = ds
        score_assets = [a for a in ds.assets if a not in set(train_assets)]
        if not score_assets:
            raise SystemExit(
                "analytics evaluate: every asset was used for training, none is left to score; "
                "name the training assets with --train"
            )
        header = [
            f"Data: `{args.data}`; trained on {', '.join(train_assets) or 'nothing'}; scored blind (its own "
            f"first {args.healthy_days:g} days as its healthy period): {', '.join(score_assets)}.",
        ]
    else:
        train_seeds = [int(s) for s in args.train_seeds.split(",")]
        test_seeds = [int(s) for s in args.test_seeds.split(",")]
        if set(train_seeds) & set(test_seeds):
            raise SystemExit("analytics evaluate: a seed cannot be both a training and a test seed")
        train = merged_sim(train_seeds, args.days, Path(args.cache))
        test = merged_sim(test_seeds, args.days, Path(args.cache))
        models, skipped = _train(train, list(train.assets), spec, {"seeds": train_seeds})
        from analytics.defects import evaluate_defects

        dirs = lambda seeds: [sim_run(s, args.days, Path(args.cache)) for s in seeds]  # noqa: E731
        defects = evaluate_defects(dirs(train_seeds), dirs(test_seeds), outcomes=SIM_OUTCOMES)
        score_assets = list(test.assets)
        header = [
            f"Simulator: trained on seeds {train_seeds}, scored on seeds {test_seeds} never used in training, "
            f"{args.days:g} simulated days each, 1-minute samples, {spec.window_s:g} s windows.",
        ]
    scores, alerts = [], {}
    bar = _bar(len(score_assets), "scoring")
    for a in score_assets:
        frame = test.assets[a]
        try:
            hm, feats = pdm.fit_blind(frame, spec, args.healthy_days)
        except NotEnoughData as exc:
            test.skipped.append((a, str(exc)))
            bar.update(1)
            continue
        km = models.kinds.get(frame.kind)
        sc = pdm.score(frame, feats, hm, km)
        scores.append(sc)
        alerts[a] = pdm.alerts(sc, km)
        bar.update(1)
    bar.close()
    for what, why in skipped:
        test.skipped.append((what, why))
    result = ev_mod.evaluate(test, scores, alerts)
    lines = ev_mod.table_lines(result)
    extra: list[str] = []
    if not args.data:
        lines += [r.line() for r in defects]
        extra = ["## Defect prediction (held-out seeds)", "", *(f"    {r.line()}" for r in defects)]
    for line in lines:
        print(line)
    ev_mod.write_csvs(out, scores, alerts)
    rep = ev_mod.report(
        out, result, scores, test, alerts, [*header, f"Took {time.monotonic() - t_start:.0f} s."], extra
    )
    print(f"report {rep}; alerts {out / 'alerts.csv'}; health {out / 'health.csv'}")
    return 0


def cmd_analytics(args: argparse.Namespace) -> int:
    if args.analytics_command == "train":
        return cmd_train(args)
    if args.analytics_command == "evaluate":
        return cmd_evaluate(args)
    if args.analytics_command == "spc":
        from shopfloor.app import analytics_spc

        return analytics_spc.cmd_spc(args)
    if args.analytics_command in ("surface-train", "inspect"):
        from shopfloor.app import analytics_surface

        if args.analytics_command == "inspect":
            return analytics_surface.cmd_inspect(args)
        return analytics_surface.cmd_surface_train(args)
    from shopfloor.app import analytics_live

    return analytics_live.cmd_run(args)
