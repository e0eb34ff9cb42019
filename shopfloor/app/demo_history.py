"""The demo's first start: weeks of the plant's operation simulated offline into the historian, and the
predictive-maintenance models trained on that history, so that the screen is full within minutes.

The same plant then goes on live from where the history ends; a second start finds the history and skips this.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from historian.factory import open_store
from plant_simulator.offline import generate
from plant_simulator.plant import Plant
from shopfloor.app.backfill import QUALITY
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import PlantConfig
from shopfloor.model import SeriesKey

log = logging.getLogger(__name__)
HISTORY_DAYS = 35.0
HISTORY_DIR = Path("var/demo/history")
MODELS = Path("var/analytics/models.npz")
PLAN = Path("var/demo/history-plan.json")
NS = 1_000_000_000


def history_plan(now_s_ns: int, days: float, path: Path = PLAN) -> tuple[int, float]:
    """The history's first instant and length in days: those of an interrupted first start when there was
    one, else ``days`` up to ``now_s_ns``. Kept in ``path`` before anything is simulated, so a first start
    stopped during the back-fill rebuilds the very same history on the next run (the same plant, seed and
    times give the same samples, which the store keeps once) instead of a second copy shifted in time."""
    if path.exists():
        plan = json.loads(path.read_text())
        return int(plan["start_ns"]), float(plan["days"])
    start = now_s_ns - int(days * 86400) * NS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"start_ns": start, "days": days}) + "\n")
    tmp.replace(path)
    return start, days


CHUNK_ROWS = 20_000  # rows of one asset per write (about a million samples for a wide asset)


async def back_fill(cfg: PlantConfig, plant: Plant, days: float, out: Path = HISTORY_DIR) -> int:
    """Simulate ``days`` of ``plant`` (a fresh one, starting ``days`` ago) at one row a minute into
    ``out`` (Parquet with its ground truth) and the configured historian; returns the samples stored."""
    t0 = time.monotonic()
    print(f"First start: simulating {days:g} days of the plant's history (one row a minute)", flush=True)
    tmp = out.with_name(out.name + ".partial")
    generate(plant, days, tmp, every=60, progress=sys.stderr)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    manifest = json.loads((out / "manifest.json").read_text())
    store = open_store(cfg.historian)
    await store.open()
    written = 0
    try:
        assets = list(manifest["assets"].items())
        for i, (path, meta) in enumerate(assets, 1):
            written += await _import_asset(
                store, path, out / meta["file"], [s["name"] for s in meta["signals"]]
            )
            sys.stderr.write(f"\rstoring the history: {i}/{len(assets)} assets, {written:,} samples")
        sys.stderr.write("\n")
    finally:
        await store.close()
    print(
        f"History: {written:,} samples of {days:g} days stored in {time.monotonic() - t0:.0f} s", flush=True
    )
    return written


async def _import_asset(store: object, path: str, file: Path, signals: list[str]) -> int:
    qmap = np.zeros(256, np.uint8)
    for status, q in QUALITY.items():
        qmap[status] = q
    keys = tuple(SeriesKey(path, s) for s in signals)
    pf = pq.ParquetFile(file)
    n = 0
    for rb in pf.iter_batches(batch_size=CHUNK_ROWS):
        t = pa.Table.from_batches([rb])
        ts = t["ts"].cast(pa.int64()).to_numpy()
        series, stamps, values, quality = [], [], [], []
        for i, s in enumerate(signals):
            v = t[s].to_numpy(zero_copy_only=False).astype(np.float64)
            st = t[s + ".status"].to_numpy() if s + ".status" in t.column_names else None
            series.append(np.full(len(ts), i, np.uint32))
            stamps.append(ts)
            values.append(v)
            quality.append(qmap[st] if st is not None else np.zeros(len(ts), np.uint8))
        batch = SampleBatch(
            keys,
            np.concatenate(series),
            np.concatenate(stamps),
            np.concatenate(values),
            np.concatenate(quality),
        )
        await store.write_samples(batch)  # type: ignore[attr-defined]
        n += len(batch)
    return n


def train_on_history(history: Path = HISTORY_DIR, out: Path = MODELS) -> Path | None:
    """Predictive-maintenance models learned from the back-filled history and its ground-truth log."""
    from analytics import pdm, store
    from analytics.dataset import load_sim_dir
    from analytics.features import FeatureSpec
    from shopfloor.app.analytics_cli import SIM_KINDS

    ds = load_sim_dir(history)
    assets = [a for a, f in ds.assets.items() if f.kind in SIM_KINDS]
    if not assets:
        return None
    print(f"Training the predictive-maintenance models on the history of {len(assets)} assets", flush=True)
    models, skipped = pdm.train(ds, FeatureSpec(), assets)
    for what, why in skipped:
        log.info("analytics: skipped %s: %s", what, why)
    t = [int(f.ts_ns[0]) for f in ds.assets.values() if len(f.ts_ns)]
    t1 = [int(f.ts_ns[-1]) for f in ds.assets.values() if len(f.ts_ns)]
    models.meta.update({"source": f"demo history {history}", "training_window": [min(t), max(t1)]})
    path = store.save(models, out)
    kinds = ", ".join(f"{k} ({', '.join(km.modes) or 'anomaly only'})" for k, km in models.kinds.items())
    print(f"Models saved to {path}: {kinds}", flush=True)
    return path
