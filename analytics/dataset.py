"""The analytics input: each asset's signals on a regular time grid, and the maintenance log beside them.

Loads a plant's long-format table (``samples.csv``/``.parquet`` + ``maintenance.csv``) or a simulator run.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

NS = 1_000_000_000
#: Maintenance-log events the evaluation understands; anything else is kept and listed, not used.
KNOWN_EVENTS = (
    "install",
    "defect_onset",
    "failure",
    "repair",
    "preventive_repair",
    "sensor_fault_start",
    "sensor_fault_end",
)
#: Events that end a degradation episode (the component is renewed).
RENEWALS = ("failure", "preventive_repair")
SAMPLE_COLUMNS = ("timestamp", "asset", "signal", "value", "unit")
LOG_COLUMNS = ("asset", "kind", "event", "timestamp", "detail")


class DataError(ValueError):
    """Input that cannot be used, with the file and what is wrong in the message."""


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of a maintenance log; ``detail`` names the failure mode, or the signal of a sensor fault."""

    asset: str
    kind: str
    event: str
    ts_ns: int
    detail: str = ""

    @property
    def mode(self) -> str:
        """Failure mode (or sensor-fault signal) named by the detail: its first word before ';'."""
        return self.detail.split(";", 1)[0].strip()


@dataclass
class AssetFrame:
    """One asset on a regular grid: ``values[i]`` is signal ``names[i]``; NaN where missing or bad."""

    asset: str
    kind: str
    step_s: float
    ts_ns: np.ndarray  # int64, regular
    names: list[str]
    units: list[str]
    values: np.ndarray  # float64 (signals, steps)
    running: np.ndarray | None = None  # bool per step when a state signal is mapped

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.names), len(self.ts_ns)):
            raise DataError(
                f"{self.asset}: values shape {self.values.shape} does not match "
                f"{len(self.names)} signals x {len(self.ts_ns)} steps"
            )

    def signal(self, name: str) -> np.ndarray:
        return self.values[self.names.index(name)]

    def slice(self, t0_ns: int, t1_ns: int) -> AssetFrame:
        """Steps with ``t0_ns <= ts < t1_ns``."""
        i0, i1 = np.searchsorted(self.ts_ns, [t0_ns, t1_ns])
        run = None if self.running is None else self.running[i0:i1]
        return AssetFrame(
            self.asset,
            self.kind,
            self.step_s,
            self.ts_ns[i0:i1],
            self.names,
            self.units,
            self.values[:, i0:i1],
            run,
        )


@dataclass
class Dataset:
    """Assets, their log (known events) and what was set aside, each with a named reason."""

    assets: dict[str, AssetFrame] = field(default_factory=dict)
    log: list[LogEvent] = field(default_factory=list)
    unknown_events: list[LogEvent] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    def events(self, asset: str) -> list[LogEvent]:
        return [e for e in self.log if e.asset == asset]


@dataclass(frozen=True)
class SignalMap:
    """How a plant's own names map onto what the analytics needs, per asset kind or asset.

    ``state`` names the equipment-state signal and ``running`` the values meaning running; ``ignore``
    lists signals never scored (setpoints, counters of no interest); ``rename`` maps a plant's
    signal names to the names models were trained with (``{"Spindle.Vib.RMS": "vib_rms"}``).
    """

    state: str = "state"
    running: tuple[float, ...] = (1.0,)
    ignore: tuple[str, ...] = ("down_reason", "alarm")
    rename: Mapping[str, str] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)  # required units, by signal (after rename)


def _read_table(path: Path) -> pa.Table:
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        opts = pacsv.ConvertOptions(
            column_types={"value": pa.float64(), "asset": pa.string(), "signal": pa.string()},
            strings_can_be_null=False,
        )
        return pacsv.read_csv(path, convert_options=opts)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: cannot be read as a table: {exc}") from exc


