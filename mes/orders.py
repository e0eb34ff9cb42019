"""Work orders in the MES database: creation (all or nothing), guarded transitions, edits with versions,
what each order produced, and the order lifecycle derivation drives (start on production, complete at
quantity). Mixed into mes.repository.Repository.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from mes import tables as t
from mes.derive import COUNT_FIELDS
from mes.order_spec import TRANSITIONS, OrderPerformance, OrderSpec, OrderStatus
from mes.records import MES_ACTOR, NS, Conflict, NotFound, Page, fetch_page, write_audit
from shopfloor.config.mes import MesConfig
from shopfloor.model import now_ns


class OrderBook:
    engine: Engine
    cfg: MesConfig

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
                write_audit(conn, actor, "order", "create", [(r["id"], None, r) for r in rows])
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
            return fetch_page(conn, wo, cond, (wo.c.created_ns, wo.c.id), limit, offset)

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
        keys = ("status", "actual_start_ns", "actual_end_ns")
        before, after = {k: cur[k] for k in keys}, {k: values.get(k, cur[k]) for k in keys}
        write_audit(conn, actor, "order", to.value, [(cur["id"], before, after)])
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
            write_audit(
                conn, actor, "order", "edit", [(order_id, {k: cur[k] for k in changes}, dict(changes))]
            )
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


def _ns(v: Any) -> int | None:
    return None if v is None else int(v.timestamp() * 1_000_000) * 1000


def _dt(ns: int | None) -> Any:
    from datetime import UTC, datetime

    return None if ns is None else datetime.fromtimestamp(ns / NS, UTC)
