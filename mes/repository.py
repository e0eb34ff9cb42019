"""The MES repository: every read and write of the MES database, on SQLite and PostgreSQL alike (orders in
mes.orders, stops in mes.stops, shared errors and the audit trail in mes.records).

Derived facts are applied with their cursors in one transaction (exactly once); people's changes to
orders and stops are guarded, and each one is audited with who, when, before and after.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, and_, bindparam, func, or_, select, update

from mes import tables as t
from mes.derive import COUNT_FIELDS, Changes, OpenInterval
from mes.losses import UNASSIGNED, Loss, StateCategory, loss_of
from mes.lots import LotMaker
from mes.maintenance import MaintenanceBook
from mes.order_spec import OrderStatus
from mes.orders import OrderBook
from mes.quality import QualityBook
from mes.records import MES_ACTOR, NS, Bulk, Conflict, NotFound, Page, fetch_page, upsert
from mes.stops import StopLog
from shopfloor.config.mes import LossName, MesConfig

__all__ = ["Conflict", "NotFound", "Page", "Repository"]

_LOSS = {
    LossName.breakdown: Loss.BREAKDOWN,
    LossName.setup: Loss.SETUP,
    LossName.unplanned_stop: Loss.UNPLANNED_STOP,
    LossName.minor_stop: Loss.MINOR_STOP,
    LossName.planned_downtime: Loss.PLANNED_DOWNTIME,
}


class Repository(OrderBook, StopLog, MaintenanceBook, QualityBook):
    """The MES database: plant sync and derivation here; orders (mes.orders) and stops (mes.stops) mixed in."""

    def __init__(self, engine: Engine, cfg: MesConfig, lot_maker: LotMaker | None = None) -> None:
        self.engine = engine
        self.cfg = cfg
        self.lot_maker = lot_maker  # mes.lots.LotMaker: lots and genealogy from counter increments
        self.reason_of_code = {c: r.id for r in cfg.reasons for c in r.codes}
        self.reason_ids = {r.id for r in cfg.reasons}
        self.ideal_default = {a.path: a.ideal_s for a in cfg.assets}
        self.ideal_product = {(p.id, path): s for p in cfg.products for path, s in p.ideal_cycle_s.items()}
        self.bucket_ns = cfg.bucket_s * NS
        self._stmts: dict[tuple[str, str], Any] = {}

    # -- plant ---------------------------------------------------------------------------------
    def sync_plant(self, assets: Sequence[tuple[str, str, str]]) -> None:
        """Mirror the asset tree (path, kind, description in flow order) and the configured products."""
        rows: dict[str, dict[str, Any]] = {}
        levels = ("site", "area", "line", "asset")
        for pos, (path, kind, desc) in enumerate(assets):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                above = "/".join(parts[:depth])
                rows.setdefault(
                    above,
                    {
                        "path": above,
                        "level": levels[min(depth - 1, 2)],
                        "parent": "/".join(parts[: depth - 1]) or None,
                        "name": parts[depth - 1],
                        "kind": "",
                        "description": "",
                        "position": pos,
                    },
                )
            rows[path] = {
                "path": path,
                "level": "asset",
                "parent": "/".join(parts[:-1]),
                "name": parts[-1],
                "kind": kind,
                "description": desc,
                "position": pos,
            }
        with self.engine.begin() as conn:
            if rows:
                stmt = upsert(conn, t.equipment)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["path"],
                        set_={
                            c: stmt.excluded[c]
                            for c in ("level", "parent", "name", "kind", "description", "position")
                        },
                    ),
                    list(rows.values()),
                )
            for p in self.cfg.products:
                stmt = upsert(conn, t.products)
                row = {"id": p.id, "name": p.name, "name_zh": p.name_zh, "alloy": p.alloy}
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["id"],
                        set_={c: stmt.excluded[c] for c in ("name", "name_zh", "alloy")},
                    ),
                    row,
                )
                for path, s in p.ideal_cycle_s.items():
                    stmt = upsert(conn, t.product_ideals)
                    conn.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["product", "asset"],
                            set_={"ideal_cycle_s": stmt.excluded.ideal_cycle_s},
                        ),
                        {"product": p.id, "asset": path, "ideal_cycle_s": s},
                    )

    def equipment(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.equipment).order_by(t.equipment.c.position, t.equipment.c.path))
            return [dict(r._mapping) for r in rows]

    def known_assets(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.scalars(select(t.equipment.c.path).where(t.equipment.c.level == "asset")))

    # -- derivation ----------------------------------------------------------------------------
    def deriver_state(
        self,
    ) -> tuple[dict[tuple[str, str], tuple[int, float | None]], dict[str, OpenInterval]]:
        with self.engine.connect() as conn:
            cursors = {(r.asset, r.signal): (int(r.ts_ns), r.value) for r in conn.execute(select(t.cursors))}
            opens = {
                r.asset: OpenInterval(int(r.start_ns), StateCategory(r.state), r.plc_state, r.plc_reason)
                for r in conn.execute(
                    select(t.state_intervals)
                    .where(t.state_intervals.c.end_ns.is_(None))
                    .order_by(t.state_intervals.c.start_ns)
                )
            }
        return cursors, opens

    def reason_for(self, state: StateCategory, plc_reason: int | None) -> str | None:
        if state is StateCategory.RUNNING:
            return None
        if plc_reason is None:
            return UNASSIGNED
        return self.reason_of_code.get(plc_reason, UNASSIGNED)

    def apply(self, ch: Changes) -> None:
        """Write what one feed derived, with its cursors, in one transaction."""
        if not ch:
            return
        with self.engine.begin() as conn:
            self._apply(conn, ch)

    def _apply(self, conn: Connection, ch: Changes) -> None:
        si = t.state_intervals
        running, released = self._open_orders(conn)
        for c in ch.intervals:
            reason = self.reason_for(c.state, c.plc_reason)
            if c.amend:
                here = and_(si.c.asset == c.asset, si.c.start_ns == c.at_ns)
                conn.execute(
                    update(si)
                    .where(here)
                    .values(state=c.state.value, plc_state=c.plc_state, plc_reason=c.plc_reason)
                )
                conn.execute(update(si).where(and_(here, si.c.reason_by.is_(None))).values(reason=reason))
                continue
            conn.execute(self._stmt(conn, "close_interval"), {"b_asset": c.asset, "b_at": c.at_ns})
            order = running.get(c.asset)
            conn.execute(
                self._stmt(conn, "open_interval"),
                {
                    "asset": c.asset,
                    "start_ns": c.at_ns,
                    "end_ns": None,
                    "state": c.state.value,
                    "plc_state": c.plc_state,
                    "plc_reason": c.plc_reason,
                    "reason": reason,
                    "order_id": order["id"] if order and order["actual_start_ns"] <= c.at_ns else None,
                },
            )
        if ch.buckets:
            self._buckets(conn, ch, running, released)
        if ch.increments and self.lot_maker is not None:
            self.lot_maker.apply(conn, ch.increments)
        if ch.cursors:
            conn.execute(
                self._stmt(conn, "cursors"),
                [
                    {"asset": a, "signal": s, "ts_ns": ts, "value": v}
                    for (a, s), (ts, v) in ch.cursors.items()
                ],
            )

    def _stmt(self, conn: Connection, name: str) -> Any:
        """The hot upserts, built once per dialect (building them costs more than running them)."""
        key = (conn.dialect.name, name)
        stmt = self._stmts.get(key)
        if stmt is None:
            si = t.state_intervals
            if name == "close_interval":  # the open interval of an asset ends where the next one starts
                stmt = (
                    update(si)
                    .where(
                        si.c.asset == bindparam("b_asset"),
                        si.c.end_ns.is_(None),
                        si.c.start_ns < bindparam("b_at"),
                    )
                    .values(end_ns=bindparam("b_at"))
                )
            elif name == "open_interval":
                stmt = upsert(conn, si).on_conflict_do_nothing(index_elements=["asset", "start_ns"])
            elif name == "cursors":
                ins = upsert(conn, t.cursors)
                stmt = ins.on_conflict_do_update(
                    index_elements=["asset", "signal"],
                    set_={"ts_ns": ins.excluded.ts_ns, "value": ins.excluded.value},
                )
            else:
                cb = t.count_buckets
                ins = upsert(conn, cb)
                stmt = ins.on_conflict_do_update(
                    index_elements=["asset", "bucket_ns"],
                    set_={
                        **{f: getattr(cb.c, f) + ins.excluded[f] for f in COUNT_FIELDS},
                        "ideal_s": func.coalesce(cb.c.ideal_s, ins.excluded.ideal_s),
                        "order_id": func.coalesce(cb.c.order_id, ins.excluded.order_id),
                    },
                )
            self._stmts[key] = stmt
        return stmt

    def _buckets(
        self, conn: Connection, ch: Changes, running: dict[str, dict[str, Any]], released: set[str]
    ) -> None:
        """Add the counts to their buckets, each bucket to the order running then; in time order, an order
        completes in the bucket where its good count reaches its quantity and the next released one
        starts with the next production."""
        by_asset: dict[str, list[tuple[int, list[float]]]] = {}
        for (asset, b), row in sorted(ch.buckets.items()):
            by_asset.setdefault(asset, []).append((b, row))
        rows: list[tuple[Any, ...]] = []
        for asset, items in by_asset.items():
            order = running.get(asset)
            waiting = asset in released
            if order is None and not waiting:  # no order runs or waits: every bucket is the asset's alone
                ideal_default = self.ideal_default.get(asset)
                rows += [(asset, b, *r, ideal_default, None) for b, r in items]
                continue
            made = self._good_of(conn, order["id"]) if order else 0.0
            for b, r in items:
                if order is None and r[0] > 0 and waiting:
                    order = self._auto_start(conn, asset, b)
                    waiting = order is not None
                    made = 0.0
                    if order is not None:
                        running[asset] = order
                oid = order["id"] if order and b + self.bucket_ns > order["actual_start_ns"] else None
                product = order["product"] if oid and order else None
                ideal = self.ideal_product.get((product, asset)) if product else None
                if ideal is None:
                    ideal = self.ideal_default.get(asset)
                rows.append((asset, b, *r, ideal, oid))  # r: COUNT_FIELDS order
                if oid and order is not None:
                    made += r[1]
                    if made >= order["quantity"]:
                        self._transition(conn, order, OrderStatus.COMPLETED, MES_ACTOR, b + self.bucket_ns)
                        running.pop(asset, None)
                        order = None
        if rows:
            self._bulk(conn, "buckets").run(conn, rows)

    def _bulk(self, conn: Connection, name: str) -> Bulk:
        """A hot upsert compiled once per dialect for ``Bulk.run`` (rows as tuples in its keys' order)."""
        key = (conn.dialect.name, f"{name}:bulk")
        bulk = self._stmts.get(key)
        if bulk is None:
            keys = {"buckets": ("asset", "bucket_ns", *COUNT_FIELDS, "ideal_s", "order_id")}[name]
            bulk = self._stmts[key] = Bulk.compile(conn, self._stmt(conn, name), keys)
        return bulk

    # -- KPI inputs ----------------------------------------------------------------------------
    def kpi_inputs(
        self, assets: Sequence[str], start_ns: int, end_ns: int, now: int | None = None
    ) -> tuple[Any, Any]:
        """IntervalArrays and CountArrays (mes.kpi) of ``assets`` overlapping [start_ns, end_ns)."""
        from mes.kpi import CountArrays, IntervalArrays

        index = {a: i for i, a in enumerate(assets)}
        now = now if now is not None else 2**62
        si, cb = t.state_intervals, t.count_buckets
        micro = self.cfg.micro_stop_s
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(si.c.asset, si.c.start_ns, si.c.end_ns, si.c.state, si.c.reason).where(
                    si.c.asset.in_(list(assets)),
                    si.c.start_ns < end_ns,
                    or_(si.c.end_ns.is_(None), si.c.end_ns > start_ns),
                )
            ).all()
            counts = conn.execute(
                select(cb).where(
                    cb.c.asset.in_(list(assets)), cb.c.bucket_ns >= start_ns, cb.c.bucket_ns < end_ns
                )
            ).all()
            seen = dict(
                conn.execute(
                    select(t.cursors.c.asset, func.max(t.cursors.c.ts_ns))
                    .where(t.cursors.c.asset.in_(list(assets)))
                    .group_by(t.cursors.c.asset)
                ).all()
            )
        n = len(rows)
        a = np.empty(n, np.int32)
        s = np.empty(n, np.int64)
        e = np.empty(n, np.int64)
        loss = np.empty(n, np.int8)
        for i, r in enumerate(rows):
            # an open interval lasts as far as the asset's data goes (source time, not the wall clock)
            end = (
                r.end_ns if r.end_ns is not None else max(min(now, seen.get(r.asset, r.start_ns)), r.start_ns)
            )
            a[i], s[i], e[i] = index[r.asset], r.start_ns, end
            reason_loss = None
            if r.reason and r.reason != UNASSIGNED and r.reason in self.reason_ids:
                reason_loss = _LOSS[self.cfg.reason_loss(r.reason)]
            loss[i] = int(loss_of(StateCategory(r.state), reason_loss, (end - r.start_ns) / NS, micro))
        m = len(counts)
        cols = {
            f: np.array([getattr(r, f) for r in counts], np.float64) if m else np.empty(0)
            for f in COUNT_FIELDS
        }
        ideal = np.array([r.ideal_s if r.ideal_s is not None else math.nan for r in counts], np.float64)
        return (
            IntervalArrays(asset=a, start_ns=s, end_ns=e, loss=loss),
            CountArrays(
                asset=np.array([index[r.asset] for r in counts], np.int32),
                bucket_ns=np.array([r.bucket_ns for r in counts], np.int64),
                total=cols["total"],
                good=cols["good"],
                scrap=cols["scrap"],
                rework=cols["rework"],
                ideal_s=ideal if m else np.empty(0),
                energy_kwh=cols["energy_kwh"],
                mass_kg=cols["mass_kg"],
            ),
        )

    def newest_ns(self, asset: str) -> int | None:
        """Just after the newest sample derived for ``asset`` (its cursors), or None."""
        with self.engine.connect() as conn:
            v = conn.scalar(select(func.max(t.cursors.c.ts_ns)).where(t.cursors.c.asset == asset))
        return None if v is None else int(v) + 1

    def planned_stop_ranges(self, start_ns: int, end_ns: int) -> np.ndarray:
        ps = t.planned_stops
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ps.c.start_ns, ps.c.end_ns).where(ps.c.start_ns < end_ns, ps.c.end_ns > start_ns)
            ).all()
        return np.array([(r.start_ns, r.end_ns) for r in rows], np.int64).reshape(-1, 2)

    def audit(
        self, entity: str | None = None, entity_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page:
        """The audit trail, oldest first (of one entity, or one record, if given)."""
        au = t.audit
        cond = []
        if entity:
            cond.append(au.c.entity == entity)
        if entity_id:
            cond.append(au.c.entity_id == entity_id)
        with self.engine.connect() as conn:
            return fetch_page(conn, au, cond, (au.c.id,), limit, offset)