def _to_ns(col: pa.ChunkedArray, path: Path, name: str) -> np.ndarray:
    """Timestamps (ISO text, or an Arrow timestamp) to int64 UTC nanoseconds."""
    try:
        if pa.types.is_timestamp(col.type):
            return pc.cast(col, pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        if pa.types.is_integer(col.type):
            return col.to_numpy(zero_copy_only=False).astype(np.int64)
        ts = pc.strptime(col, format="%Y-%m-%dT%H:%M:%S", unit="ns", error_is_null=True)
        if ts.null_count:
            ts = pc.cast(col, pa.timestamp("ns", tz="UTC"))
        return ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"{path}: column {name!r} holds values that are not timestamps: {exc}") from exc


def read_log(path: Path) -> tuple[list[LogEvent], list[LogEvent]]:
    """(known, unknown) events of a ``maintenance.csv``, each sorted by time."""
    if not path.exists():
        return [], []
    known: list[LogEvent] = []
    unknown: list[LogEvent] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in LOG_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing columns {', '.join(missing)} (need {', '.join(LOG_COLUMNS)})")
        rows = list(reader)
    if not rows:
        return [], []
    stamps = _to_ns(pa.chunked_array([pa.array([r["timestamp"] for r in rows])]), path, "timestamp")
    for r, ts in zip(rows, stamps, strict=True):
        ev = LogEvent(r["asset"], r["kind"], r["event"].strip().lower(), int(ts), r.get("detail") or "")
        (known if ev.event in KNOWN_EVENTS else unknown).append(ev)
    key = lambda e: (e.ts_ns, e.asset)  # noqa: E731
    return sorted(known, key=key), sorted(unknown, key=key)


def grid_step_s(ts_ns: np.ndarray) -> float:
    """The sampling step: the median spacing of distinct timestamps, in whole seconds (at least 1)."""
    u = np.unique(ts_ns)
    if len(u) < 2:
        return 1.0
    return float(max(1, round(float(np.median(np.diff(u))) / NS)))


