"""Reading from InfluxDB with InfluxQL over the /query endpoint (v1, and v2's v1-compatible API).

Builds the queries for raw, aggregated, latest, series and events, and parses the JSON answers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from historian.base import EVENTS_MEASUREMENT, SeriesFrame, check_agg
from shopfloor.model import Event, EventKind, Quality, Sample, SeriesKey

# Every name in historian.reader.AGG_FNS is also the InfluxQL function of that name.


def ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def duration(ns: int) -> str:
    for unit, size in (
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("u", 1_000),
    ):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def raw_query(asset: str, signal: str, start_ns: int, end_ns: int, limit: int | None) -> str:
    q = (
        f'SELECT "value", "quality", "text" FROM {ident(asset)} WHERE "signal" = {literal(signal)} '
        f"AND time >= {int(start_ns)} AND time < {int(end_ns)} ORDER BY time ASC"
    )
    return q + (f" LIMIT {int(limit)}" if limit else "")


def agg_query(
    asset: str, signal: str, start_ns: int, end_ns: int, every_ns: int, fn: str, include_bad: bool
) -> str:
    check_agg(fn, every_ns)
    quality = "" if include_bad else ' AND "quality" < 2'
    return (
        f'SELECT {fn}("value") FROM {ident(asset)} WHERE "signal" = {literal(signal)}{quality} '
        f"AND time >= {int(start_ns)} AND time < {int(end_ns)} "
        f"GROUP BY time({duration(int(every_ns))}) fill(none)"
    )


def latest_query(asset: str | None) -> str:
    source = ident(asset) if asset else "/^[^_]/"
    # The selector is on quality, which every point has: a newest point without a value (NaN, Bad)
    # must come back as such, not be skipped in favour of an older good value.
    return f'SELECT last("quality") AS "quality", "value", "text" FROM {source} GROUP BY "signal"'


def events_query(start_ns: int, end_ns: int, asset: str | None, kind: EventKind | None) -> str:
    cond = f"time >= {int(start_ns)} AND time < {int(end_ns)}"
    if asset:
        cond += f' AND "asset" = {literal(asset)}'
    if kind:
        cond += f' AND "kind" = {literal(str(kind))}'
    return (
        f'SELECT "code", "message", "value", "data" FROM {ident(EVENTS_MEASUREMENT)} '
        f'WHERE {cond} GROUP BY "asset", "kind", "key", "seq" ORDER BY time ASC'
    )


SHOW_SERIES = "SHOW SERIES"


def parse_results(body: bytes) -> list[dict[str, Any]]:
    """All ``series`` objects of a (possibly chunked, newline-separated) /query answer.

    Raises ValueError with the server's message when a statement failed.
    """
    series: list[dict[str, Any]] = []
    for chunk in body.splitlines():
        if not chunk.strip():
            continue
        doc = json.loads(chunk)
        if "error" in doc:
            raise ValueError(doc["error"])
        for result in doc.get("results", []):
            if "error" in result:
                raise ValueError(result["error"])
            series.extend(result.get("series", []))
    return series


def frame_from(series: list[dict[str, Any]], with_quality: bool) -> SeriesFrame:
    rows: list[list[Any]] = [row for s in series for row in s.get("values", [])]
    if not rows:
        empty = np.empty(0, np.uint8) if with_quality else None
        return SeriesFrame(np.empty(0, np.int64), np.empty(0, np.float64), empty)
    ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    value = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64)
    quality = text = None
    if with_quality:
        quality = np.array([int(Quality.BAD) if r[2] is None else r[2] for r in rows], dtype=np.uint8)
        if any(len(r) > 3 and r[3] is not None for r in rows):  # the text column of a raw query
            text = np.empty(len(rows), dtype=object)
            text[:] = [r[3] if len(r) > 3 else None for r in rows]
    return SeriesFrame(ts, value, quality, text)


def samples_from_latest(series: list[dict[str, Any]]) -> list[Sample]:
    out = []
    for s in series:
        asset = s["name"]
        signal = s.get("tags", {}).get("signal", "")
        for row in s.get("values", []):
            ts, quality, value = row[:3]
            text = row[3] if len(row) > 3 else None
            q = Quality(int(quality)) if quality is not None else Quality.BAD
            v: float | str = text if text is not None else float("nan") if value is None else float(value)
            out.append(Sample(asset, signal, v, int(ts), q))
    out.sort(key=lambda x: (x.asset, x.signal))
    return out


def series_keys(series: list[dict[str, Any]]) -> list[SeriesKey]:
    keys = set()
    for s in series:
        for (key,) in s.get("values", []):
            measurement, tags = _split_series_key(key)
            if measurement.startswith("_") or "signal" not in tags:
                continue
            keys.add(SeriesKey(measurement, tags["signal"]))
    return sorted(keys)


def _split_series_key(key: str) -> tuple[str, dict[str, str]]:
    """``meas,tag=v,tag2=v2`` → (meas, tags), honouring backslash escapes."""
    parts: list[str] = []
    cur = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):
            cur.append(key[i + 1])
            i += 2
            continue
        if c == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    tags = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return parts[0], tags


def events_from(series: list[dict[str, Any]]) -> list[Event]:
    """Events of every (asset, kind, key, seq) series, ordered by (ts, asset, kind, key, seq)."""
    rows: list[tuple[int, str, str, str, int, Event]] = []
    for s in series:
        tags = s.get("tags") or {}
        asset = tags.get("asset") or ""
        kind = EventKind(tags.get("kind") or "system")
        key = tags.get("key") or ""
        seq = int(tags.get("seq") or 0)
        cols = s["columns"]
        for row in s.get("values", []):
            r = dict(zip(cols, row, strict=True))
            data = json.loads(r["data"]) if r.get("data") else {}
            ts = int(r["time"])
            event = Event(
                asset=asset,
                kind=kind,
                ts_ns=ts,
                code=r.get("code") or "",
                message=r.get("message") or "",
                value=r.get("value"),
                data=data,
                key=key,
            )
            rows.append((ts, asset, str(kind), key, seq, event))
    rows.sort(key=lambda r: r[:5])
    return [r[5] for r in rows]
