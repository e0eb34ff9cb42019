"""The embedded default store: one SQLite file in WAL mode, zero setup.

Writes run on one thread and reads on another, so queries never stall acquisition and another
process (the dashboard) can read while this one writes.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from historian.base import AggFn, SeriesFrame, Store, check_agg
from historian.errors import StoreRejected, StoreUnavailable
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Quality, Sample, SeriesKey

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    asset TEXT NOT NULL,
    signal TEXT NOT NULL,
    UNIQUE (asset, signal)
);
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    asset TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    value REAL,
    data TEXT,
    PRIMARY KEY (asset, kind, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""

INSERT_SAMPLES = "INSERT OR REPLACE INTO samples (series_id, ts, value, quality) VALUES (?, ?, ?, ?)"
INSERT_EVENTS = (
    "INSERT OR REPLACE INTO events (asset, kind, ts, code, message, value, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_AGG_SQL = {"mean": "AVG(value)", "min": "MIN(value)", "max": "MAX(value)", "count": "COUNT(value)"}


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SQLiteStore(Store):
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._wx = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self._rx = ThreadPoolExecutor(1, thread_name_prefix="sqlite-read")
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._ids: dict[SeriesKey, int] = {}

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def _on(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def open(self) -> None:
        await self._on(self._wx, self._open_blocking)

    def _open_blocking(self) -> None:
        if self._w is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._w = connect(self.path)
            self._w.executescript(SCHEMA)
            self._ids = {
                SeriesKey(a, s): i for i, a, s in self._w.execute("SELECT id, asset, signal FROM series")
            }
        except sqlite3.Error as exc:
            self._w = None
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    async def close(self) -> None:
        for pool, attr in ((self._wx, "_w"), (self._rx, "_r")):
            conn = getattr(self, attr)
            if conn is not None:
                await self._on(pool, conn.close)
                setattr(self, attr, None)
        self._wx.shutdown(wait=True)
        self._rx.shutdown(wait=True)
        # usable again after close (reopens lazily), like the InfluxDB stores
        self._wx = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self._rx = ThreadPoolExecutor(1, thread_name_prefix="sqlite-read")

    # -- writing -------------------------------------------------------------------------------
    def encode_samples(self, batch: SampleBatch) -> tuple[str, Any]:
        """Rows ready for executemany, built here so it overlaps the previous batch's insert.

        A batch with a series not yet in the table is resolved on the writer thread instead.
        """
        ids = self._ids
        try:
            lut = np.fromiter((ids[k] for k in batch.keys), dtype=np.int64, count=len(batch.keys))
        except KeyError:
            return ("samples", batch)
        return (
            "rows",
            zip(lut[batch.series].tolist(), batch.ts.tolist(), _values(batch), batch.quality.tolist()),
        )

    def encode_events(self, events: Sequence[Event]) -> tuple[str, Sequence[Event]]:
        return ("events", events)

    async def send(self, payload: tuple[str, Any]) -> None:
        await self._on(self._wx, self._send_blocking, payload)

    def _send_blocking(self, payload: tuple[str, Any]) -> None:
        self._open_blocking()
        conn = self._w
        assert conn is not None
        kind, data = payload
        try:
            conn.execute("BEGIN")
            if kind == "rows":
                conn.executemany(INSERT_SAMPLES, data)
            elif kind == "samples":
                self._insert_samples(conn, data)
            else:
                conn.executemany(INSERT_EVENTS, [_event_row(e) for e in data])
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise StoreRejected(f"sqlite: {exc}") from exc
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._ids.clear()
            self._ids.update(
                {SeriesKey(a, s): i for i, a, s in conn.execute("SELECT id, asset, signal FROM series")}
            )
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def _insert_samples(self, conn: sqlite3.Connection, batch: SampleBatch) -> None:
        ids = self._ids
        lut = np.empty(len(batch.keys), dtype=np.int64)
        for i, key in enumerate(batch.keys):
            sid = ids.get(key)
            if sid is None:
                cur = conn.execute("INSERT OR IGNORE INTO series (asset, signal) VALUES (?, ?)", key)
                sid = cur.lastrowid if cur.rowcount else None
                if sid is None:
                    (sid,) = conn.execute(
                        "SELECT id FROM series WHERE asset = ? AND signal = ?", key
                    ).fetchone()
                ids[key] = sid
            lut[i] = sid
        conn.executemany(
            INSERT_SAMPLES,
            zip(lut[batch.series].tolist(), batch.ts.tolist(), _values(batch), batch.quality.tolist()),
        )

    # -- reading -------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        if self._r is None:
            if not Path(self.path).exists():
                raise StoreUnavailable(f"sqlite {self.path}: no such database yet")
            self._r = connect(self.path)
        return self._r

    async def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            try:
                return self._reader().execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise

        return await self._on(self._rx, run)

    async def query_raw(
        self, asset: str, signal: str, start_ns: int, end_ns: int, limit: int | None = None
    ) -> SeriesFrame:
        sql = (
            "SELECT ts, value, quality FROM samples JOIN series ON series.id = samples.series_id "
            "WHERE asset = ? AND signal = ? AND ts >= ? AND ts < ? ORDER BY ts"
        )
        params: list[Any] = [asset, signal, int(start_ns), int(end_ns)]
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = await self._read(sql, params)
        return _frame(rows, with_quality=True)

    async def query_agg(
        self,
        asset: str,
        signal: str,
        start_ns: int,
        end_ns: int,
        every_ns: int,
        fn: AggFn,
        include_bad: bool = False,
    ) -> SeriesFrame:
        check_agg(fn, every_ns)
        quality = "" if include_bad else " AND quality < 2"
        where = f"asset = ? AND signal = ? AND ts >= ? AND ts < ? AND value IS NOT NULL{quality}"
        # SQLite: with MAX(ts) the bare column `value` comes from the row holding the maximum.
        agg = "value, MAX(ts)" if fn == "last" else _AGG_SQL[fn]
        sql = (
            f"SELECT (ts / ?) * ? AS bucket, {agg} FROM samples JOIN series ON series.id = samples.series_id "
            f"WHERE {where} GROUP BY bucket ORDER BY bucket"
        )
        rows = await self._read(
            sql, [int(every_ns), int(every_ns), asset, signal, int(start_ns), int(end_ns)]
        )
        return _frame([(r[0], r[1]) for r in rows], with_quality=False)

    async def latest(self, asset: str | None = None) -> list[Sample]:
        sql = (
            "SELECT asset, signal, value, MAX(ts), quality FROM samples "
            "JOIN series ON series.id = samples.series_id "
            + ("WHERE asset = ? " if asset else "")
            + "GROUP BY series_id ORDER BY asset, signal"
        )
        rows = await self._read(sql, [asset] if asset else [])
        return [
            Sample(a, s, float("nan") if v is None else float(v), int(t), Quality(q))
            for a, s, v, t, q in rows
        ]

    async def list_series(self) -> list[SeriesKey]:
        rows = await self._read(
            "SELECT asset, signal FROM series WHERE EXISTS "
            "(SELECT 1 FROM samples WHERE series_id = series.id) ORDER BY asset, signal",
            [],
        )
        return [SeriesKey(a, s) for a, s in rows]

    async def query_events(
        self, start_ns: int, end_ns: int, asset: str | None = None, kind: EventKind | None = None
    ) -> list[Event]:
        sql = "SELECT asset, kind, ts, code, message, value, data FROM events WHERE ts >= ? AND ts < ?"
        params: list[Any] = [int(start_ns), int(end_ns)]
        if asset:
            sql += " AND asset = ?"
            params.append(asset)
        if kind:
            sql += " AND kind = ?"
            params.append(str(kind))
        rows = await self._read(sql + " ORDER BY ts", params)
        return [
            Event(a, EventKind(k), int(t), c, m, v, json.loads(d) if d else {})
            for a, k, t, c, m, v, d in rows
        ]


def _values(batch: SampleBatch) -> list[float | None]:
    values = batch.value.tolist()
    if not np.isfinite(batch.value).all():
        values = [v if math.isfinite(v) else None for v in values]
    return values


def _event_row(e: Event) -> tuple[Any, ...]:
    value = e.value if e.value is not None and math.isfinite(e.value) else None
    data = json.dumps(e.data, separators=(",", ":"), ensure_ascii=False, default=str) if e.data else None
    return (e.asset, str(e.kind), int(e.ts_ns), e.code, e.message, value, data)


def _frame(rows: list[tuple[Any, ...]], with_quality: bool) -> SeriesFrame:
    n = len(rows)
    ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    value = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=n)
    quality = np.fromiter((r[2] for r in rows), dtype=np.uint8, count=n) if with_quality else None
    return SeriesFrame(ts, value, quality)