def to_grid(
    ts_ns: np.ndarray, values: np.ndarray, t0_ns: int, step_ns: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the samples falling in each step (NaN where none); also the sample count per step."""
    k = (ts_ns - t0_ns) // step_ns
    ok = (k >= 0) & (k < n) & np.isfinite(values)
    k = k[ok]
    s = np.bincount(k, weights=values[ok], minlength=n)
    c = np.bincount(k, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan), c


def hold_unchanged(grid: np.ndarray, present: np.ndarray, delivering: np.ndarray) -> np.ndarray:
    """Report by exception: a step where a signal has no sample at all while its asset delivered others
    holds the signal's last value (an OPC UA subscription sends only changes; a counter that did not
    move sends nothing). A step with samples keeps its value (NaN if they were all Bad: a dead sensor
    stays dead), and a step where the whole asset was silent stays NaN (an outage, not a held value)."""
    n = grid.shape[-1]
    last = np.where(present, np.arange(n), -1)
    np.maximum.accumulate(last, axis=-1, out=last)
    held = np.where(last >= 0, np.take_along_axis(grid, np.maximum(last, 0), axis=-1), np.nan)
    return np.where(~present & delivering, held, grid)


def load_table_dir(
    root: Path,
    maps: Mapping[str, SignalMap] | None = None,
    kinds: Mapping[str, str] | None = None,
    step_s: float | None = None,
) -> Dataset:
    """A plant's own history: ``samples.(csv|parquet)`` in long format and ``maintenance.csv``.

    ``maps`` is keyed by asset kind or asset path (the asset wins); ``kinds`` gives kinds for assets
    the log does not name. Signals are bucketed onto one grid per asset (``step_s``, default the
    median sample spacing); units that disagree with a map's required unit are skipped with a reason.
    """
    root = Path(root)
    files = [root / "samples.parquet", root / "samples.csv"]
    found = [f for f in files if f.exists()]
    if not found:
        raise DataError(f"{root}: no samples.parquet or samples.csv")
    table = _read_table(found[0])
    missing = [c for c in SAMPLE_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{found[0]}: missing columns {', '.join(missing)} (need {', '.join(SAMPLE_COLUMNS)})"
        )
    known, unknown = read_log(root / "maintenance.csv")
    ds = Dataset(log=known, unknown_events=unknown)
    kind_of = {e.asset: e.kind for e in known + unknown if e.kind}
    kind_of.update(kinds or {})
    maps = maps or {}
    ts_all = _to_ns(table["timestamp"], found[0], "timestamp")
    assets = table["asset"].to_numpy(zero_copy_only=False).astype(str)
    signals = table["signal"].to_numpy(zero_copy_only=False).astype(str)
    vals = table["value"].to_numpy(zero_copy_only=False).astype(np.float64)
    units = table["unit"].to_numpy(zero_copy_only=False).astype(str)
    order = np.lexsort((ts_all, signals, assets))
    ts_all, assets, signals, vals, units = (x[order] for x in (ts_all, assets, signals, vals, units))
    a_bounds = np.flatnonzero(np.r_[True, assets[1:] != assets[:-1], True])
    for i0, i1 in itertools.pairwise(a_bounds):
        asset = str(assets[i0])
        kind = kind_of.get(asset, "")
        smap = maps.get(asset) or maps.get(kind) or SignalMap()
        a_ts, a_sig, a_val, a_unit = ts_all[i0:i1], signals[i0:i1], vals[i0:i1], units[i0:i1]
        step = step_s or grid_step_s(a_ts)
        step_ns = int(step * NS)
        t0 = int(a_ts.min()) // step_ns * step_ns
        n = int((int(a_ts.max()) - t0) // step_ns) + 1
        names: list[str] = []
        unit_list: list[str] = []
        rows: list[np.ndarray] = []
        running = None
        s_bounds = np.flatnonzero(np.r_[True, a_sig[1:] != a_sig[:-1], True])
        for j0, j1 in itertools.pairwise(s_bounds):
            raw = str(a_sig[j0])
            name = smap.rename.get(raw, raw)
            u = str(a_unit[j0])
            grid, _ = to_grid(a_ts[j0:j1], a_val[j0:j1], t0, step_ns, n)
            if name == smap.state:
                running = np.isin(np.round(grid), smap.running)
                continue
            if name in smap.ignore:
                continue
            need = smap.units.get(name)
            if need is not None and u != need:
                ds.skipped.append((f"{asset}/{name}", f"unit {u!r} is not the {need!r} the model expects"))
                continue
            names.append(name)
            unit_list.append(u)
            rows.append(grid)
        if not names:
            ds.skipped.append((asset, "no usable signal"))
            continue
        ts = t0 + np.arange(n, dtype=np.int64) * step_ns
        ds.assets[asset] = AssetFrame(asset, kind, step, ts, names, unit_list, np.vstack(rows), running)
    return ds


# -- simulator runs ---------------------------------------------------------------------------------------
#: How a simulator ground-truth record becomes a maintenance-log line (equipment components only).
_SIM_EVENTS = {
    "onset": "defect_onset",
    "failure": "failure",
    "repair": "repair",
    "maintenance": "preventive_repair",
    "sensor_fault_start": "sensor_fault_start",
    "sensor_fault_end": "sensor_fault_end",
}
BAD_STATUS = 3  # the simulator's status column: bad sensor failure


def load_sim_dir(root: Path, assets: Iterable[str] | None = None) -> Dataset:
    """A ``plant_simulator --offline`` run (Parquet) as a Dataset with its ground truth as the log.

    Tool and consumable lives (replaced on schedule) are listed as unknown events; the log keeps
    equipment degradation, failures, repairs and sensor faults. Bad-status values become NaN.
    """
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    if manifest.get("format") != "parquet":
        raise DataError(
            f"{root}: only Parquet simulator runs are read (this one is {manifest.get('format')})"
        )
    wanted = set(assets) if assets is not None else None
    ds = Dataset()
    step_s = float(manifest.get("step_s", 1))
    for path, meta in manifest["assets"].items():
        if wanted is not None and path not in wanted:
            continue
        t = pq.read_table(root / meta["file"])
        ts = t["ts"].cast(pa.int64()).to_numpy()
        names, units, rows = [], [], []
        running = None
        specs = {s["name"]: s for s in meta["signals"]}
        for name, spec in specs.items():
            v = t[name].to_numpy(zero_copy_only=False).astype(np.float64)
            if name == "state":
                running = v == 1
                continue
            if name in ("down_reason", "alarm"):
                continue
            st = name + ".status"
            if st in t.column_names:
                v = np.where(t[st].to_numpy() == BAD_STATUS, np.nan, v)
            names.append(name)
            units.append(spec["unit"])
            rows.append(v)
        ds.assets[path] = AssetFrame(path, meta["kind"], step_s, ts, names, units, np.vstack(rows), running)
    gt = pq.read_table(root / manifest["ground_truth"])
    cols = {c: gt[c].to_pylist() for c in ("asset", "event", "mode", "signal", "detail")}
    stamps = gt["ts"].cast(pa.int64()).to_numpy()
    # onsets and failures name the component's category (equipment, tool, consumable) in their detail
    category = {
        (a, m): d
        for a, e, m, d in zip(cols["asset"], cols["event"], cols["mode"], cols["detail"], strict=True)
        if e in ("onset", "failure")
    }
    for i, ts_ns in enumerate(stamps):
        asset, ev, mode = cols["asset"][i], cols["event"][i], cols["mode"][i]
        if (wanted is not None and asset not in wanted) or ev == "defect":
            continue
        kind = manifest["assets"][asset]["kind"]
        sensor = ev.startswith("sensor_fault")
        detail = f"{cols['signal'][i]}; {mode}" if sensor else mode
        name = _SIM_EVENTS.get(ev) if sensor or category.get((asset, mode)) == "equipment" else None
        target = ds.log if name else ds.unknown_events
        # a tool's or consumable's life is named as such, so 'failure' in the unused list is not ambiguous
        unused = f"{category.get((asset, mode), 'tool')}_{ev}"
        target.append(LogEvent(asset, kind, name or unused, int(ts_ns), detail))
    return ds


def write_table_dir(ds: Dataset, out: Path, rename: Mapping[str, str] | None = None) -> None:
    """Write a Dataset as the long-format table and log a plant would hand over (for checks and tests)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rename = rename or {}
    parts = []
    for a in ds.assets.values():
        names = list(a.names)
        vals = list(a.values)
        units = list(a.units)
        if a.running is not None:
            names.append("state")
            vals.append(np.where(a.running, 1.0, 2.0))
            units.append("")
        for name, v, u in zip(names, vals, units, strict=True):
            keep = np.isfinite(v)
            parts.append(
                pa.table(
                    {
                        "timestamp": pa.array(a.ts_ns[keep], pa.timestamp("ns", tz="UTC")),
                        "asset": pa.array([a.asset] * int(keep.sum()), pa.string()),
                        "signal": pa.array([rename.get(name, name)] * int(keep.sum()), pa.string()),
                        "value": pa.array(v[keep], pa.float64()),
                        "unit": pa.array([u] * int(keep.sum()), pa.string()),
                    }
                )
            )
    pq.write_table(pa.concat_tables(parts), out / "samples.parquet", compression="zstd")
    with (out / "maintenance.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(LOG_COLUMNS)
        for e in sorted(ds.log + ds.unknown_events, key=lambda e: e.ts_ns):
            w.writerow([e.asset, e.kind, e.event, iso(e.ts_ns), e.detail])


def iso(ts_ns: int) -> str:
    """UTC ISO 8601 with nanoseconds trimmed to microseconds."""
    s, ns = divmod(int(ts_ns), NS)
    import datetime as _dt

    t = _dt.datetime.fromtimestamp(s, _dt.UTC).replace(microsecond=ns // 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hours(ns: float) -> float:
    return float(ns) / NS / 3600.0 if math.isfinite(ns) else math.nan
