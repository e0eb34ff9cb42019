"""The embedded default store: one SQLite file in WAL mode, zero setup.

Writes run on one thread and reads on another, so queries never stall acquisition and another
process (the dashboard) can read while this one writes.

Events are keyed on (asset, kind, key, ts, seq). A file made before ``key`` and ``seq`` existed
(events keyed on asset, kind, ts) is migrated in place when a store opens it for writing; a
read-only store (``create=False``) reads either schema.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from historian.base import AGG_FNS, AggFn, SeriesFrame, Store, check_agg, event_seqs
from historian.errors import StoreRejected, StoreUnavailable
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind, Quality, Sample, SeriesKey

T = TypeVar("T")

EVENTS_DDL = """
CREATE TABLE {table} (
    asset TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    value REAL,
    data TEXT,
    PRIMARY KEY (asset, kind, key, ts, seq)
) WITHOUT ROWID
"""
EVENTS_KEY = ("asset", "kind", "key", "ts", "seq")

SCHEMA = (
    """
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
    text TEXT,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
"""
    + EVENTS_DDL.format(table="IF NOT EXISTS events").strip()
    + """;
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""
)

INSERT_SAMPLES = "INSERT OR REPLACE INTO samples (series_id, ts, value, quality) VALUES (?, ?, ?, ?)"
# A text signal's row: its value is NULL and its string in ``text`` (REPLACE leaves no stale text).
INSERT_TEXT = "INSERT OR REPLACE INTO samples (series_id, ts, value, quality, text) VALUES (?, ?, NULL, ?, ?)"
# Same identity, same row: a replay of the same events overwrites them with themselves.
INSERT_EVENTS = (
    "INSERT OR REPLACE INTO events (asset, kind, key, ts, seq, code, message, value, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_EVENTS = "SELECT asset, kind, key, ts, code, message, value, data FROM events"
# Files from before key and seq (read-only stores do not migrate them).
SELECT_EVENTS_V1 = "SELECT asset, kind, '', ts, code, message, value, data FROM events"
EVENTS_ORDER = " ORDER BY ts, asset, kind, key, seq"
EVENTS_ORDER_V1 = " ORDER BY ts, asset, kind"

_AGG_SQL = {"mean": "AVG(value)", "min": "MIN(value)", "max": "MAX(value)", "count": "COUNT(value)"}
assert set(_AGG_SQL) | {"last"} == set(AGG_FNS), "every aggregate needs its SQL"

log = logging.getLogger(__name__)


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate_samples(conn: sqlite3.Connection) -> bool:
    """Give a ``samples`` table from before text signals its ``text`` column (NULL for old rows)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(samples)")}
    if "text" in columns:
        return False
    conn.execute("ALTER TABLE samples ADD COLUMN text TEXT")
    return True


def migrate_events(conn: sqlite3.Connection) -> int:
    """Re-key an ``events`` table from an older schema on (asset, kind, key, ts, seq), in place.

    Old rows get ``key = ''`` and ``seq = 0``. One transaction: a crash leaves the old table as it
    was. Returns how many rows were moved (0 when the table already has the current key).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        info = conn.execute("PRAGMA table_info(events)").fetchall()
        columns = {row[1] for row in info}
        pk = tuple(name for _, name in sorted((row[5], row[1]) for row in info if row[5]))
        if not info or pk == EVENTS_KEY:
            conn.execute("COMMIT")
            return 0
        key = "key" if "key" in columns else "''"
        conn.execute("DROP TABLE IF EXISTS events_migrating")
        conn.execute(EVENTS_DDL.format(table="events_migrating"))
        # OR REPLACE: an old table keyed otherwise could hold rows that now share an identity.
        cur = conn.execute(
            "INSERT OR REPLACE INTO events_migrating (asset, kind, key, ts, seq, code, message, value, data) "
            f"SELECT asset, kind, {key}, ts, 0, code, message, value, data FROM events"
        )
        moved = cur.rowcount
        conn.execute("DROP TABLE events")
        conn.execute("ALTER TABLE events_migrating RENAME TO events")
        conn.execute("CREATE INDEX IF NOT EXISTS events_ts ON events (ts)")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return moved


class SQLiteStore(Store):
    """``create=False`` makes a read-only store (``open_reader``): it never creates or migrates the file."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = str(path)
        self.create = create
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
        if self.create:
            await self._on(self._wx, self._open_blocking)

    def _open_blocking(self) -> None:
        if self._w is not None:
            return
        if not self.create:
            raise StoreRejected(
                f"sqlite {self.path}: opened read-only (open_reader); use open_store to write"
            )
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._w = connect(self.path)
            self._w.executescript(SCHEMA)
            if migrate_samples(self._w):
                log.warning("sqlite %s: samples table given a text column for text signals", self.path)
            moved = migrate_events(self._w)
            if moved:
                log.warning(
                    "sqlite %s: events table re-keyed on (asset, kind, key, ts, seq); %d rows kept",
                    self.path,
                    moved,
                )
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
        if batch.text is not None:
            return ("samples", batch)  # text rows take their own statement (rare; on the writer thread)
        return (
            "rows",
            zip(lut[batch.series].tolist(), batch.ts.tolist(), _values(batch), batch.quality.tolist()),
        )

    def encode_events(
        self, events: Sequence[Event], seqs: Sequence[int] | None = None
    ) -> tuple[str, list[tuple[Any, ...]]]:
        numbers = event_seqs(events) if seqs is None else seqs
        return ("events", [_event_row(e, seq) for e, seq in zip(events, numbers, strict=True)])

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
                conn.executemany(INSERT_EVENTS, data)
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
        sids = lut[batch.series]
        if batch.text is None:
            conn.executemany(
                INSERT_SAMPLES, zip(sids.tolist(), batch.ts.tolist(), _values(batch), batch.quality.tolist())
            )
            return
        is_text = batch.text_rows()
        num = batch.take(~is_text)
        conn.executemany(
            INSERT_SAMPLES, zip(sids[~is_text].tolist(), num.ts.tolist(), _values(num), num.quality.tolist())
        )
        conn.executemany(
            INSERT_TEXT,
            zip(
                sids[is_text].tolist(),
                batch.ts[is_text].tolist(),
                batch.quality[is_text].tolist(),
                batch.text[is_text].tolist(),
            ),
        )

    # -- reading -------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        if self._r is None:
            if not Path(self.path).exists():
                raise StoreUnavailable(f"sqlite {self.path}: no such database yet")
            self._r = connect(self.path)
        return self._r

    async def _read(
        self,
        sql: str,
        params: Sequence[Any],
        convert: Callable[[list[tuple[Any, ...]]], T],
        legacy_sql: str | None = None,
    ) -> T:
        """``convert`` applied to the rows of ``sql``, both on the read thread (the loop only waits).

        ``legacy_sql`` is run instead on a file with the old events schema (read-only stores).
        """

        def run() -> T:
            try:
                try:
                    rows = self._reader().execute(sql, params).fetchall()
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        rows = []
                    elif legacy_sql is not None and "no such column" in str(exc):
                        rows = self._reader().execute(legacy_sql, params).fetchall()
                    else:
                        raise
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
            return convert(rows)

        return await self._on(self._rx, run)

    async def query_raw(
        self, asset: str, signal: str, start_ns: int, end_ns: int, limit: int | None = None
    ) -> SeriesFrame:
        where = (
            "FROM samples JOIN series ON series.id = samples.series_id "
            "WHERE asset = ? AND signal = ? AND ts >= ? AND ts < ? ORDER BY ts"
        )
        params: list[Any] = [asset, signal, int(start_ns), int(end_ns)]
        if limit:
            where += " LIMIT ?"
            params.append(int(limit))
        sql, legacy = "SELECT ts, value, quality, text " + where, "SELECT ts, value, quality, NULL " + where
        return await self._read(sql, params, _raw_frame, legacy)

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
        params = [int(every_ns), int(every_ns), asset, signal, int(start_ns), int(end_ns)]
        return await self._read(sql, params, _agg_frame)

    async def latest(self, asset: str | None = None) -> list[Sample]:
        # one seek of the (series_id, ts) key per series, not a scan of every sample: a GROUP BY with
        # MAX(ts) read the whole table (4 s for 12 M samples; the dashboard asks every second)
        rest = (
            "FROM series JOIN samples ON samples.series_id = series.id AND samples.ts = "
            "(SELECT MAX(ts) FROM samples AS newest WHERE newest.series_id = series.id) "
            + ("WHERE series.asset = ? " if asset else "")
            + "ORDER BY series.asset, series.signal"
        )
        sql = (
            "SELECT series.asset, series.signal, samples.value, samples.ts, samples.quality, samples.text "
            + rest
        )
        legacy = (
            "SELECT series.asset, series.signal, samples.value, samples.ts, samples.quality, NULL " + rest
        )
        return await self._read(sql, [asset] if asset else [], _samples, legacy)

    async def list_series(self) -> list[SeriesKey]:
        return await self._read(
            "SELECT asset, signal FROM series WHERE EXISTS "
            "(SELECT 1 FROM samples WHERE series_id = series.id) ORDER BY asset, signal",
            [],
            _series_keys,
        )

    async def query_events(
        self, start_ns: int, end_ns: int, asset: str | None = None, kind: EventKind | None = None
    ) -> list[Event]:
        where = " WHERE ts >= ? AND ts < ?"
        params: list[Any] = [int(start_ns), int(end_ns)]
        if asset:
            where += " AND asset = ?"
            params.append(asset)
        if kind:
            where += " AND kind = ?"
            params.append(str(kind))
        return await self._read(
            SELECT_EVENTS + where + EVENTS_ORDER, params, _events, SELECT_EVENTS_V1 + where + EVENTS_ORDER_V1
        )


def _values(batch: SampleBatch) -> list[float | None]:
    values = batch.value.tolist()
    if not np.isfinite(batch.value).all():
        values = [v if math.isfinite(v) else None for v in values]
    return values


def _event_row(e: Event, seq: int) -> tuple[Any, ...]:
    value = e.value if e.value is not None and math.isfinite(e.value) else None
    data = json.dumps(e.data, separators=(",", ":"), ensure_ascii=False, default=str) if e.data else None
    return (e.asset, str(e.kind), e.key, int(e.ts_ns), seq, e.code, e.message, value, data)


def _raw_frame(rows: list[tuple[Any, ...]]) -> SeriesFrame:
    return _frame(rows, with_quality=True)


def _agg_frame(rows: list[tuple[Any, ...]]) -> SeriesFrame:
    return _frame(rows, with_quality=False)  # (bucket, value[, max ts]): the first two columns


def _samples(rows: list[tuple[Any, ...]]) -> list[Sample]:
    return [
        Sample(
            a, s, text if text is not None else float("nan") if v is None else float(v), int(t), Quality(q)
        )
        for a, s, v, t, q, text in rows
    ]


def _series_keys(rows: list[tuple[Any, ...]]) -> list[SeriesKey]:
    return [SeriesKey(a, s) for a, s in rows]


def _events(rows: list[tuple[Any, ...]]) -> list[Event]:
    return [
        Event(a, EventKind(k), int(t), c, m, v, json.loads(d) if d else {}, key=key)
        for a, k, key, t, c, m, v, d in rows
    ]


def _frame(rows: list[tuple[Any, ...]], with_quality: bool) -> SeriesFrame:
    n = len(rows)
    ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    value = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=n)
    quality = np.fromiter((r[2] for r in rows), dtype=np.uint8, count=n) if with_quality else None
    text = None
    if with_quality and any(r[3] is not None for r in rows):
        text = np.empty(n, dtype=object)
        text[:] = [r[3] for r in rows]
    return SeriesFrame(ts, value, quality, text)
