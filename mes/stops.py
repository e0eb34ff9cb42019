"""Stops in the MES database as people handle them: list runs and stops, assign or correct a reason,
split a stop in two; every change audited. Mixed into mes.repository.Repository.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, or_, select, update

from mes import tables as t
from mes.losses import UNASSIGNED, StateCategory
from mes.records import Conflict, NotFound, Page, fetch_page, write_audit
from shopfloor.config.mes import MesConfig


class StopLog:
    engine: Engine
    cfg: MesConfig
    reason_ids: set[str]

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
            return fetch_page(conn, si, cond, (si.c.start_ns, si.c.asset), limit, offset)

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
            before = {"reason": row.reason, "reason_by": row.reason_by}
            write_audit(
                conn,
                actor,
                "stop",
                "assign_reason",
                [(str(interval_id), before, {"reason": reason, "reason_by": actor})],
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
            after = {"first_end_ns": at_ns, "second_id": new_id, "second_reason": second["reason"]}
            write_audit(
                conn,
                actor,
                "stop",
                "split",
                [(str(interval_id), {"start_ns": row.start_ns, "end_ns": row.end_ns}, after)],
            )
        return self.interval(interval_id), self.interval(int(new_id))
