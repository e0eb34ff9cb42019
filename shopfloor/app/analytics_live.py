"""``shopfloor analytics run``: score the live plant from the historian, write results back, open MES requests.

Each cycle reads recent history, scores new windows, publishes health/RUL/alerts and keeps its place on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analytics import pdm, store
from analytics.alerts import AlertRule, Tracker
from analytics.dataset import NS, AssetFrame, hold_unchanged, to_grid
from analytics.features import compute
from analytics.health import HealthModel, NotEnoughData
from historian.reader import HistorianReader
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import PlantConfig
from shopfloor.model import Event, EventKind, Quality, SeriesKey, SignalType

log = logging.getLogger("shopfloor.analytics")

#: Signals the analytics writes on each scored asset (one value per window, at the window's end).
OUTPUTS = ("pdm.health", "pdm.anomaly", "pdm.rul_hours", "pdm.rul_low_hours", "pdm.rul_high_hours")
DEFAULT_STATE_DIR = Path("var/state/analytics")
NUMERIC = (SignalType.FLOAT, SignalType.INT)


@dataclass
class LiveOptions:
    every_s: float = 60.0
    lookback_days: float = 14.0
    healthy_days: float = pdm.HEALTHY_DAYS
    step_s: float = 60.0
    state_dir: Path = DEFAULT_STATE_DIR


@dataclass
class AssetPlan:
    """What to read for one asset: its numeric signals and how its state says 'running'."""

    asset: str
    kind: str
    signals: list[str]
    state: str | None
    running: tuple[int, ...]


@dataclass
class LiveState:
    """Kept on disk between cycles and runs: the last window written, alert trackers, pending requests."""

    written: dict[str, int] = field(default_factory=dict)
    trackers: dict[str, dict] = field(default_factory=dict)
    pending: list[dict] = field(default_factory=list)  # maintenance requests the MES has not taken yet
    opened: list[str] = field(default_factory=list)  # keys of requests the MES has (bounded)

    @classmethod
    def load(cls, path: Path) -> LiveState:
        if not path.exists():
            return cls()
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise SystemExit(
                f"analytics: cannot read its state file {path} ({exc}); fix or delete it"
            ) from exc

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(asdict(self), fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)


def plans(cfg: PlantConfig, models: pdm.Models) -> list[AssetPlan]:
    """Every asset with numeric signals; the state signal and running codes come from the MES mapping."""
    mes = {a.path: a for a in cfg.mes.assets} if cfg.mes is not None else {}
    out = []
    for a in cfg.assets:
        m = mes.get(a.path)
        state = m.state if m is not None else ("state" if any(s.name == "state" for s in a.signals) else None)
        codes = (m.state_codes if m is not None and m.state_codes else None) or (
            cfg.mes.state_codes if cfg.mes is not None else {1: "running"}
        )
        running = tuple(int(c) for c, n in codes.items() if str(n) == "running")
        skip = {state, m.reason if m is not None else None}
        sigs = [s.name for s in a.signals if s.type in NUMERIC and s.name not in skip]
        if sigs:
            out.append(AssetPlan(a.path, a.kind, sigs, state, running or (1,)))
    return out


class AnalyticsService:
    """Scores every planned asset every ``every_s``; publishes through ``publish``/``publish_events``.

    ``open_request`` (the MES repository's, or None) is called for each new alert; when it fails
    (MES down) the request waits on disk and is retried every cycle, and its idempotency key means a
    retry never opens it twice.
    """

    name = "analytics"

    def __init__(
        self,
        cfg: PlantConfig,
        models: pdm.Models,
        reader: HistorianReader,
        publish: Callable[[SampleBatch], None],
        publish_events: Callable[[list[Event]], None],
        open_request: Callable[[dict], Any] | None,
        options: LiveOptions,
    ) -> None:
        self.cfg, self.models, self.reader = cfg, models, reader
        self.publish, self.publish_events, self.open_request = publish, publish_events, open_request
        self.opt = options
        self.plans = plans(cfg, models)
        self.blind: dict[str, HealthModel] = {}
        self.state_path = options.state_dir / "live.json"
        self.state = LiveState.load(self.state_path)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.cycles = 0
        self.learning: dict[str, str] = {}
        self.errors = 0
        self.last_error = ""

    # -- service ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.reader.open()
        self._task = asyncio.create_task(self._run(), name="analytics")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)
        self.state.save(self.state_path)

    def status(self) -> str:
        alerts = sum(1 for t in self.state.trackers.values() if t.get("active"))
        return (
            f"analytics: {self.cycles} cycles, {len(self.plans)} assets, {alerts} active alerts, "
            f"{len(self.state.pending)} requests waiting for the MES, {len(self.learning)} still learning"
            + (f", last error: {self.last_error}" if self.last_error else "")
        )

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.cycle()
            except Exception as exc:  # a failed cycle (historian down) is retried next interval
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "analytics cycle failed (retrying in %.0f s): %s", self.opt.every_s, self.last_error
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.opt.every_s)

    # -- one cycle -------------------------------------------------------------------------------
    async def cycle(self) -> None:
        for plan in self.plans:
            await self._score_asset(plan)
        self._flush_requests()
        self.state.save(self.state_path)
        self.cycles += 1

    async def _frame(self, plan: AssetPlan, start_ns: int, end_ns: int) -> AssetFrame | None:
        step_ns = int(self.opt.step_s * NS)
        t0 = start_ns // step_ns * step_ns
        n = int((end_ns - t0) // step_ns)
        if n <= 0:
            return None
        end = t0 + n * step_ns
        rows, present, names = [], [], []
        for sig in [*plan.signals, *([plan.state] if plan.state else [])]:
            f = await self.reader.query_agg(
                plan.asset, sig, t0, end, step_ns, "last" if sig == plan.state else "mean"
            )
            grid, _ = to_grid(f.ts, f.value, t0, step_ns, n)
            c = await self.reader.query_agg(plan.asset, sig, t0, end, step_ns, "count", include_bad=True)
            counts, _ = to_grid(c.ts, c.value, t0, step_ns, n)
            rows.append(grid)
            present.append(np.nan_to_num(counts) > 0)
            names.append(sig)
        # a signal that did not change sent nothing (report by exception): it holds its value wherever the
        # asset delivered something else; only a step with nothing from the whole asset is a gap
        seen = np.vstack(present)
        values = hold_unchanged(np.vstack(rows), seen, np.asarray(seen.any(axis=0)))
        running = None
        if plan.state:
            state = values[-1]
            values, names = values[:-1], names[:-1]
            running = np.isin(np.round(np.nan_to_num(state, nan=-1)), plan.running)
        ts = t0 + np.arange(n, dtype=np.int64) * step_ns
        return AssetFrame(
            plan.asset, plan.kind, self.opt.step_s, ts, names, [""] * len(names), values, running
        )

    async def _health(self, plan: AssetPlan, first_ns: int, newest_ns: int) -> HealthModel | None:
        hm = self.models.health.get(plan.asset) or self.blind.get(plan.asset)
        if hm is not None:
            return hm
        need = first_ns + int(self.opt.healthy_days * 86400 * NS)
        if newest_ns < need:
            self.learning[plan.asset] = (
                f"{(newest_ns - first_ns) / NS / 3600:.0f} of {self.opt.healthy_days * 24:.0f} h"
            )
            return None
        frame = await self._frame(plan, first_ns, need)
        if frame is None:
            return None
        try:
            hm, _ = pdm.fit_blind(frame, self.models.spec, self.opt.healthy_days)
        except NotEnoughData as exc:
            self.learning[plan.asset] = str(exc)
            return None
        self.learning.pop(plan.asset, None)
        self.blind[plan.asset] = hm
        log.info(
            "analytics: %s health model fitted on its first %.1f days", plan.asset, self.opt.healthy_days
        )
        return hm

    async def _extent(self, plan: AssetPlan) -> tuple[int, int] | None:
        series = [k for k in await self.reader.list_series() if k.asset == plan.asset]
        if not series:
            return None
        latest = [s.ts_ns for s in await self.reader.latest(plan.asset) if s.signal in plan.signals]
        if not latest:
            return None
        first = await self.reader.query_raw(plan.asset, plan.signals[0], 0, max(latest) + 1, limit=1)
        return (int(first.ts[0]) if len(first) else min(latest)), max(latest)

    async def _score_asset(self, plan: AssetPlan) -> None:
        ext = await self._extent(plan)
        if ext is None:
            self.learning[plan.asset] = "no data yet"
            return
        first, newest = ext
        hm = await self._health(plan, first, newest)
        if hm is None:
            return
        start = max(first, newest - int(self.opt.lookback_days * 86400 * NS))
        frame = await self._frame(plan, start, newest)
        if frame is None:
            return
        feats = compute(frame, self.models.spec)
        if len(feats.t_ns) == 0:
            return
        km = self.models.kinds.get(plan.kind)
        store.check_compatible(self.models, plan.kind, hm.names)
        sc = pdm.score(frame, feats, hm, km)
        done = self.state.written.get(plan.asset, 0)
        new = np.flatnonzero((sc.t_ns > done) & (sc.t_ns <= newest))
        if len(new) == 0:
            return
        self._publish_scores(sc, new)
        self._alerts(sc, new, km)
        self.state.written[plan.asset] = int(sc.t_ns[new[-1]])

    def _publish_scores(self, sc: pdm.AssetScores, idx: np.ndarray) -> None:
        keys = tuple(SeriesKey(sc.asset, name) for name in OUTPUTS)
        cols = [sc.health, sc.anomaly, sc.rul[:, 0], sc.rul[:, 1], sc.rul[:, 2]]
        ts = np.concatenate([sc.t_ns[idx]] * len(keys))
        series = np.repeat(np.arange(len(keys), dtype=np.uint32), len(idx))
        value = np.concatenate([c[idx] for c in cols]).astype(np.float64)
        quality = np.where(np.isfinite(value), Quality.GOOD, Quality.BAD).astype(np.uint8)
        self.publish(SampleBatch(keys, series, ts, value, quality))

    def _tracker(self, key: str, rule: AlertRule) -> Tracker:
        t = Tracker(rule)
        if key in self.state.trackers:
            t.restore(self.state.trackers[key])
        return t

    def _alerts(self, sc: pdm.AssetScores, idx: np.ndarray, km: Any) -> None:
        rule = AlertRule(on=km.on, off=km.off) if km is not None and km.modes else AlertRule(on=0.3, off=0.15)
        events: list[Event] = []
        key = f"{sc.asset}|equipment"
        tr = self._tracker(key, rule)
        # a request is opened for an alert still raised at the end of the scored windows: an episode that
        # came and went inside them (the first cycle back-scores the lookback) is kept as its events only
        pending: tuple[Any, ...] | None = None
        for i in idx:
            ev = tr.update(int(sc.t_ns[i]), float(sc.progress[i]))
            if ev:
                mode = sc.mode[i] or "anomaly"
                rul = [None if not math.isfinite(v) else round(float(v), 1) for v in sc.rul[i]]
                events.append(
                    self._event(
                        sc.asset,
                        int(sc.t_ns[i]),
                        ev,
                        "equipment",
                        mode,
                        float(sc.progress[i]),
                        rul,
                        sc.evidence[i],
                    )
                )
                pending = (
                    (sc.asset, "equipment", mode, int(sc.t_ns[i]), rul, float(sc.progress[i]), sc.evidence[i])
                    if ev == "raise"
                    else None
                )
        if pending is not None and tr.active:
            self._request(*pending)
        self.state.trackers[key] = tr.as_dict()
        for kind, sigs in sc.sensor.items():
            for sig, m in sigs.items():
                key = f"{sc.asset}|sensor|{kind}|{sig}"
                if not m[idx].any() and key not in self.state.trackers:
                    continue
                tr = self._tracker(key, pdm.SENSOR_RULE)
                pending = None
                for i in idx:
                    ev = tr.update(int(sc.t_ns[i]), float(m[i]))
                    if ev:
                        events.append(
                            self._event(
                                sc.asset,
                                int(sc.t_ns[i]),
                                ev,
                                "sensor_fault",
                                f"{kind}:{sig}",
                                1.0,
                                [None] * 3,
                                (),
                            )
                        )
                        pending = (
                            (
                                sc.asset,
                                "sensor_fault",
                                sig,
                                int(sc.t_ns[i]),
                                [None] * 3,
                                1.0,
                                (f"{kind} on {sig}",),
                            )
                            if ev == "raise"
                            else None
                        )
                if pending is not None and tr.active:
                    self._request(*pending)
                self.state.trackers[key] = tr.as_dict()
        if events:
            self.publish_events(events)

    @staticmethod
    def _event(
        asset: str, ts: int, what: str, kind: str, subject: str, score: float, rul: list, evidence: tuple
    ) -> Event:
        text = (
            f"{'predicted failure' if kind == 'equipment' else 'sensor fault'}: {subject}"
            + (f", RUL {rul[0]} h ({rul[1]}-{rul[2]} h)" if rul[0] is not None else "")
            + (" cleared" if what == "clear" else "")
        )
        return Event(
            asset,
            EventKind.ALARM,
            ts,
            code=f"pdm_{kind}_{what}",
            message=text,
            value=score,
            data={
                "kind": kind,
                "subject": subject,
                "rul_hours": rul,
                "evidence": list(evidence),
                "state": what,
            },
            key=f"pdm:{subject}"[:120],
        )

    def _request(
        self, asset: str, kind: str, subject: str, ts: int, rul: list, score: float, evidence: tuple
    ) -> None:
        key = f"pdm:{kind}:{asset}:{subject}:{ts}"
        if key in self.state.opened or any(p["key"] == key for p in self.state.pending):
            return
        self.state.pending.append(
            {
                "key": key,
                "asset": asset,
                "kind": kind,
                "subject": subject,
                "opened_ns": ts,
                "rul_hours": rul[0],
                "rul_low_hours": rul[1],
                "rul_high_hours": rul[2],
                "score": score,
                "evidence": list(evidence),
                "detail": "",
            }
        )

    def _flush_requests(self) -> None:
        if self.open_request is None:
            self.state.pending.clear()
            return
        while self.state.pending:
            req = self.state.pending[0]
            try:
                self.open_request(req)
            except Exception as exc:  # MES down: keep it, retry next cycle (the key makes it idempotent)
                self.last_error = f"MES: {type(exc).__name__}: {exc}"
                log.warning("analytics: maintenance request for %s waits for the MES: %s", req["asset"], exc)
                return
            self.state.pending.pop(0)
            self.state.opened = [*self.state.opened[-999:], req["key"]]


def mes_opener(cfg: PlantConfig) -> Callable[[dict], Any] | None:
    """The MES repository's ``open_request`` for this plant (None when the plant has no MES)."""
    if cfg.mes is None or not cfg.mes.assets:
        return None
    from mes.db import open_engine
    from mes.maintenance import MaintenanceRequest
    from mes.repository import Repository

    repo = Repository(open_engine(cfg.mes), cfg.mes)

    def open_request(d: dict) -> Any:
        # an alert that clears and comes back while its request is still open adds to that request
        req = MaintenanceRequest(**{**d, "evidence": tuple(d["evidence"])})
        return repo.open_request(req, once_per_subject=True)

    return open_request


def cmd_run(args: Any) -> int:
    from historian.factory import open_reader
    from shopfloor.app.acquisition import load_plant
    from shopfloor.app.pipeline import leave, live_stream
    from shopfloor.service import ServiceRunner

    cfg, _sources = load_plant(args.config)
    try:
        models = store.load(Path(args.models))
    except (store.IncompatibleModel, FileNotFoundError) as exc:
        raise SystemExit(f"analytics: {exc}") from exc
    writer, bus = live_stream(cfg)
    opts = LiveOptions(every_s=args.every_s, lookback_days=args.lookback_days, healthy_days=args.healthy_days)
    svc = AnalyticsService(
        cfg, models, open_reader(cfg.historian), bus.publish, bus.publish_events, mes_opener(cfg), opts
    )
    runner = ServiceRunner([writer, bus, svc], status_every_s=30.0, duration_s=args.duration)
    return leave(asyncio.run(runner.run()))
