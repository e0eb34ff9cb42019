"""``shopfloor analytics surface-train|inspect``: train the surface inspector, and inspect a camera folder.

Each finding becomes a quality result on the lot the asset was making when the image was taken.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BATCH = 200  # quality results per MES transaction


def cmd_surface_train(args: argparse.Namespace) -> int:
    import numpy as np

    from analytics.surface import SurfaceInspector
    from plant_simulator.surface import render_dataset

    images = render_dataset(args.n, np.random.default_rng(args.seed))
    print(f"training the surface inspector on {args.n} rendered images (seed {args.seed})", file=sys.stderr)
    insp = SurfaceInspector().fit(images, seed=args.seed)
    path = insp.save(Path(args.out))
    print(f"saved {path}")
    return 0


def _stamp(png: Path, default_asset: str | None) -> tuple[str | None, int]:
    """The asset and time of an image: from its JSON sidecar when it has them, else --asset and the file time."""
    side = png.with_suffix(".json")
    if side.exists():
        try:
            d = json.loads(side.read_text())
            if "ts_ns" in d:
                return d.get("asset", default_asset), int(d["ts_ns"])
        except (ValueError, TypeError):
            pass
    return default_asset, int(png.stat().st_mtime_ns)


def cmd_inspect(args: argparse.Namespace) -> int:
    from analytics.surface import SurfaceInspector, SurfaceModelError, verdict
    from mes.db import migrate, open_engine
    from mes.quality import InspectionResult
    from mes.records import NotFound
    from mes.repository import Repository
    from shopfloor.config.load import load_plant_config

    cfg = load_plant_config(args.config)
    try:
        insp = SurfaceInspector.load(Path(args.model))
    except SurfaceModelError as exc:
        raise SystemExit(f"analytics inspect: {exc}") from exc
    if not Path(args.images).is_dir():
        raise SystemExit(f"analytics inspect: {args.images}: not a folder of PNG images")
    engine = open_engine(cfg.mes)
    migrate(engine)
    repo = Repository(engine, cfg.mes)
    n_img = n_def = n_new = 0
    no_asset = 0
    failed_lots: set[str] = set()
    pending: list[InspectionResult] = []

    def flush() -> None:
        nonlocal n_new
        try:
            stored = repo.record_inspections(pending)
        except NotFound as exc:
            raise SystemExit(f"analytics inspect: {exc} (is it in the plant config's assets?)") from exc
        for res, (lot, created) in zip(pending, stored, strict=True):
            n_new += int(created)
            if lot and res.verdict == "fail":
                failed_lots.add(lot)
        pending.clear()

    run = insp.inspect_folder(Path(args.images))
    for path, findings in run:
        asset, ts = _stamp(path, args.asset)
        if asset is None:
            no_asset += 1
            print(
                f"{path.name}: skipped: no asset (give --asset, or an 'asset' in its JSON sidecar)",
                file=sys.stderr,
            )
            continue
        n_img += 1
        pending += [
            InspectionResult(
                asset,
                ts,
                f"surface_{f.cls}",
                "fail",
                round(f.probability, 4),
                "probability",
                "surface_inspection",
            )
            for f in findings
        ] or [InspectionResult(asset, ts, "surface", "pass", None, "", "surface_inspection")]
        n_def += int(verdict(findings) == "defect")
        if args.verbose:
            print(
                f"{path.name}: {asset} {verdict(findings)} {[(f.cls, round(f.probability, 2)) for f in findings]}"
            )
        if len(pending) >= BATCH:
            flush()
    flush()
    skipped = dict(run.counts())
    if no_asset:
        skipped["no asset"] = no_asset
    print(
        f"inspected {n_img} images: {n_def} with defects, {n_new} new quality results, "
        f"{len(failed_lots)} lots failed; skipped {skipped or 'none'}"
    )
    return 0


def add_arguments(an_sub: Any, func: Any) -> None:
    st = an_sub.add_parser("surface-train", help="train the surface inspector on rendered strip images")
    st.add_argument("--n", type=int, default=600)
    st.add_argument("--seed", type=int, default=1)
    st.add_argument("--out", default="var/analytics/surface")
    st.set_defaults(func=func)
    ins = an_sub.add_parser("inspect", help="inspect a folder of 8-bit PNGs; results onto the MES lots")
    ins.add_argument("--config", required=True)
    ins.add_argument("--images", required=True, help="the camera's folder of PNG files")
    ins.add_argument("--model", default="var/analytics/surface")
    ins.add_argument("--asset", help="the inspecting asset, for images without a JSON sidecar naming it")
    ins.add_argument("--verbose", action="store_true")
    ins.set_defaults(func=func)
