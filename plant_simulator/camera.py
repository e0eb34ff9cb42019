"""The slitting line's surface camera, offline: one strip image per slit coil, with that coil's true defects.

Reads an offline run (coil counter, ground-truth surface defects) and writes PNGs a plant camera would drop.
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from plant_simulator import surface

#: Ground-truth defect modes of the slitter -> the camera's classes.
CLASSES = {"surface_scratch": "scratch", "surface_hole": "hole", "surface_inclusion": "inclusion"}


def coil_images(
    run: Path, asset: str, out: Path, seed: int = 0, metal: str = "copper", limit: int | None = None
) -> list[Path]:
    """One image per coil slit by ``asset`` in the run (the first ``limit``): ``<ts_ns>.png`` plus a
    sidecar naming the asset, the time and the coil."""
    manifest = json.loads((run / "manifest.json").read_text())
    sig = pq.read_table(run / manifest["assets"][asset]["file"], columns=["ts", "coil_count"])
    ts = sig["ts"].cast("int64").to_numpy()
    coils = sig["coil_count"].to_numpy()
    ends = np.flatnonzero(np.diff(coils) > 0) + 1
    gt = pq.read_table(run / manifest["ground_truth"])
    mine = np.array([a == asset for a in gt["asset"].to_pylist()])
    modes = np.array(gt["mode"].to_pylist())
    gts = gt["ts"].cast("int64").to_numpy()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    prev = int(ts[0])
    key = zlib.crc32(asset.encode())
    for k, i in enumerate(ends[:limit]):
        end = int(ts[i])
        sel = mine & (gts > prev) & (gts <= end) & np.isin(modes, list(CLASSES))
        classes = [CLASSES[m] for m in modes[sel]][:3]
        rng = np.random.default_rng([seed, key, k])
        img = surface.render_image(rng, metal=metal, defects=classes)
        path = surface.save_png(img, out / f"{end}.png")
        side = path.with_suffix(".json")
        doc = json.loads(side.read_text())
        side.write_text(
            json.dumps({**doc, "asset": asset, "ts_ns": end, "coil": int(coils[i])}, indent=1) + "\n"
        )
        paths.append(path)
        prev = end
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", required=True, help="an offline run directory (Parquet)")
    ap.add_argument("--asset", required=True, help="the slitting line's asset path")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    paths = coil_images(Path(args.run), args.asset, Path(args.out), args.seed)
    print(f"wrote {len(paths)} coil images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
