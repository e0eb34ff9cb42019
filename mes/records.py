"""The vocabulary the MES repository's parts share: its errors, a page of rows, the dialect's upsert,
and the audit trail (who, when, before, after) written inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from mes import tables as t
from shopfloor.model import now_ns

NS = 1_000_000_000
MES_ACTOR = "mes"  # derived changes are audited under this name


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


def upsert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, with ``on_conflict_do_update`` / ``_do_nothing`` (SQLite and PostgreSQL)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def fetch_page(
    conn: Connection,
    table: Table,
    cond: Sequence[ColumnElement[bool]],
    order_by: Sequence[Column[Any]],
    limit: int,
    offset: int,
) -> Page:
    """One page of ``table`` rows matching ``cond``, and how many match in all."""
    total = conn.scalar(select(func.count()).select_from(table).where(*cond)) or 0
    rows = conn.execute(select(table).where(*cond).order_by(*order_by).limit(limit).offset(offset))
    return Page([dict(r._mapping) for r in rows], int(total), limit, offset)


def write_audit(
    conn: Connection,
    actor: str,
    entity: str,
    action: str,
    changes: Sequence[tuple[str, dict[str, Any] | None, dict[str, Any] | None]],
) -> None:
    """One audit row per (entity id, before, after), all stamped now."""
    ts = now_ns()
    conn.execute(
        insert(t.audit),
        [
            {
                "ts_ns": ts,
                "actor": actor,
                "entity": entity,
                "entity_id": i,
                "action": action,
                "before": b,
                "after": a,
            }
            for i, b, a in changes
        ],
    )
