"""Offline generation: step the plant model as fast as the CPU allows and write Parquet (or CSV).

One wide file per asset (a column per signal, a status column per faultable signal) plus the ground truth.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from plant_simulator import ground_truth
from plant_simulator.clock import BLOCK_STEPS
from plant_simulator.codes import Reason, State, Status
from plant_simulator.plant import Plant
from plant_simulator.signals import SignalSpec

ROW_GROUP_BLOCKS = 24  # one row group per simulated day
STATUS_SUFFIX = ".status"


def arrow_type(spec: SignalSpec) -> pa.DataType:
    if spec.counter:
        return pa.int64() if spec.counter_scale == 1 else pa.float64()
    if spec.is_float:
        return pa.float32()
    return pa.int16()


def asset_schema(specs: list[SignalSpec]) -> pa.Schema:
    fields = [pa.field("ts", pa.timestamp("ns", tz="UTC"))]
    for s in specs:
        meta = {"unit": s.unit, "description": s.description}
        fields.append(pa.field(s.name, arrow_type(s), metadata=meta))
        if s.faultable:
            fields.append(
                pa.field(
                    s.name + STATUS_SUFFIX,
                    pa.uint8(),
                    metadata={
                        "codes": "0 good, 1 uncertain "
                        "last usable, 2 uncertain not accurate, 3 bad sensor failure"
                    },
                )
            )
    return pa.schema(fields)


def asset_file(out: Path, path: str, fmt: str) -> Path:
    return out / "signals" / f"{path}.{fmt}"


@dataclass
class OfflineResult:
    days: float
    blocks: int
    values: int  # signal values produced (rows x signals)
    wall_s: float
    files: list[Path] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.blocks * BLOCK_STEPS / max(self.wall_s, 1e-9)


class _Progress:
    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total, self.stream, self.t0, self.last = total, stream, time.monotonic(), 0.0

    def update(self, done: int) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self.last < 0.5 and done < self.total:
            return
        self.last = now
        el = now - self.t0
        frac = done / self.total
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        speed = done * BLOCK_STEPS / max(el, 1e-9)
        eta = el / frac - el if frac > 0 else 0.0
        self.stream.write(
            f"\r[{bar}] {100 * frac:5.1f}%  {done * BLOCK_STEPS / 86400:6.2f} d simulated  "
            f"{speed:,.0f}x real time  ETA {eta:5.0f} s"
        )
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _columns(
    plant: Plant,
    path: str,
    blocks: list[np.ndarray],
    status: list[np.ndarray],
    ts: np.ndarray,
    schema: pa.Schema,
) -> pa.Table:
    specs = plant.signals(path)
    vals = np.hstack(blocks)
    st = np.hstack(status)
    cols: list[pa.Array] = [pa.array(ts, pa.timestamp("ns", tz="UTC"))]
    for i, s in enumerate(specs):
        t = arrow_type(s)
        v = vals[i]
        if pa.types.is_integer(t):
            cols.append(pa.array(np.nan_to_num(v).astype(t.to_pandas_dtype())))
        else:
            cols.append(pa.array(v.astype(t.to_pandas_dtype())))
        if s.faultable:
            cols.append(pa.array(st[i]))
    return pa.Table.from_arrays(cols, schema=schema)


def generate(
    plant: Plant, days: float, out: Path, fmt: str = "parquet", progress: TextIO | None = sys.stderr
) -> OfflineResult:
    """Simulate ``days`` (rounded up to whole hours) and write every signal and the ground truth."""
    if fmt not in ("parquet", "csv"):
        raise ValueError("format must be parquet or csv")
    out = Path(out)
    n_blocks = max(1, math.ceil(days * 24))
    schemas = {p: asset_schema(plant.signals(p)) for p in plant.assets}
    writers: dict[str, pq.ParquetWriter | pacsv.CSVWriter] = {}
    files = []
    for p, schema in schemas.items():
        f = asset_file(out, p, fmt)
        f.parent.mkdir(parents=True, exist_ok=True)
        files.append(f)
        if fmt == "parquet":
            int_cols = [fl.name for fl in schema if pa.types.is_integer(fl.type)]
            writers[p] = pq.ParquetWriter(f, schema, compression="zstd", use_dictionary=int_cols)
        else:
            writers[p] = pacsv.CSVWriter(f, schema)
    bar = _Progress(n_blocks, progress)
    t0 = time.monotonic()
    values = 0
    pend_v: dict[str, list[np.ndarray]] = {p: [] for p in plant.assets}
    pend_s: dict[str, list[np.ndarray]] = {p: [] for p in plant.assets}
    pend_ts: list[np.ndarray] = []

    def flush() -> None:
        if not pend_ts:
            return
        ts = np.concatenate(pend_ts)
        for p in plant.assets:
            writers[p].write_table(_columns(plant, p, pend_v[p], pend_s[p], ts, schemas[p]))
            pend_v[p].clear()
            pend_s[p].clear()
        pend_ts.clear()

    try:
        for k in range(n_blocks):
            blk = plant.block(k)
            pend_ts.append(blk.ts_ns())
            for p in plant.assets:
                pend_v[p].append(blk.values[p])
                pend_s[p].append(blk.status[p])
                values += blk.values[p].size
            if len(pend_ts) >= ROW_GROUP_BLOCKS:
                flush()
            bar.update(k + 1)
        flush()
    finally:
        for w in writers.values():
            w.close()
    truth = ground_truth.to_table(plant.truth(n_blocks * BLOCK_STEPS), plant.start_ns)
    gt_file = out / f"ground_truth.{fmt}"
    if fmt == "parquet":
        pq.write_table(truth, gt_file)
    else:
        pacsv.write_csv(truth, gt_file)
    files.append(gt_file)
    wall = time.monotonic() - t0
    manifest = {
        "plant": plant.name,
        "site": plant.site,
        "seed": plant.seed,
        "start_ns": plant.start_ns,
        "days": n_blocks / 24,
        "step_s": 1,
        "format": fmt,
        "states": {int(s): s.name.lower() for s in State},
        "reasons": {int(r): r.name.lower() for r in Reason},
        "status_codes": {int(s): s.name.lower() for s in Status},
        "assets": {
            p: {
                "kind": rt.model.kind,
                "description": rt.model.description,
                "file": str(asset_file(out, p, fmt).relative_to(out)),
                "signals": [
                    {"name": s.name, "unit": s.unit, "description": s.description, "faultable": s.faultable}
                    for s in rt.model.signals
                ],
            }
            for p, rt in plant.assets.items()
        },
        "ground_truth": gt_file.name,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return OfflineResult(n_blocks / 24, n_blocks, values, wall, files)
