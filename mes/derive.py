"""Live derivation: samples of the mapped state, reason, counter and energy signals become state
intervals, count buckets and counter increments (for lots), exactly once.

Each (asset, signal) has a cursor, the time and value of the last sample used; a sample at or before it
is skipped, so feeding the same history twice (a replay from the historian, a restart) changes nothing.
The cursors are saved in the same transaction as what they produced (see mes.repository).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from mes.losses import StateCategory
from shopfloor.batch import SampleBatch
from shopfloor.config.mes import MesAssetConfig, MesConfig
from shopfloor.model import Quality

COUNT_FIELDS = ("total", "good", "scrap", "rework", "energy_kwh", "mass_kg")


@dataclass
class OpenInterval:
    """The interval an asset is in now (its end is not known yet)."""

    start_ns: int
    state: StateCategory
    plc_state: int | None
    plc_reason: int | None


@dataclass(frozen=True, slots=True)
class IntervalChange:
    """Close the interval that started at ``closes_start`` (if any) at ``at_ns`` and open a new one."""

    asset: str
    at_ns: int
    closes_start: int | None
    state: StateCategory
    plc_state: int | None
    plc_reason: int | None
    amend: bool = False  # same start as the open interval: change its state/reason in place


@dataclass(frozen=True, slots=True)
class Increment:
    """A counter went up by ``delta`` at ``ts_ns`` (to ``value``); lots are made from these."""

    asset: str
    signal: str
    ts_ns: int
    value: float
    delta: float


@dataclass
class Changes:
    """What one feed produced; applied by the repository in one transaction."""

    intervals: list[IntervalChange] = field(default_factory=list)
    buckets: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # COUNT_FIELDS order
    increments: list[Increment] = field(default_factory=list)
    cursors: dict[tuple[str, str], tuple[int, float | None]] = field(default_factory=dict)
    samples_used: int = 0

    def __bool__(self) -> bool:
        return bool(self.intervals or self.buckets or self.increments or self.cursors)


@dataclass
class _Asset:
    cfg: MesAssetConfig
    codes: dict[int, StateCategory]
    counter_fields: dict[str, list[str]]  # signal -> COUNT_FIELDS it feeds
    running_codes: np.ndarray  # the state codes that mean running
    open: OpenInterval | None = None
    state_code: int | None = None
    reason_code: int | None = None


class Deriver:
    """Incremental, idempotent derivation for every asset of ``cfg.assets``.

    ``lot_counters`` are extra (asset, signal) counters whose increments are reported for lot making.
    """

    def __init__(
        self,
        cfg: MesConfig,
        cursors: dict[tuple[str, str], tuple[int, float | None]] | None = None,
        open_intervals: dict[str, OpenInterval] | None = None,
        lot_counters: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.cfg = cfg
        self.bucket_ns = cfg.bucket_s * 1_000_000_000
        self.cursors: dict[tuple[str, str], tuple[int, float | None]] = dict(cursors or {})
        self.assets: dict[str, _Asset] = {}
        for a in cfg.assets:
            table = a.state_codes if a.state_codes is not None else cfg.state_codes
            fields: dict[str, list[str]] = {}
            c = a.counters
            for sig, name in (
                (c.total, "total"),
                (c.good, "good"),
                (c.scrap, "scrap"),
                (c.rework, "rework"),
                (a.energy, "energy_kwh"),
                (a.mass, "mass_kg"),
            ):
                if sig:
                    fields.setdefault(sig, []).append(name)
            codes = {k: StateCategory(v.value) for k, v in table.items()}
            st = _Asset(
                a,
                codes,
                fields,
                np.array([k for k, v in codes.items() if v is StateCategory.RUNNING], np.int64),
            )
            st.open = (open_intervals or {}).get(a.path)
            if st.open is not None:
                st.state_code, st.reason_code = st.open.plc_state, st.open.plc_reason
            self.assets[a.path] = st
        self.lot_counters = set(lot_counters)
        self.mass_scale = {a.path: (1000.0 if a.mass_unit == "t" else 1.0) for a in cfg.assets}

    def signals(self) -> list[tuple[str, str]]:
        """Every (asset, signal) the deriver reads."""
        out = [(a.cfg.path, s) for a in self.assets.values() for s in a.cfg.signals()]
        return list(dict.fromkeys([*out, *sorted(self.lot_counters)]))

    # -- feeding ------------------------------------------------------------------------------
    def feed(self, batch: SampleBatch) -> Changes:
        """Derive from one batch (any order of rows; rows at or before a cursor are skipped)."""
        ch = Changes()
        if not len(batch):
            return ch
        wanted = {k: i for i, k in enumerate(batch.keys) if (k.asset, k.signal) in self._wanted}
        if not wanted:
            return ch
        good = np.flatnonzero(batch.quality == int(Quality.GOOD))
        # one sort groups the rows by series and, within a series, by time
        order = good[np.lexsort((batch.ts[good], batch.series[good]))]
        ser = batch.series[order]
        bounds = np.searchsorted(ser, np.arange(len(batch.keys) + 1))
        by_series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for key, idx in wanted.items():
            rows = order[bounds[idx] : bounds[idx + 1]]
            if not len(rows):
                continue
            ts, val = batch.ts[rows], batch.value[rows]
            cur = self.cursors.get((key.asset, key.signal))
            if cur is not None:
                keep = ts > cur[0]
                ts, val = ts[keep], val[keep]
            ok = ~np.isnan(val)
            ts, val = ts[ok], val[ok]
            if len(ts):
                by_series[(key.asset, key.signal)] = (ts, val)
        for st in self.assets.values():
            self._states(st, by_series, ch)
            self._counters(st, by_series, ch)
        for key in sorted(self.lot_counters):
            st = self.assets.get(key[0])
            if key in by_series and (st is None or key[1] not in st.counter_fields):
                self._lot_counter(key, by_series[key], ch)
        for key, (ts, val) in by_series.items():
            ch.samples_used += len(ts)
            self.cursors[key] = (int(ts[-1]), float(val[-1]))
            ch.cursors[key] = self.cursors[key]
        return ch

    @property
    def _wanted(self) -> set[tuple[str, str]]:
        w = getattr(self, "_wanted_cache", None)
        if w is None:
            w = set(self.signals())
            self._wanted_cache = w
        return w

    def _category(self, st: _Asset, code: int | None) -> StateCategory:
        if code is None:
            return StateCategory.UNKNOWN
        return st.codes.get(code, StateCategory.UNKNOWN)

    def _states(
        self, st: _Asset, data: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], ch: Changes
    ) -> None:
        path = st.cfg.path
        s = data.get((path, st.cfg.state))
        r = data.get((path, st.cfg.reason)) if st.cfg.reason else None
        if s is None and r is None:
            return
        s_ts = s[0] if s is not None else np.empty(0, np.int64)
        r_ts = r[0] if r is not None else np.empty(0, np.int64)
        ts = np.union1d(s_ts, r_ts)
        state = _ffill(ts, s, st.state_code)
        reason = _ffill(ts, r, st.reason_code)
        # only the rows where the (state, reason) pair changes matter: find them with numpy
        nan_s, nan_r = np.isnan(state), np.isnan(reason)
        sc_k = np.where(nan_s, -(2**40), np.nan_to_num(state)).astype(np.int64)
        running = np.isin(sc_k, st.running_codes)
        rc_k = np.where(running, -(2**41), np.where(nan_r, -(2**40), np.nan_to_num(reason))).astype(np.int64)
        o = st.open
        if o is None:
            first = np.array([True])
        else:
            prev_s = -(2**40) if o.plc_state is None else o.plc_state
            prev_r = (
                -(2**41)
                if o.state is StateCategory.RUNNING
                else (-(2**40) if o.plc_reason is None else o.plc_reason)
            )
            first = np.array([sc_k[0] != prev_s or rc_k[0] != prev_r])
        changed = np.concatenate((first, (sc_k[1:] != sc_k[:-1]) | (rc_k[1:] != rc_k[:-1])))
        for i in np.flatnonzero(changed).tolist():
            sc = None if nan_s[i] else int(state[i])
            rc = None if nan_r[i] else int(reason[i])
            cat = self._category(st, sc)
            key_rc = None if cat is StateCategory.RUNNING else rc
            o = st.open
            if o is not None and (o.state, o.plc_state, o.plc_reason) == (cat, sc, key_rc):
                continue
            t = int(ts[i])
            if o is not None and t == o.start_ns:
                ch.intervals.append(IntervalChange(path, t, None, cat, sc, key_rc, amend=True))
                o.state, o.plc_state, o.plc_reason = cat, sc, key_rc
                continue
            ch.intervals.append(IntervalChange(path, t, o.start_ns if o else None, cat, sc, key_rc))
            st.open = OpenInterval(t, cat, sc, key_rc)
        st.state_code = None if nan_s[-1] else int(state[-1])
        st.reason_code = None if nan_r[-1] else int(reason[-1])

    def _counters(
        self, st: _Asset, data: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], ch: Changes
    ) -> None:
        path = st.cfg.path
        per_field: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for sig, fields in st.counter_fields.items():
            got = data.get((path, sig))
            if got is None:
                continue
            ts, val = got
            prev = self.cursors.get((path, sig))
            delta = _deltas(val, prev[1] if prev is not None else None)
            if (path, sig) in self.lot_counters:
                self._increments(path, sig, ts, val, delta, ch)
            scale = self.mass_scale[path]
            for f in fields:
                per_field[f] = (ts, delta * scale if f == "mass_kg" else delta)
        if not per_field:
            return
        derived_good = st.cfg.counters.good is None
        buckets_of = ch.buckets
        width = len(COUNT_FIELDS)
        for f, (ts, delta) in per_field.items():
            nz = delta != 0
            if not nz.any():
                continue
            buckets = ts[nz] // self.bucket_ns * self.bucket_ns
            uniq, inv = np.unique(buckets, return_inverse=True)
            sums = np.bincount(inv, weights=delta[nz])
            j = COUNT_FIELDS.index(f)
            sign = 0.0  # how the field goes into a derived good count
            if derived_good and f in ("total", "scrap", "rework"):
                sign = 1.0 if f == "total" else -1.0
            for b, v in zip(uniq.tolist(), sums.tolist(), strict=True):
                row = buckets_of.get((path, b))
                if row is None:
                    row = buckets_of[(path, b)] = [0.0] * width
                row[j] += v
                if sign:
                    row[1] += v if sign > 0 else -v

    def _lot_counter(self, key: tuple[str, str], got: tuple[np.ndarray, np.ndarray], ch: Changes) -> None:
        ts, val = got
        prev = self.cursors.get(key)
        self._increments(key[0], key[1], ts, val, _deltas(val, prev[1] if prev is not None else None), ch)

    @staticmethod
    def _increments(
        path: str, sig: str, ts: np.ndarray, val: np.ndarray, delta: np.ndarray, ch: Changes
    ) -> None:
        up = np.flatnonzero(delta > 0)
        ch.increments += [
            Increment(path, sig, t, v, d)
            for t, v, d in zip(ts[up].tolist(), val[up].tolist(), delta[up].tolist(), strict=True)
        ]


def _ffill(ts: np.ndarray, got: tuple[np.ndarray, np.ndarray] | None, last: int | None) -> np.ndarray:
    """Values of one series at times ``ts``, carrying the last value forward (NaN before any)."""
    first = float("nan") if last is None else float(last)
    if got is None:
        return np.full(len(ts), first)
    s_ts, s_val = got
    i = np.searchsorted(s_ts, ts, side="right") - 1
    out = np.where(i >= 0, s_val[np.clip(i, 0, None)], first)
    return out.astype(np.float64)


def _deltas(val: np.ndarray, prev: float | None) -> np.ndarray:
    """Increase of a counter at each sample. The first sample ever only anchors it; a decrease is a
    counter reset, after which the counter counted up from zero to its new value."""
    before = np.concatenate(([np.nan if prev is None else prev], val[:-1]))
    d = val - before
    d = np.where(d < 0, val, d)  # reset
    return np.where(np.isnan(d), 0.0, d)
