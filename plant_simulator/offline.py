"""Offline generation: step the plant model as fast as the CPU allows and write Parquet (or CSV).

One wide file per asset (a column per signal, a status column per faultable signal) plus the ground truth.
``every`` keeps every Nth simulated second (the model still steps every second); ``estimate`` says
how large the output will be before anything is written.
"""

from __future__ import annotations

import io
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
MAX_EVERY_S = 86400


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


def n_blocks_for(days: float) -> int:
    """Blocks (simulated hours) generated for ``days``: rounded up to whole hours, at least one."""
    return max(1, math.ceil(days * 24))


def kept_steps(t0: int, n: int, every: int) -> np.ndarray:
    """Indexes within a block starting at step ``t0`` of the steps kept: those with step % every == 0."""
    return np.arange((-t0) % every, n, every, dtype=np.int64)


def check_every(every: int) -> int:
    if not isinstance(every, int) or not 1 <= every <= MAX_EVERY_S:
        raise ValueError(f"every must be a whole number of seconds from 1 to {MAX_EVERY_S}, got {every!r}")
    return every


def _writer(target: Path | io.BytesIO, schema: pa.Schema, fmt: str) -> pq.ParquetWriter | pacsv.CSVWriter:
    if fmt == "parquet":
        int_cols = [fl.name for fl in schema if pa.types.is_integer(fl.type)]
        return pq.ParquetWriter(target, schema, compression="zstd", use_dictionary=int_cols)
    return pacsv.CSVWriter(target, schema)


@dataclass(frozen=True)
class Estimate:
    """How large ``generate`` output will be, from the first simulated hour encoded in memory."""

    days: float
    every: int
    rows_per_asset: int
    values: int
    bytes: int

    def text(self) -> str:
        return f"about {human_bytes(self.bytes)}"


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def estimate(plant: Plant, days: float, fmt: str = "parquet", every: int = 1) -> Estimate:
    """The output size of ``generate(plant, days, fmt=fmt, every=every)``, without writing anything.

    The first block is computed (``generate`` reuses it) and each asset's kept rows are encoded in
    memory with the same writer settings; per-file overhead and per-row size are scaled to the run.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError("format must be parquet or csv")
    check_every(every)
    n_blocks = n_blocks_for(days)
    rows = -(-n_blocks * BLOCK_STEPS // every)
    blk = plant.block(0)
    idx = kept_steps(blk.t0, blk.n, every)
    ts = blk.ts_ns()[idx]
    total = 0.0
    values = 0
    for p in plant.assets:
        schema = asset_schema(plant.signals(p))
        empty, sample = io.BytesIO(), io.BytesIO()
        _writer(empty, schema, fmt).close()
        w = _writer(sample, schema, fmt)
        w.write_table(_columns(plant, p, [blk.values[p][:, idx]], [blk.status[p][:, idx]], ts, schema))
        w.close()
        overhead = len(empty.getvalue())
        per_row = max(0, len(sample.getvalue()) - overhead) / max(1, len(idx))
        total += overhead + per_row * rows
        values += rows * blk.values[p].shape[0]
    return Estimate(n_blocks / 24, every, rows, values, int(total))


def generate(
    plant: Plant,
    days: float,
    out: Path,
    fmt: str = "parquet",
    progress: TextIO | None = sys.stderr,
    every: int = 1,
) -> OfflineResult:
    """Simulate ``days`` (rounded up to whole hours) and write every signal and the ground truth.

    ``every`` keeps one row per ``every`` simulated seconds (steps that are multiples of it); the
    model still steps every second, so the kept rows are exactly those of a full run.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError("format must be parquet or csv")
    check_every(every)
    out = Path(out)
    n_blocks = n_blocks_for(days)
    schemas = {p: asset_schema(plant.signals(p)) for p in plant.assets}
    writers: dict[str, pq.ParquetWriter | pacsv.CSVWriter] = {}
    files = []
    for p, schema in schemas.items():
        f = asset_file(out, p, fmt)
        f.parent.mkdir(parents=True, exist_ok=True)
        files.append(f)
        writers[p] = _writer(f, schema, fmt)
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
            idx = kept_steps(blk.t0, blk.n, every)
            if len(idx):
                pend_ts.append(blk.ts_ns()[idx])
                for p in plant.assets:
                    v = blk.values[p] if every == 1 else blk.values[p][:, idx]
                    pend_v[p].append(v)
                    pend_s[p].append(blk.status[p] if every == 1 else blk.status[p][:, idx])
                    values += v.size
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
        "step_s": every,
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
