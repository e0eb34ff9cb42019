"""The dashboard's one way to data: the historian through its read-only reader, the MES through its repository.

Pages ask here and never touch a store; answers are cached for a refresh interval so many viewers cost one query.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from historian.errors import StoreError
from historian.reader import SeriesFrame, SyncReader
from mes import reports
from mes.kpi import Kpis
from mes.losses import StateCategory
from mes.records import NotFound
from mes.repository import Repository
from shopfloor.config.dashboard import DashboardConfig
from shopfloor.config.schema import AssetConfig, PlantConfig
from shopfloor.model import EventKind, Quality, Sample, now_ns, system_asset

log = logging.getLogger(__name__)
NS = 1_000_000_000
T = TypeVar("T")
HEALTH = "pdm.health"
RUL = ("pdm.rul_hours", "pdm.rul_low_hours", "pdm.rul_high_hours")
ANOMALY = "pdm.anomaly"
#: bucket sizes a chart may use, seconds: a bucket is the smallest of these that fits the screen
NICE_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def oee_over_100(k: Kpis) -> bool:
    """An OEE above 100 %, which only a performance above 100 % makes (``Kpis.above_ideal`` says why)."""
    return k.above_ideal and k.oee > 1.0


@dataclass(frozen=True)
class Tile:
    """One asset at a glance."""

    path: str
    name: str
    line: str
    kind: str
    description: str
    state: str  # a StateCategory value
    oee: float | None
    oee_over: bool  # OEE above 100 % (performance above 100 %: a cycle begun before the window, or an ideal set too slow)
    alarm: bool
    alert: bool  # a predicted failure: an equipment alert raised and not cleared
    sensor_fault: bool  # a sensor of it is suspected (an instrument ticket, not a failure)
    health: float | None
    age_s: float | None  # how old its newest sample is, in plant time
    stale: bool


@dataclass(frozen=True)
class Line:
    path: str  # site/area/line
    name: str
    assets: list[str]  # in flow order (the config's order)


@dataclass
class _Cached:
    at: float = -math.inf
    value: Any = None


@dataclass
class _Seen:
    ts_ns: int
    wall: float


class Unavailable(RuntimeError):
    """A store did not answer; the message says which and why, for the page to show."""


class PlantData:
    """Read access for the pages. Thread-safe: the WSGI server calls it from several threads at once."""

    def __init__(
        self,
        cfg: PlantConfig,
        reader: SyncReader,
        repo: Repository | None,
        dash: DashboardConfig | None = None,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.reader = reader
        self.repo = repo
        self.dash = dash or cfg.dashboard
        self._wall = wall
        self._lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}
        self._seen: dict[str, _Seen] = {}  # asset -> newest ts seen, and when (wall) it last moved
        self._plant_seen: _Seen | None = None
        self.assets: dict[str, AssetConfig] = {a.path: a for a in cfg.assets}
        self.lines = _lines(cfg)
        self.areas = _areas(cfg)  # site/area with every asset of its lines in flow order: the plant map
        self.line_of = {a: ln.path for ln in self.lines for a in ln.assets}
        self.writer_asset = system_asset(cfg.site, "shopfloor", "historian-writer")
        self.sources_prefix = system_asset(cfg.site, "sources", "x")[: -len("x")]

    # -- caching ---------------------------------------------------------------------------------
    def _cached(self, key: str, ttl_s: float, fn: Callable[[], T]) -> T:
        now = self._wall()
        with self._lock:
            c = self._cache.get(key)
            if c is not None and now - c.at < ttl_s:
                return c.value  # type: ignore[no-any-return]
        value = fn()
        with self._lock:
            self._cache[key] = _Cached(now, value)
        return value

    @property
    def stale_s(self) -> float:
        """Wall seconds without new data after which a source is stale."""
        return self.dash.stale_after * self.dash.refresh_s

    # -- latest values, the plant clock ----------------------------------------------------------
    def latest(self) -> dict[tuple[str, str], Sample]:
        """The newest sample of every series, read once per half refresh interval."""

        def read() -> dict[tuple[str, str], Sample]:
            try:
                rows = self.reader.latest()
            except (StoreError, TimeoutError) as exc:
                raise Unavailable(f"historian: {exc}") from exc
            out = {(s.asset, s.signal): s for s in rows}
            self._observe(out)
            return out

        return self._cached("latest", self.dash.refresh_s / 2, read)

    def _observe(self, latest: dict[tuple[str, str], Sample]) -> None:
        wall = self._wall()
        newest: dict[str, int] = {}
        for (asset, _), s in latest.items():
            if asset in self.assets and s.ts_ns > newest.get(asset, -1):
                newest[asset] = s.ts_ns
        with self._lock:
            for asset, ts in newest.items():
                seen = self._seen.get(asset)
                if seen is None or ts > seen.ts_ns:
                    self._seen[asset] = _Seen(ts, wall)
            top = max(newest.values(), default=None)
            if top is not None and (self._plant_seen is None or top > self._plant_seen.ts_ns):
                self._plant_seen = _Seen(top, wall)

    def now_ns(self) -> int:
        """The plant's now: the wall clock, or (clock 'data') the newest sample of any asset."""
        if self.dash.clock == "wall":
            return now_ns()
        self.latest()
        with self._lock:
            return self._plant_seen.ts_ns if self._plant_seen else now_ns()

    def plant_stale(self) -> bool:
        """No asset has had a new sample for the stale time (clock 'data'); never with no data at all."""
        self.latest()
        with self._lock:
            seen = self._plant_seen
        if seen is None:
            return True
        if self.dash.clock == "wall":
            return (now_ns() - seen.ts_ns) / NS > self.stale_s
        return self._wall() - seen.wall > self.stale_s

    def age(self, asset: str) -> tuple[float | None, bool]:
        """(seconds since the asset's newest sample in plant time, stale?)."""
        latest = self.latest()
        now = self.now_ns()
        with self._lock:
            seen = self._seen.get(asset)
        if seen is None:
            return None, True
        age = max(0.0, (now - seen.ts_ns) / NS)
        if self.dash.clock == "wall":
            return age, age > self.stale_s
        del latest
        return age, self._wall() - seen.wall > self.stale_s or self.plant_stale()

    def value(self, asset: str, signal: str) -> Sample | None:
        return self.latest().get((asset, signal))

    # -- tiles -----------------------------------------------------------------------------------
    def state_of(self, asset: str) -> str:
        """The asset's state category from its newest good state sample and the MES's code table."""
        mes_asset = next((m for m in self.cfg.mes.assets if m.path == asset), None)
        signal = mes_asset.state if mes_asset else "state"
        s = self.value(asset, signal)
        if s is None or s.quality == Quality.BAD or isinstance(s.value, str) or s.value != s.value:
            return StateCategory.UNKNOWN.value
        table = (
            mes_asset.state_codes
            if mes_asset and mes_asset.state_codes is not None
            else self.cfg.mes.state_codes
        )
        name = table.get(int(s.value))
        return StateCategory(str(name)).value if name is not None else StateCategory.UNKNOWN.value

    def tiles(self) -> list[Tile]:
        oee = self.shift_oee()
        alerts = self.active_alerts()
        out = []
        for ln in self.lines:
            for path in ln.assets:
                a = self.assets[path]
                age, stale = self.age(path)
                alarm = self.value(path, "alarm")
                health = self.value(path, HEALTH)
                out.append(
                    Tile(
                        path=path,
                        name=path.rsplit("/", 1)[-1],
                        line=ln.path,
                        kind=a.kind,
                        description=a.description,
                        state=self.state_of(path),
                        oee=oee[path].oee if path in oee else None,
                        oee_over=path in oee and oee_over_100(oee[path]),
                        alarm=bool(
                            alarm is not None
                            and alarm.quality != Quality.BAD
                            and not isinstance(alarm.value, str)
                            and alarm.value not in (0, 0.0)
                            and alarm.value == alarm.value
                        ),
                        alert="equipment" in alerts.get(path, ()),
                        sensor_fault="sensor_fault" in alerts.get(path, ()),
                        health=_num(health),
                        age_s=age,
                        stale=stale,
                    )
                )
        return out

    # -- MES ---------------------------------------------------------------------------------------
    def _mes(self) -> Repository:
        if self.repo is None:
            raise Unavailable("the MES is not configured (mes.database)")
        return self.repo

    def shift_window(self, now: int | None = None) -> tuple[str, int, int]:
        """The shift running at ``now`` (name, start, end); without shifts, the last 8 hours."""
        now = self.now_ns() if now is None else now
        if self.cfg.mes.shifts:
            from mes import calendar

            windows, names = calendar.lay_out(
                list(self.cfg.mes.shifts), self.cfg.timezone, now - 86400 * NS, now + NS
            )
            for (s, e), n in zip(windows.tolist(), names, strict=True):
                if s <= now < e:
                    return n, int(s), int(now)
        return "", now - 8 * 3600 * NS, now

    def shift_oee(self) -> dict[str, Kpis]:
        """KPIs of each MES asset over the current shift so far, for those whose OEE is known (cached 10 s)."""

        def read() -> dict[str, Kpis]:
            if self.repo is None:
                return {}
            _, s, e = self.shift_window()
            assets = sorted(self.repo.known_assets() & set(self.assets))
            try:
                ks = reports.each_asset_kpis(self.repo, assets, s, e, self.cfg.timezone)
            except Exception as exc:
                log.warning("dashboard: OEE not available: %s", exc)
                return {}
            return {a: k for a, k in ks.items() if k.oee is not None and k.oee == k.oee}

        return self._cached("shift_oee", 10.0, read)

    def first_record_ns(self) -> dict[str, int]:
        """When the MES's record of each asset begins (its first state interval), cached 60 s."""

        def read() -> dict[str, int]:
            from sqlalchemy import func, select

            from mes import tables as t

            si = t.state_intervals.c
            with self._mes().engine.connect() as conn:
                rows = conn.execute(select(si.asset, func.min(si.start_ns)).group_by(si.asset)).all()
            return {a: int(v) for a, v in rows if v is not None}

        return self._cached("first_record", 60.0, read)

    def kpis(self, asset: str, start_ns: int, end_ns: int) -> Kpis:
        try:
            return reports.window_kpis(self._mes(), asset, start_ns, end_ns, self.cfg.timezone)[1]
        except NotFound:
            raise
        except Unavailable:
            raise
        except Exception as exc:
            raise Unavailable(f"MES: {exc}") from exc

    def shift_kpis(self, asset: str, start_ns: int, end_ns: int) -> list[tuple[str, int, int, Kpis]]:
        """One KPI set per shift in the window; [] when no shifts are configured."""
        if not self.cfg.mes.shifts:
            return []
        try:
            return reports.shift_kpis(self._mes(), asset, start_ns, end_ns, self.cfg.timezone)[1]
        except (NotFound, Unavailable):
            raise
        except Exception as exc:
            raise Unavailable(f"MES: {exc}") from exc

    def active_alerts(self) -> dict[str, set[str]]:
        """Asset -> kinds ('equipment', 'sensor_fault') of the analytics alerts raised and not yet cleared,
        from the ALARM events of the last 30 days (cached one refresh). An old request that is still open
        in the MES is maintenance's to close; it does not make the tile light up."""

        def read() -> dict[str, set[str]]:
            now = self.now_ns()
            try:
                events = self.reader.query_events(now - 30 * 86400 * NS, now + NS, None, EventKind.ALARM)
            except (StoreError, TimeoutError) as exc:
                log.warning("dashboard: alerts not available: %s", exc)
                return {}
            last: dict[tuple[str, str], str] = {}
            for ev in events:  # in time order: the last event of each alert says whether it is up
                code = ev.code or ""
                if ev.key.startswith("pdm:") and code.startswith("pdm_"):
                    last[(ev.asset, ev.key)] = code
            out: dict[str, set[str]] = {}
            for (asset, _key), code in last.items():
                if code.endswith("_raise"):
                    out.setdefault(asset, set()).add(code[len("pdm_") : -len("_raise")])
            return out

        return self._cached("alerts", self.dash.refresh_s, read)

    def alerted_assets(self) -> set[str]:
        """Assets with an equipment alert up now (a predicted failure)."""
        return {a for a, kinds in self.active_alerts().items() if "equipment" in kinds}

    def requests(
        self, statuses: tuple[str, ...] = ("open", "acknowledged"), limit: int = 200
    ) -> list[dict[str, Any]]:
        repo = self._mes()
        rows: list[dict[str, Any]] = []
        for st in statuses:
            rows += repo.requests(status=st, limit=limit).items
        return rows

    def acknowledge(self, request_id: int, actor: str) -> dict[str, Any]:
        with self._lock:
            self._cache.pop("alerts", None)
        return self._mes().acknowledge_request(request_id, actor)

    def close_request(self, request_id: int, actor: str) -> dict[str, Any]:
        with self._lock:
            self._cache.pop("alerts", None)
        return self._mes().close_request(request_id, actor)

    def intervals(self, asset: str, start_ns: int, end_ns: int, limit: int = 5000) -> list[dict[str, Any]]:
        return self._mes().intervals(asset, start_ns, end_ns, limit=limit).items

    def orders(self, limit: int = 200) -> list[dict[str, Any]]:
        return self._mes().orders(limit=limit).items  # type: ignore[no-any-return]

    def lots(self, asset: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from mes import tables as t

        q = select(t.lots).order_by(t.lots.c.end_ns.desc()).limit(limit)
        if asset:
            q = q.where(t.lots.c.asset == asset)
        with self._mes().engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def trace(self, lot_id: str, direction: Literal["forward", "backward"]) -> dict[str, Any]:
        from mes import lots

        with self._mes().engine.connect() as conn:
            return lots.trace(conn, lot_id, direction).as_dict()

    def quality_results(self, asset: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from mes import tables as t

        q = select(t.quality_results).order_by(t.quality_results.c.ts_ns.desc()).limit(limit)
        if asset:
            q = q.where(t.quality_results.c.asset == asset)
        with self._mes().engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # -- history -------------------------------------------------------------------------------------
    def series(
        self, asset: str, signal: str, start_ns: int, end_ns: int, points: int = 600, fn: str = "mean"
    ) -> SeriesFrame:
        """At most about ``points`` values of a signal over [start, end), aggregated by the store."""
        every = bucket_ns(end_ns - start_ns, points)
        try:
            return self.reader.query_agg(asset, signal, start_ns, end_ns, every, fn)  # type: ignore[arg-type]
        except (StoreError, TimeoutError) as exc:
            raise Unavailable(f"historian: {exc}") from exc

    def events(
        self, start_ns: int, end_ns: int, asset: str | None = None, kind: EventKind | None = None
    ) -> list[Any]:
        try:
            return self.reader.query_events(start_ns, end_ns, asset, kind)
        except (StoreError, TimeoutError) as exc:
            raise Unavailable(f"historian: {exc}") from exc

    # -- the system itself -------------------------------------------------------------------------
    def writer_counters(self) -> tuple[dict[str, float], int | None]:
        """The historian writer's counters as it last stored them, and when (wall ns)."""
        latest = self.latest()
        vals = {sig: s for (a, sig), s in latest.items() if a == self.writer_asset}
        ts = max((s.ts_ns for s in vals.values()), default=None)
        return {k: float(v.value) for k, v in vals.items() if not isinstance(v.value, str)}, ts

    def sources(self) -> dict[str, dict[str, float]]:
        """Each connector's health as last published: source name -> signal -> value (and ``ts_ns``)."""
        out: dict[str, dict[str, float]] = {}
        for (a, sig), s in self.latest().items():
            if a.startswith(self.sources_prefix) and not isinstance(s.value, str):
                d = out.setdefault(a[len(self.sources_prefix) :], {})
                d[sig] = float(s.value) if s.quality != Quality.BAD else float("nan")
                d["ts_ns"] = max(d.get("ts_ns", 0), s.ts_ns)
        return out

    # -- line, asset and maintenance pages ----------------------------------------------------------
    def line(self, path: str | None) -> Line | None:
        """The line at ``path`` (site/area/line); the first line when ``path`` is empty; None if unknown."""
        if not path:
            return self.lines[0] if self.lines else None
        return next((ln for ln in self.lines if ln.path == path), None)

    def numeric_signals(self, asset: str) -> list[Any]:
        """The asset's configured signals (SignalConfig) that can be charted: every type but text."""
        from shopfloor.model import SignalType

        a = self.assets.get(asset)
        return [s for s in a.signals if s.type != SignalType.TEXT] if a else []

    def line_orders(self, line: str, limit: int = 50) -> list[Any]:
        """Work orders (OrderPerformance) of the line's assets, newest first, with what each produced.

        Cached 10 s: every viewer's refresh reads the same answer."""

        def read() -> list[Any]:
            repo = self._mes()
            page = repo.orders(asset=line, limit=1)  # the total, to read the newest ``limit`` ones
            rows = repo.orders(asset=line, limit=limit, offset=max(0, page.total - limit)).items
            perf = {p.id: p for p in repo.performance([r["id"] for r in rows])}
            return [perf[r["id"]] for r in reversed(rows) if r["id"] in perf]

        return self._cached(f"line_orders:{line}:{limit}", 10.0, read)

    def shift_kpis_of(self, asset: str) -> tuple[str, int, int, Kpis]:
        """The KPIs of an asset or a line over the current shift so far: (shift name, start, end, kpis)."""
        name, s, e = self.shift_window()

        def read() -> tuple[str, int, int, Kpis]:
            return name, s, e, self.kpis(asset, s, e)

        return self._cached(f"shift_kpis:{asset}", 10.0, read)

    def timeline(self, line: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """The MES state intervals of every asset of a line overlapping [start, end) (cached a refresh)."""
        key = f"timeline:{line}:{start_ns // (NS * 60)}:{end_ns // (NS * 60)}"
        return self._cached(key, self.dash.refresh_s, lambda: self.intervals(line, start_ns, end_ns))

    def stops(self, asset: str, start_ns: int, end_ns: int, limit: int = 50) -> list[dict[str, Any]]:
        """The asset's stops (every state but running) overlapping [start, end), newest first."""
        from sqlalchemy import or_, select

        from mes import tables as t

        si = t.state_intervals
        q = (
            select(si)
            .where(
                si.c.asset == asset,
                si.c.state != StateCategory.RUNNING.value,
                si.c.start_ns < end_ns,
                or_(si.c.end_ns.is_(None), si.c.end_ns > start_ns),
            )
            .order_by(si.c.start_ns.desc())
            .limit(limit)
        )
        with self._mes().engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def asset_requests(self, asset: str, limit: int = 50) -> list[dict[str, Any]]:
        """Every maintenance request of the asset, whatever its status, newest first."""
        return self._mes().requests(asset=asset, limit=limit).items

    def analytics(self, asset: str) -> dict[str, float | None]:
        """The asset's newest predictive-maintenance values by signal (None: no value, or a bad one)."""
        return {n: _num(self.value(asset, n)) for n in (HEALTH, *RUL, ANOMALY)}

    # -- section A: line, asset and maintenance pages (add methods above this line) --

    def process_signals(self, asset: str) -> list[str]:
        """Numeric signals of ``asset`` an SPC chart makes sense of: float, with a configured range, and not
        one the MES reads as state, reason, counter, energy or mass (those are totals, not a process)."""
        a = self.assets.get(asset)
        if a is None:
            return []
        skip: set[str] = set()
        for m in self.cfg.mes.assets:
            if m.path == asset:
                skip |= set(m.signals())
        for rule in self.cfg.mes.lots:
            if rule.asset == asset:
                skip |= {s for s in (rule.counter, rule.quantity, rule.reject) if s}
        return [s.name for s in a.signals if s.type == "float" and s.range is not None and s.name not in skip]

    def default_spc_signal(self, asset: str | None = None) -> tuple[str, str] | None:
        """(asset, signal) to chart first: ``asset``, else the first asset with a process signal; of its
        signals the first whose range is a tolerance band (width <= 10 % of its centre), else its first."""
        if asset is None:
            candidates = list(self.cfg.assets)
        else:
            candidates = [self.assets[asset]] if asset in self.assets else []
        for a in candidates:
            names = self.process_signals(a.path)
            if not names:
                continue
            ranges = {s.name: s.range for s in a.signals if s.range is not None}
            bands = [n for n in names if self._is_band(ranges[n])]
            return a.path, (bands or names)[0]
        return None

    @staticmethod
    def _is_band(rng: tuple[float, float]) -> bool:
        """A range that reads as a tolerance band around a nominal value rather than an instrument span."""
        lo, hi = rng
        mid = abs(lo + hi) / 2
        return mid > 0 and 0 < hi - lo <= 0.1 * mid

    def recent_series(
        self, asset: str, signal: str, span_ns: int, points: int = 700
    ) -> tuple[int, int, SeriesFrame]:
        """(start, end, frame): the last ``span_ns`` of a signal aggregated by the store into at most about
        ``points`` bucket means, the window aligned to whole buckets; one query per refresh for all viewers."""

        def read() -> tuple[int, int, SeriesFrame]:
            every = bucket_ns(span_ns, points)
            end = (self.now_ns() // every + 1) * every
            return end - span_ns, end, self.series(asset, signal, end - span_ns, end, points)

        return self._cached(f"series:{asset}:{signal}:{span_ns}:{points}", self.dash.refresh_s, read)

    def defect_predictions(self) -> list[Sample]:
        """The newest value of every historian signal that carries a defect prediction (named ``defect.*``)."""
        return sorted(
            (s for (a, sig), s in self.latest().items() if sig.startswith("defect.") and a in self.assets),
            key=lambda s: (s.asset, s.signal),
        )

    def inspections(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest surface inspection results (quality results of source ``surface_inspection``)."""
        from sqlalchemy import select

        from mes import tables as t

        q = t.quality_results
        stmt = select(q).where(q.c.source == "surface_inspection").order_by(q.c.ts_ns.desc(), q.c.id.desc())
        with self._mes().engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt.limit(limit))]

    def recent_lots(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest lots, each with ``has_parents``: whether it was made from other lots (so has a trace)."""
        from sqlalchemy import select

        from mes import tables as t

        made_from = select(t.lot_links.c.child).where(t.lot_links.c.child == t.lots.c.id).exists()
        stmt = select(t.lots, made_from.label("has_parents")).order_by(t.lots.c.end_ns.desc(), t.lots.c.id)
        with self._mes().engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt.limit(limit))]

    def order_rows(self, scope: str, limit: int = 200) -> list[dict[str, Any]]:
        """The newest work orders at or under ``scope`` with what they produced (good, scrap, total)."""
        from sqlalchemy import or_, select

        from mes import tables as t

        wo = t.work_orders.c
        stmt = (
            select(wo.id)
            .where(or_(wo.asset == scope, wo.asset.startswith(scope.rstrip("/") + "/")))
            .order_by(wo.created_ns.desc(), wo.id)
            .limit(limit)
        )
        repo = self._mes()
        with repo.engine.connect() as conn:
            ids = list(conn.execute(stmt).scalars())
        rows = {p.id: p.model_dump() for p in repo.performance(ids)} if ids else {}
        return [rows[i] for i in ids if i in rows]

    def mes_report(self, scope: str, hours: float) -> dict[str, Any]:
        """The last ``hours`` of ``scope`` (a line or the site): window KPIs, per-shift KPIs (None without
        shifts) and the stops (every non-running interval overlapping the window). Cached 10 s."""

        def read() -> dict[str, Any]:
            repo = self._mes()
            end = self.now_ns()
            start = end - int(hours * 3600) * NS
            try:
                assets, window = reports.window_kpis(repo, scope, start, end, self.cfg.timezone)
                shifts = None
                if self.cfg.mes.shifts:
                    shifts = reports.shift_kpis(repo, scope, start, end, self.cfg.timezone)[1]
                stops: list[dict[str, Any]] = []
                for page in range(100):  # bounded: 500 000 stops
                    got = repo.intervals(scope, start, end, stops_only=True, limit=5000, offset=5000 * page)
                    stops += got.items
                    if len(got.items) < 5000:
                        break
            except NotFound:
                raise
            except Exception as exc:
                raise Unavailable(f"MES: {exc}") from exc
            return {
                "start": start,
                "end": end,
                "assets": assets,
                "window": window,
                "shifts": shifts,
                "stops": stops,
            }

        return self._cached(f"mes_report:{scope}:{hours}", 10.0, read)

    # -- section B: quality and MES pages (add methods above this line) --


def bucket_ns(span_ns: int, points: int) -> int:
    """The smallest 'nice' bucket that keeps a span to at most ``points`` buckets (1 s at least)."""
    need = max(1.0, span_ns / NS / max(points, 1))
    for s in NICE_S:
        if s >= need:
            return s * NS
    return int(math.ceil(need / 86400) * 86400) * NS


def _num(s: Sample | None) -> float | None:
    if s is None or s.quality == Quality.BAD or isinstance(s.value, str) or s.value != s.value:
        return None
    return float(s.value)


def _areas(cfg: PlantConfig) -> list[Line]:
    """Areas (site/area) in the order their first asset appears; assets in config (flow) order."""
    order: dict[str, list[str]] = {}
    for a in cfg.assets:
        parts = a.path.split("/")
        order.setdefault("/".join(parts[:2]), []).append(a.path)
    return [Line(p, p.split("/", 1)[-1], assets) for p, assets in order.items()]


def _lines(cfg: PlantConfig) -> list[Line]:
    """Lines (site/area/line) in the order their first asset appears; assets in config (flow) order."""
    order: dict[str, list[str]] = {}
    for a in cfg.assets:
        parts = a.path.split("/")
        key = "/".join(parts[:-1]) if len(parts) > 2 else parts[0]
        order.setdefault(key, []).append(a.path)
    return [Line(p, p.split("/", 1)[-1], assets) for p, assets in order.items()]
