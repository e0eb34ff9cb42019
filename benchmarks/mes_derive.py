"""Benchmark of the MES live path: samples/s that derivation (mes.derive + mes.repository, one transaction
per bus batch) sustains on SQLite and on a real PostgreSQL, against the bare driver writing the same rows.

The baseline is the same derivation plus the same SQL the repository issues (close and open intervals, add
to buckets, move cursors), sent through sqlite3 / psycopg directly, a transaction per batch: what is left
is the cost of SQLAlchemy and of the order and lot bookkeeping. The ratio is our samples/s over its.
Run: .venv/bin/python benchmarks/mes_derive.py [--minutes 120] [--assets 14] [--batch-s 5]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from mes import tables as t
from mes.db import migrate, open_engine
from mes.derive import COUNT_FIELDS, Changes, Deriver
from mes.repository import Repository
from shopfloor.batch import SampleBatch
from shopfloor.config.mes import MesConfig
from shopfloor.testing.servers import PostgresServer, ServerUnavailable

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
SIGNALS = ("state", "why", "n", "bad", "kwh", "kg")


def config(n_assets: int) -> MesConfig:
    assets = [
        {
            "path": f"bench/area/line-{i // 4}/asset-{i}",
            "reason": "why",
            "counters": {"total": "n", "scrap": "bad"},
            "energy": "kwh",
            "mass": "kg",
            "ideal_cycle_s": 2.0,
        }
        for i in range(n_assets)
    ]
    reasons = [{"id": "fault", "en": "Fault", "zh": "故障", "loss": "breakdown", "codes": [5]}]
    return MesConfig.model_validate({"assets": assets, "reasons": reasons, "micro_stop_s": 60})


def stream(cfg: MesConfig, minutes: int, batch_s: int) -> list[SampleBatch]:
    """One sample per signal per second; each asset stops every ~7 minutes for 30-90 s."""
    rng = np.random.default_rng(1)
    secs = minutes * 60
    keys = [(a.path, s) for a in cfg.assets for s in SIGNALS]
    cols: list[np.ndarray] = []
    for _ in cfg.assets:
        state = np.ones(secs)
        t = int(rng.integers(60, 400))
        while t < secs:
            d = int(rng.integers(30, 90))
            state[t : t + d] = 6
            t += d + int(rng.integers(200, 600))
        running = state == 1
        n = np.cumsum(running & (np.arange(secs) % 2 == 0))
        cols += [state, np.where(running, 0, 5), n, n // 50, np.cumsum(running * 0.01), n * 12.5]
    values = np.stack(cols)  # (keys, secs)
    out = []
    for s0 in range(0, secs, batch_s):
        s1 = min(secs, s0 + batch_s)
        k = len(keys)
        series = np.repeat(np.arange(k, dtype=np.uint32), s1 - s0)
        ts = np.tile(T0 + np.arange(s0, s1, dtype=np.int64) * NS, k)
        out.append(SampleBatch.from_columns(keys, series, ts, values[:, s0:s1].ravel()))
    return out


def run_ours(
    url: str, cfg: MesConfig, batches: list[SampleBatch]
) -> tuple[float, list[list[tuple[Any, ...]]]]:
    engine = open_engine(url)
    migrate(engine)
    repo = Repository(engine, cfg)
    repo.sync_plant([(a.path, "", "") for a in cfg.assets])
    d = Deriver(cfg)
    t0 = time.perf_counter()
    for b in batches:
        repo.apply(d.feed(b))
    wall = time.perf_counter() - t0
    with engine.connect() as conn:
        tables = [
            [tuple(r) for r in conn.execute(select(t.state_intervals).order_by(t.state_intervals.c.id))],
            [tuple(r) for r in conn.execute(select(t.count_buckets))],
            [tuple(r) for r in conn.execute(select(t.cursors))],
        ]
    engine.dispose()
    return wall, tables


def run_bare(kind: str, dsn: str, changes: list[Changes]) -> float:
    """What the repository writes per batch, as plain SQL through the bare driver, one transaction per
    batch: close and open intervals, add to count buckets, move the cursors."""
    ph = "?" if kind == "sqlite" else "%s"
    ddl = [
        "CREATE TABLE iv (asset TEXT, start_ns BIGINT, end_ns BIGINT, state TEXT, plc_state INTEGER,"
        " plc_reason INTEGER, reason TEXT, PRIMARY KEY (asset, start_ns))",
        "CREATE TABLE cb (asset TEXT, bucket_ns BIGINT, total FLOAT, good FLOAT, scrap FLOAT, rework FLOAT,"
        " energy_kwh FLOAT, mass_kg FLOAT, PRIMARY KEY (asset, bucket_ns))",
        "CREATE TABLE cu (asset TEXT, signal TEXT, ts_ns BIGINT, value FLOAT, PRIMARY KEY (asset, signal))",
    ]
    if kind == "sqlite":
        conn: Any = sqlite3.connect(dsn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    else:
        import psycopg

        conn = psycopg.connect(dsn)
    cur = conn.cursor()
    for q in ddl:
        cur.execute(q)
    conn.commit()
    add = ", ".join(f"{f} = cb.{f} + excluded.{f}" for f in COUNT_FIELDS)
    t0 = time.perf_counter()
    for ch in changes:
        for c in ch.intervals:
            cur.execute(
                f"UPDATE iv SET end_ns = {ph} WHERE asset = {ph} AND end_ns IS NULL AND start_ns < {ph}",
                (c.at_ns, c.asset, c.at_ns),
            )
            cur.execute(
                f"INSERT INTO iv VALUES ({','.join([ph] * 7)}) ON CONFLICT (asset, start_ns) DO NOTHING",
                (c.asset, c.at_ns, None, c.state.value, c.plc_state, c.plc_reason, None),
            )
        if ch.buckets:
            cur.executemany(
                f"INSERT INTO cb AS cb VALUES ({','.join([ph] * 8)}) ON CONFLICT (asset, bucket_ns) DO UPDATE SET {add}",
                [(a, b, *map(float, row)) for (a, b), row in ch.buckets.items()],
            )
        if ch.cursors:
            cur.executemany(
                f"INSERT INTO cu VALUES ({ph},{ph},{ph},{ph}) ON CONFLICT (asset, signal) DO UPDATE SET"
                " ts_ns = excluded.ts_ns, value = excluded.value",
                [(a, sig, ts, v) for (a, sig), (ts, v) in ch.cursors.items()],
            )
        conn.commit()
    wall = time.perf_counter() - t0
    conn.close()
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=120, help="simulated minutes of data")
    ap.add_argument("--assets", type=int, default=14)
    ap.add_argument("--batch-s", type=int, default=5, help="seconds of data per bus batch")
    args = ap.parse_args()
    cfg = config(args.assets)
    batches = stream(cfg, args.minutes, args.batch_s)
    n = sum(len(b) for b in batches)
    d = Deriver(cfg)
    t0 = time.perf_counter()
    changes = [d.feed(b) for b in batches]
    derive_only = time.perf_counter() - t0
    print(
        f"mes derive, no database ({args.assets} assets, {len(batches)} batches, {n:,} samples): "
        f"{n / derive_only:,.0f} samples/s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        targets: list[tuple[str, str, str]] = [
            ("sqlite", f"sqlite:///{tmp}/mes.db", f"{tmp}/bare.db"),
        ]
        server: PostgresServer | None = None
        try:
            server = PostgresServer(Path(tmp) / "pg")
            server.start()
            server.create_database("bare")
            targets.append(("postgresql", server.create_database("mes"), server.dsn("bare")))
        except ServerUnavailable as exc:
            print(f"mes derive postgresql: skipped ({exc})")
        try:
            for kind, url, bare in targets:
                wall, tables = run_ours(url, cfg, batches)
                base = run_bare(kind, bare, changes)
                rows = sum(len(x) for x in tables)
                print(
                    f"mes derive {kind} ({len(tables[0])} intervals, {len(tables[1])} buckets, {rows:,} rows): "
                    f"ours {n / wall:,.0f} samples/s, baseline {n / (base + derive_only):,.0f} samples/s "
                    f"(derivation + the same SQL through the bare driver, a transaction per batch) "
                    f"ratio {(base + derive_only) / wall:.2f}x"
                )
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
