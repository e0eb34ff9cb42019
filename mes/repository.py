"""The MES repository: every read and write of the MES database, on SQLite and PostgreSQL alike.

Derived facts are applied with their cursors in one transaction (exactly once); people's changes to
orders and stops are guarded, and each one is audited with who, when, before and after.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Table, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from mes import tables as t
from mes.derive import COUNT_FIELDS, Changes, OpenInterval
from mes.losses import UNASSIGNED, Loss, StateCategory, loss_of
from mes.lots import LotMaker
from mes.order_spec import TRANSITIONS, OrderPerformance, OrderSpec, OrderStatus
from shopfloor.config.mes import LossName, MesConfig
from shopfloor.model import now_ns

NS = 1_000_000_000
MES_ACTOR = "mes"  # derived changes are audited under this name

_LOSS = {
    LossName.breakdown: Loss.BREAKDOWN,
    LossName.setup: Loss.SETUP,
    LossName.unplanned_stop: Loss.UNPLANNED_STOP,
    LossName.minor_stop: Loss.MINOR_STOP,
    LossName.planned_downtime: Loss.PLANNED_DOWNTIME,
}


class NotFound(LookupError):
    """No such order, interval or lot."""


class Conflict(ValueError):
    """The change is not allowed now (an illegal transition, a duplicate id, a stale version)."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


