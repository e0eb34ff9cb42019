"""Maintenance requests in the MES database: opened by the analytics' alerts (one per alert episode,
idempotent by key), acknowledged and closed by people, every change audited. Mixed into the Repository.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update

from mes import tables as t
from mes.records import Conflict, NotFound, Page, fetch_page, upsert, write_audit
from shopfloor.config.mes import MesConfig
from shopfloor.model import now_ns

ANALYTICS_ACTOR = "analytics"  # requests the analytics open are audited under this name
KINDS = ("equipment", "sensor_fault")
OPEN, ACKNOWLEDGED, CLOSED = "open", "acknowledged", "closed"
STATUSES = (OPEN, ACKNOWLEDGED, CLOSED)
TRANSITIONS: dict[str, tuple[str, ...]] = {OPEN: (ACKNOWLEDGED, CLOSED), ACKNOWLEDGED: (CLOSED,), CLOSED: ()}
ENTITY = "maintenance"  # the audit trail's entity name (entity_id: the request id)


@dataclass(frozen=True)
class MaintenanceRequest:
    """What an alert asks for: ``key`` names its episode (e.g. ``pdm:equipment:<asset>:<mode>:<raised_ns>``),
    ``subject`` the failure mode (or the signal of a sensor fault); RUL and score are None (or NaN) when
    there is no estimate."""

    key: str
    asset: str
    kind: str  # equipment | sensor_fault
    subject: str
    opened_ns: int  # when the alert was raised (source time)
    rul_hours: float | None = None
    rul_low_hours: float | None = None
    rul_high_hours: float | None = None
    score: float | None = None
    evidence: tuple[str, ...] = ()
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown maintenance request kind {self.kind!r} (known: {', '.join(KINDS)})")
        for name, most in (("key", 255), ("asset", t.PATH), ("subject", 128)):
            v = getattr(self, name)
            if not v or len(v) > most:
                raise ValueError(f"maintenance request {name} must be 1 to {most} characters")
        if isinstance(self.evidence, str):
            raise ValueError("maintenance request evidence is a sequence of signal names, not one string")


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


class MaintenanceBook:
    engine: Engine
    cfg: MesConfig

    def open_request(
        self, req: MaintenanceRequest, actor: str = ANALYTICS_ACTOR, *, once_per_subject: bool = False
    ) -> tuple[int, bool]:
        """Open a request unless one with ``req.key`` exists: (its id, whether it was created now).

        Idempotent across calls and processes (INSERT ... ON CONFLICT DO NOTHING on the unique key). With
        ``once_per_subject``, an alert raised again while a request for the same asset, kind and subject is
        still open or acknowledged adds no request: it is written to that request's audit trail
        (action ``raised-again``) and that request's id is returned, not created."""
        mr, eq = t.maintenance_requests, t.equipment
        row: dict[str, Any] = {
            "key": req.key,
            "asset": req.asset,
            "kind": req.kind,
            "subject": req.subject,
            "opened_ns": int(req.opened_ns),
            "rul_hours": _num(req.rul_hours),
            "rul_low_hours": _num(req.rul_low_hours),
            "rul_high_hours": _num(req.rul_high_hours),
            "score": _num(req.score),
            "evidence": [str(e) for e in req.evidence],
            "detail": req.detail,
            "status": OPEN,
            "updated_ns": now_ns(),
            "updated_by": actor,
            "note": "",
        }
        with self.engine.begin() as conn:
            if conn.scalar(select(eq.c.path).where(eq.c.path == req.asset)) is None:
                raise NotFound(f"unknown asset {req.asset}")
            if once_per_subject:
                same = conn.scalar(
                    select(mr.c.id)
                    .where(
                        mr.c.asset == req.asset,
                        mr.c.kind == req.kind,
                        mr.c.subject == req.subject,
                        mr.c.status.in_((OPEN, ACKNOWLEDGED)),
                        mr.c.key != req.key,
                    )
                    .order_by(mr.c.id)
                    .limit(1)
                )
                if same is not None:
                    again = {"key": req.key, "opened_ns": int(req.opened_ns), "score": _num(req.score)}
                    write_audit(conn, actor, ENTITY, "raised-again", [(str(same), None, again)])
                    return int(same), False
            stmt = upsert(conn, mr).on_conflict_do_nothing(index_elements=["key"]).returning(mr.c.id)
            rid = conn.scalar(stmt, row)  # None: the key was there already
            created = rid is not None
            if rid is None:
                rid = conn.scalar(select(mr.c.id).where(mr.c.key == req.key))
            if rid is None:  # cannot happen: the key is there, inserted now or before
                raise Conflict(f"maintenance request {req.key} could not be opened")
            if created:
                write_audit(conn, actor, ENTITY, "open", [(str(rid), None, {"id": rid, **row})])
        return int(rid), created

    def open_request_exists(self, key: str) -> bool:
        """Whether a request with this key was opened (whatever its status now)."""
        mr = t.maintenance_requests
        with self.engine.connect() as conn:
            return conn.scalar(select(mr.c.id).where(mr.c.key == key)) is not None

    def requests(
        self,
        status: str | None = None,
        asset: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> Page:
        """Requests newest first (by id); ``cursor`` is the last id of the previous page, and ``total``
        counts the matching requests from the cursor on (all of them on the first page)."""
        mr = t.maintenance_requests
        cond = []
        if status:
            cond.append(mr.c.status == status)
        if asset:
            cond.append(or_(mr.c.asset == asset, mr.c.asset.startswith(asset.rstrip("/") + "/")))
        if cursor is not None:
            cond.append(mr.c.id < cursor)
        with self.engine.connect() as conn:
            return fetch_page(conn, mr, cond, (mr.c.id.desc(),), limit, 0)  # type: ignore[arg-type]

    def request(self, request_id: int) -> dict[str, Any]:
        mr = t.maintenance_requests
        with self.engine.connect() as conn:
            row = conn.execute(select(mr).where(mr.c.id == request_id)).first()
        if row is None:
            raise NotFound(f"no maintenance request {request_id}")
        return dict(row._mapping)

    def acknowledge_request(self, request_id: int, actor: str, note: str = "") -> dict[str, Any]:
        return self._move(request_id, ACKNOWLEDGED, actor, note)

    def close_request(self, request_id: int, actor: str, note: str = "") -> dict[str, Any]:
        return self._move(request_id, CLOSED, actor, note)

    def _move(self, request_id: int, to: str, actor: str, note: str) -> dict[str, Any]:
        """A guarded transition: refused unless allowed from the current status, and unless the status is
        still the one read when the update runs (someone else may have moved it meanwhile)."""
        mr = t.maintenance_requests
        with self.engine.begin() as conn:
            row = conn.execute(select(mr).where(mr.c.id == request_id)).first()
            if row is None:
                raise NotFound(f"no maintenance request {request_id}")
            if to not in TRANSITIONS[row.status]:
                allowed = ", ".join(TRANSITIONS[row.status]) or "none (final)"
                raise Conflict(
                    f"maintenance request {request_id} is {row.status}: "
                    f"cannot become {to} (allowed: {allowed})"
                )
            values = {"status": to, "updated_ns": now_ns(), "updated_by": actor, "note": note or row.note}
            res = conn.execute(
                update(mr).where(and_(mr.c.id == request_id, mr.c.status == row.status)).values(**values)
            )
            if res.rowcount != 1:
                raise Conflict(f"maintenance request {request_id} changed meanwhile; read it again")
            keys = ("status", "updated_by", "note")
            before = {k: getattr(row, k) for k in keys}
            write_audit(conn, actor, ENTITY, to, [(str(request_id), before, {k: values[k] for k in keys})])
        return self.request(request_id)
