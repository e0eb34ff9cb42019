"""The vocabulary the MES repository's parts share: its errors, a page of rows, the dialect's upsert,
bulk statements for derived rows, and the audit trail (who, when, before, after) written inside the
caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ClauseElement, Column, ColumnElement, Connection, Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.compiler import SQLCompiler

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


@dataclass(frozen=True, slots=True)
class Bulk:
    """A statement compiled once for a dialect and run for many rows through the driver's executemany.

    SQLAlchemy's executemany builds and processes a parameter dict per row, which costs about twice
    what SQLite spends inserting it; here a row is a tuple in ``keys`` order, put into the order of the
    compiled statement with the bind processors of its types (so values land exactly as through
    ``Connection.execute``). Only for statements whose parameters are all given in every row.
    """

    sql: str
    keys: tuple[str, ...]
    order: tuple[int, ...] | None  # positional paramstyle: the key index of each placeholder
    processors: tuple[Callable[[Any], Any] | None, ...]  # per key
    names: tuple[str, ...]  # named paramstyle: the bind name of each key

    @classmethod
    def compile(cls, conn: Connection, stmt: ClauseElement, keys: Sequence[str]) -> Bulk:
        compiled = cast(SQLCompiler, stmt.compile(dialect=conn.dialect, column_keys=list(keys)))
        binds = compiled.binds
        escaped = getattr(compiled, "escaped_bind_names", None) or {}
        if set(binds) != set(keys):
            raise ValueError(f"bulk statement parameters {sorted(binds)} are not the keys {sorted(keys)}")
        procs = tuple(binds[k].type.bind_processor(conn.dialect) for k in keys)
        order = tuple(keys.index(n) for n in compiled.positiontup or ()) if compiled.positional else None
        return cls(compiled.string, tuple(keys), order, procs, tuple(escaped.get(k, k) for k in keys))

    def run(self, conn: Connection, rows: Iterable[Sequence[Any]]) -> int:
        """Execute for every row (values in ``keys`` order); returns how many rows were given."""
        cols: list[Sequence[Any]] = list(zip(*rows, strict=True))  # column by column: map() runs in C
        if not cols:
            return 0
        for i, proc in enumerate(self.processors):
            if proc is not None:
                cols[i] = list(map(proc, cols[i]))
        params: list[Any]
        if self.order is not None:
            params = list(zip(*[cols[i] for i in self.order], strict=True))
        else:
            params = [dict(zip(self.names, row, strict=True)) for row in zip(*cols, strict=True)]
        conn.exec_driver_sql(self.sql, params)
        return len(params)


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