def _upsert(conn: Connection, table: Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


class Repository:
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
                p = "/".join(parts[:depth])
                rows.setdefault(
                    p,
                    {
                        "path": p,
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
                stmt = _upsert(conn, t.equipment)
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
                stmt = _upsert(conn, t.products)
                row = {"id": p.id, "name": p.name, "name_zh": p.name_zh, "alloy": p.alloy}
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["id"],
                        set_={c: stmt.excluded[c] for c in ("name", "name_zh", "alloy")},
                    ),
                    row,
                )
                for path, s in p.ideal_cycle_s.items():
                    stmt = _upsert(conn, t.product_ideals)
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
            conn.execute(
                update(si)
                .where(and_(si.c.asset == c.asset, si.c.end_ns.is_(None), si.c.start_ns < c.at_ns))
                .values(end_ns=c.at_ns)
            )
            order = running.get(c.asset)
            stmt = _upsert(conn, si).on_conflict_do_nothing(index_elements=["asset", "start_ns"])
            conn.execute(
                stmt,
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
            if name == "cursors":
                ins = _upsert(conn, t.cursors)
                stmt = ins.on_conflict_do_update(
                    index_elements=["asset", "signal"],
                    set_={"ts_ns": ins.excluded.ts_ns, "value": ins.excluded.value},
                )
            else:
                cb = t.count_buckets
                ins = _upsert(conn, cb)
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
        by_asset: dict[str, list[tuple[int, np.ndarray]]] = {}
        for (asset, b), row in sorted(ch.buckets.items()):
            by_asset.setdefault(asset, []).append((b, row))
        rows: list[dict[str, Any]] = []
        for asset, items in by_asset.items():
            order = running.get(asset)
            made = self._good_of(conn, order["id"]) if order else 0.0
            waiting = asset in released
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
                row = {f: float(r[i]) for i, f in enumerate(COUNT_FIELDS)}
                rows.append({"asset": asset, "bucket_ns": b, **row, "ideal_s": ideal, "order_id": oid})
                if oid and order is not None:
                    made += row["good"]
                    if made >= order["quantity"]:
                        self._transition(conn, order, OrderStatus.COMPLETED, MES_ACTOR, b + self.bucket_ns)
                        running.pop(asset, None)
                        order = None
        if rows:
            conn.execute(self._stmt(conn, "buckets"), rows)

    def _good_of(self, conn: Connection, order_id: str) -> float:
        cb = t.count_buckets
        return float(
            conn.scalar(select(func.coalesce(func.sum(cb.c.good), 0.0)).where(cb.c.order_id == order_id))
            or 0.0
        )

    def _open_orders(self, conn: Connection) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """The running order of each asset, and the assets with a released order waiting (one query)."""
        wo = t.work_orders
        rows = conn.execute(
            select(wo).where(wo.c.status.in_([OrderStatus.RUNNING.value, OrderStatus.RELEASED.value]))
        ).all()
        running = {r.asset: dict(r._mapping) for r in rows if r.status == OrderStatus.RUNNING.value}
        return running, {r.asset for r in rows if r.status == OrderStatus.RELEASED.value}

    def _auto_start(self, conn: Connection, asset: str, at_ns: int) -> dict[str, Any] | None:
        """Production began on an asset with no running order: start its next released order."""
        wo = t.work_orders
        nxt = conn.execute(
            select(wo)
            .where(and_(wo.c.asset == asset, wo.c.status == OrderStatus.RELEASED.value))
            .order_by(
                wo.c.priority.desc(),
                wo.c.planned_start_ns.is_(None),
                wo.c.planned_start_ns,
                wo.c.created_ns,
                wo.c.id,
            )
            .limit(1)
        ).first()
        if nxt is None:
            return None
        last_end = conn.scalar(select(func.max(wo.c.actual_end_ns)).where(wo.c.asset == asset))
        if last_end is not None:
            at_ns = max(at_ns, int(last_end))  # the bucket still filling belongs to the order that ended
        row = dict(nxt._mapping)
        if not self._transition(conn, row, OrderStatus.RUNNING, MES_ACTOR, at_ns):
            return None
        row.update(status=OrderStatus.RUNNING.value, actual_start_ns=at_ns, version=row["version"] + 1)
        return row

    # -- orders --------------------------------------------------------------------------------
    def create_order(
        self, spec: OrderSpec, actor: str, status: OrderStatus = OrderStatus.PLANNED
    ) -> dict[str, Any]:
        return self.create_orders([spec], actor, status)[0]

    def create_orders(
        self, specs: Sequence[OrderSpec], actor: str, status: OrderStatus = OrderStatus.PLANNED
    ) -> list[dict[str, Any]]:
        """Create orders all together or not at all (an id that exists already refuses the whole set)."""
        if status not in (OrderStatus.PLANNED, OrderStatus.RELEASED):
            raise Conflict("new orders are planned or released")
        known = self.known_assets()
        for s in specs:
            if s.asset not in known:
                raise NotFound(f"unknown asset {s.asset}")
        now = now_ns()
        rows = [
            {
                "id": s.id,
                "product": s.product,
                "asset": s.asset,
                "quantity": s.quantity,
                "unit": s.unit,
                "status": status.value,
                "priority": s.priority,
                "description": s.description,
                "planned_start_ns": _ns(s.planned_start),
                "planned_end_ns": _ns(s.planned_end),
                "actual_start_ns": None,
                "actual_end_ns": None,
                "created_ns": now,
                "version": 1,
            }
            for s in specs
        ]
        ids = [r["id"] for r in rows]
        if len(set(ids)) != len(ids):
            raise Conflict("the same order id is given twice")
        with self.engine.begin() as conn:
            taken = set(conn.scalars(select(t.work_orders.c.id).where(t.work_orders.c.id.in_(ids))))
            if taken:
                raise Conflict(f"order id(s) already exist: {', '.join(sorted(taken))}")
            if rows:
                try:
                    conn.execute(insert(t.work_orders), rows)
                except IntegrityError as exc:  # created by someone else since the check above
                    raise Conflict(f"order id(s) already exist: {', '.join(ids)}") from exc
                self._audit(
                    conn, actor, "order", None, "create", None, None, many=[(r["id"], r) for r in rows]
                )
        return rows

    def order(self, order_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.work_orders).where(t.work_orders.c.id == order_id)).first()
        if row is None:
            raise NotFound(f"no order {order_id}")
        return dict(row._mapping)

    def orders(
        self, status: str | None = None, asset: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page:
        wo = t.work_orders
        cond = []
        if status:
            cond.append(wo.c.status == status)
        if asset:
            cond.append(or_(wo.c.asset == asset, wo.c.asset.startswith(asset.rstrip("/") + "/")))
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(wo).where(*cond)) or 0
            rows = conn.execute(
                select(wo).where(*cond).order_by(wo.c.created_ns, wo.c.id).limit(limit).offset(offset)
            )
            return Page([dict(r._mapping) for r in rows], int(total), limit, offset)

    def orders_of_product(self, product: str) -> list[dict[str, Any]]:
        wo = t.work_orders
        with self.engine.connect() as conn:
            rows = conn.execute(select(wo).where(wo.c.product == product).order_by(wo.c.created_ns, wo.c.id))
            return [dict(r._mapping) for r in rows]

    def transition(
        self, order_id: str, to: OrderStatus, actor: str, at_ns: int | None = None
    ) -> dict[str, Any]:
        with self.engine.begin() as conn:
            row = conn.execute(select(t.work_orders).where(t.work_orders.c.id == order_id)).first()
            if row is None:
                raise NotFound(f"no order {order_id}")
            cur = dict(row._mapping)
            if to is OrderStatus.RUNNING:
                other = conn.scalar(
                    select(t.work_orders.c.id).where(
                        and_(
                            t.work_orders.c.asset == cur["asset"],
                            t.work_orders.c.status == OrderStatus.RUNNING.value,
                            t.work_orders.c.id != order_id,
                        )
                    )
                )
                if other:
                    raise Conflict(f"order {other} is already running on {cur['asset']}; complete it first")
            if not self._transition(conn, cur, to, actor, at_ns if at_ns is not None else now_ns()):
                raise Conflict(f"order {order_id} changed meanwhile; read it again")
        return self.order(order_id)

    def _transition(
        self, conn: Connection, cur: dict[str, Any], to: OrderStatus, actor: str, at_ns: int
    ) -> bool:
        frm = OrderStatus(cur["status"])
        if to not in TRANSITIONS[frm]:
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[frm])) or "none (final)"
            raise Conflict(f"order {cur['id']} is {frm.value}: cannot become {to.value} (allowed: {allowed})")
        values: dict[str, Any] = {"status": to.value, "version": cur["version"] + 1}
        if to is OrderStatus.RUNNING:
            values["actual_start_ns"] = at_ns
        if to in (OrderStatus.COMPLETED, OrderStatus.CANCELLED) and cur.get("actual_start_ns") is not None:
            values["actual_end_ns"] = at_ns
        wo = t.work_orders
        res = conn.execute(
            update(wo).where(and_(wo.c.id == cur["id"], wo.c.version == cur["version"])).values(**values)
        )
        if res.rowcount != 1:
            return False
        self._audit(
            conn,
            actor,
            "order",
            cur["id"],
            to.value,
            {k: cur[k] for k in ("status", "actual_start_ns", "actual_end_ns")},
            {k: values.get(k, cur[k]) for k in ("status", "actual_start_ns", "actual_end_ns")},
        )
        return True

    EDITABLE = ("quantity", "priority", "description", "planned_start_ns", "planned_end_ns", "product")

    def edit_order(
        self, order_id: str, changes: dict[str, Any], actor: str, version: int | None = None
    ) -> dict[str, Any]:
        bad = set(changes) - set(self.EDITABLE)
        if bad:
            raise Conflict(f"cannot edit {', '.join(sorted(bad))} (editable: {', '.join(self.EDITABLE)})")
        with self.engine.begin() as conn:
            row = conn.execute(select(t.work_orders).where(t.work_orders.c.id == order_id)).first()
            if row is None:
                raise NotFound(f"no order {order_id}")
            cur = dict(row._mapping)
            if version is not None and version != cur["version"]:
                raise Conflict(
                    f"order {order_id} is at version {cur['version']}, not {version}; read it again"
                )
            if (
                cur["status"] in (OrderStatus.COMPLETED.value, OrderStatus.CANCELLED.value)
                and "quantity" in changes
            ):
                raise Conflict(f"order {order_id} is {cur['status']}: its quantity is final")
            if "product" in changes and cur["status"] != OrderStatus.PLANNED.value:
                raise Conflict("the product of an order can change only while it is planned")
            wo = t.work_orders
            res = conn.execute(
                update(wo)
                .where(and_(wo.c.id == order_id, wo.c.version == cur["version"]))
                .values(**changes, version=cur["version"] + 1)
            )
            if res.rowcount != 1:
                raise Conflict(f"order {order_id} changed meanwhile; read it again")
            self._audit(conn, actor, "order", order_id, "edit", {k: cur[k] for k in changes}, dict(changes))
        return self.order(order_id)

    def performance(self, ids: Iterable[str] | None = None) -> list[OrderPerformance]:
        wo, cb = t.work_orders, t.count_buckets
        with self.engine.connect() as conn:
            q = select(wo)
            if ids is not None:
                q = q.where(wo.c.id.in_(list(ids)))
            orders = [dict(r._mapping) for r in conn.execute(q.order_by(wo.c.created_ns, wo.c.id))]
            sums = {
                r.order_id: r
                for r in conn.execute(
                    select(
                        cb.c.order_id,
                        *[func.sum(getattr(cb.c, f)).label(f) for f in COUNT_FIELDS],
                    )
                    .where(cb.c.order_id.in_([o["id"] for o in orders]))
                    .group_by(cb.c.order_id)
                )
            }
        out = []
        for o in orders:
            s = sums.get(o["id"])
            out.append(
                OrderPerformance(
                    id=o["id"],
                    product=o["product"],
                    asset=o["asset"],
                    status=OrderStatus(o["status"]),
                    quantity=o["quantity"],
                    unit=o["unit"],
                    actual_start=_dt(o["actual_start_ns"]),
                    actual_end=_dt(o["actual_end_ns"]),
                    total=float(s.total or 0) if s else 0.0,
                    good=float(s.good or 0) if s else 0.0,
                    scrap=float(s.scrap or 0) if s else 0.0,
                    rework=float(s.rework or 0) if s else 0.0,
                    energy_kwh=float(s.energy_kwh or 0) if s else 0.0,
                )
            )
        return out

    # -- stops ---------------------------------------------------------------------------------
    def intervals(
        self,
        asset: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        stops_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> Page:
        si = t.state_intervals
        cond = []
        if asset:
            cond.append(or_(si.c.asset == asset, si.c.asset.startswith(asset.rstrip("/") + "/")))
        if start_ns is not None:
            cond.append(or_(si.c.end_ns.is_(None), si.c.end_ns > start_ns))
        if end_ns is not None:
            cond.append(si.c.start_ns < end_ns)
        if stops_only:
            cond.append(si.c.state != StateCategory.RUNNING.value)
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(si).where(*cond)) or 0
            rows = conn.execute(
                select(si).where(*cond).order_by(si.c.start_ns, si.c.asset).limit(limit).offset(offset)
            )
            return Page([dict(r._mapping) for r in rows], int(total), limit, offset)

    def interval(self, interval_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.state_intervals).where(t.state_intervals.c.id == interval_id)).first()
        if row is None:
            raise NotFound(f"no stop {interval_id}")
        return dict(row._mapping)

    def assign_reason(self, interval_id: int, reason: str, actor: str) -> dict[str, Any]:
        if reason not in self.reason_ids and reason != UNASSIGNED:
            raise Conflict(f"unknown reason {reason!r}")
        si = t.state_intervals
        with self.engine.begin() as conn:
            row = conn.execute(select(si).where(si.c.id == interval_id)).first()
            if row is None:
                raise NotFound(f"no stop {interval_id}")
            if row.state == StateCategory.RUNNING.value:
                raise Conflict(f"interval {interval_id} is a run, not a stop: it has no reason")
            conn.execute(update(si).where(si.c.id == interval_id).values(reason=reason, reason_by=actor))
            self._audit(
                conn,
                actor,
                "stop",
                str(interval_id),
                "assign_reason",
                {"reason": row.reason, "reason_by": row.reason_by},
                {"reason": reason, "reason_by": actor},
            )
        return self.interval(interval_id)

    def split_stop(
        self, interval_id: int, at_ns: int, actor: str, reason: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split a stop at ``at_ns``; the second part takes ``reason`` (or keeps the first's)."""
        if reason is not None and reason not in self.reason_ids and reason != UNASSIGNED:
            raise Conflict(f"unknown reason {reason!r}")
        si = t.state_intervals
        with self.engine.begin() as conn:
            row = conn.execute(select(si).where(si.c.id == interval_id)).first()
            if row is None:
                raise NotFound(f"no stop {interval_id}")
            if row.state == StateCategory.RUNNING.value:
                raise Conflict(f"interval {interval_id} is a run, not a stop")
            if not (row.start_ns < at_ns and (row.end_ns is None or at_ns < row.end_ns)):
                raise Conflict(
                    f"split time must lie strictly inside the stop ({row.start_ns} .. {row.end_ns})"
                )
            conn.execute(update(si).where(si.c.id == interval_id).values(end_ns=at_ns))
            second = {
                "asset": row.asset,
                "start_ns": at_ns,
                "end_ns": row.end_ns,
                "state": row.state,
                "plc_state": row.plc_state,
                "plc_reason": row.plc_reason,
                "reason": reason if reason is not None else row.reason,
                "reason_by": actor,
                "order_id": row.order_id,
            }
            new_id = conn.execute(insert(si).values(**second)).inserted_primary_key[0]  # type: ignore[index]
            self._audit(
                conn,
                actor,
                "stop",
                str(interval_id),
                "split",
                {"start_ns": row.start_ns, "end_ns": row.end_ns},
                {"first_end_ns": at_ns, "second_id": new_id, "second_reason": second["reason"]},
            )
        return self.interval(interval_id), self.interval(int(new_id))

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

    # -- audit ---------------------------------------------------------------------------------
    def _audit(
        self,
        conn: Connection,
        actor: str,
        entity: str,
        entity_id: str | None,
        action: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        many: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        ts = now_ns()
        rows = (
            [
                {
                    "ts_ns": ts,
                    "actor": actor,
                    "entity": entity,
                    "entity_id": i,
                    "action": action,
                    "before": None,
                    "after": r,
                }
                for i, r in many
            ]
            if many is not None
            else [
                {
                    "ts_ns": ts,
                    "actor": actor,
                    "entity": entity,
                    "entity_id": entity_id or "",
                    "action": action,
                    "before": before,
                    "after": after,
                }
            ]
        )
        conn.execute(insert(t.audit), rows)

    def audit(
        self, entity: str | None = None, entity_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page:
        au = t.audit
        cond = []
        if entity:
            cond.append(au.c.entity == entity)
        if entity_id:
            cond.append(au.c.entity_id == entity_id)
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(au).where(*cond)) or 0
            rows = conn.execute(select(au).where(*cond).order_by(au.c.id).limit(limit).offset(offset))
            return Page([dict(r._mapping) for r in rows], int(total), limit, offset)


def _ns(v: Any) -> int | None:
    return None if v is None else int(v.timestamp() * 1_000_000) * 1000


def _dt(ns: int | None) -> Any:
    from datetime import UTC, datetime

    return None if ns is None else datetime.fromtimestamp(ns / NS, UTC)
