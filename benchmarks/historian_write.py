"""Benchmark: points/s through our historian writer vs a bare baseline, measured in the same run.

InfluxDB: our writer (spool, batching, ack) vs a bare keep-alive HTTP POST of the same pre-built line
protocol. SQLite: our writer vs a bare executemany of pre-built rows. Also the serialiser alone and
the spool replay rate after an outage. Run: .venv/bin/python benchmarks/historian_write.py [--points N]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from historian.influx_v1 import InfluxV1Store
from historian.line_protocol import LineEncoder, escape_measurement, escape_tag
from historian.sqlite_store import INSERT_SAMPLES, SCHEMA, SQLiteStore, connect
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.historian_url import parse_url
from shopfloor.config.schema import HistorianConfig
from shopfloor.testing.servers import InfluxDB1Server

T0 = 1_700_000_000_000_000_000
BATCH = 5000  # points per request, ours and the baseline's
SUBMIT = 1000  # points per submit(), like a connector's poll of 1000 tags


def make_batches(total: int, n_series: int = 200, seed: int = 0) -> list[SampleBatch]:
    rng = np.random.default_rng(seed)
    keys = [(f"bench/line-{i // 20}/cell/asset-{i}", f"signal_{i % 20}") for i in range(n_series)]
    out = []
    for start in range(0, total, SUBMIT):
        n = min(SUBMIT, total - start)
        idx = np.arange(start, start + n)
        value = np.round(rng.normal(500, 50, n), 3)  # sensor values with 3 decimals
        out.append(SampleBatch.from_columns(keys, idx % n_series, T0 + idx * 1_000_000, value))
    return out


def config(tmp: Path, url: str) -> HistorianConfig:
    return HistorianConfig.model_validate(
        {
            "url": url,
            "batch": {"max_points": BATCH, "max_age_ms": 100},
            "spool": {"dir": str(tmp / "spool"), "max_bytes": 4 << 30, "segment_bytes": 64 << 20},
            "health_interval_s": 0,
            "timeout_s": 60,
        }
    )


async def through_writer(store, cfg: HistorianConfig, batches: list[SampleBatch]) -> float:  # type: ignore[no-untyped-def]
    writer = HistorianWriter(store, cfg)
    await writer.start()
    t = time.perf_counter()
    for i, b in enumerate(batches):
        writer.submit(b)
        if i % 5 == 4:
            await asyncio.sleep(0)  # a connector yields between polls
    ok = await writer.flush(600)
    dt = time.perf_counter() - t
    s = writer.stats()
    await writer.stop()
    assert ok and s.written == sum(len(b) for b in batches) and s.balanced, s
    return dt


def bare_post(port: int, db: str, payloads: list[bytes]) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t = time.perf_counter()
    for body in payloads:
        conn.request("POST", f"/write?db={db}&precision=ns", body)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 204, resp.status
    dt = time.perf_counter() - t
    conn.close()
    return dt


def bare_executemany(path: Path, batches: list[SampleBatch]) -> float:
    conn = connect(str(path))
    conn.executescript(SCHEMA)
    keys = batches[0].keys
    conn.executemany(
        "INSERT INTO series (id, asset, signal) VALUES (?, ?, ?)", [(i, *k) for i, k in enumerate(keys)]
    )
    rows = [
        list(zip(b.series.tolist(), b.ts.tolist(), b.value.tolist(), b.quality.tolist())) for b in batches
    ]
    per = BATCH // SUBMIT
    chunks = [[row for part in rows[i : i + per] for row in part] for i in range(0, len(rows), per)]
    t = time.perf_counter()
    for chunk in chunks:
        conn.execute("BEGIN")
        conn.executemany(INSERT_SAMPLES, chunk)
        conn.execute("COMMIT")
    dt = time.perf_counter() - t
    conn.close()
    return dt


def naive_encode(batch: SampleBatch) -> bytes:
    keys = batch.keys
    return "".join(
        f"{escape_measurement(keys[s].asset)},signal={escape_tag(keys[s].signal)} value={v!r},quality={q}i {t}\n"
        for s, t, v, q in zip(
            batch.series.tolist(), batch.ts.tolist(), batch.value.tolist(), batch.quality.tolist()
        )
    ).encode()


def line(name: str, ours: float, base: float, unit: str = "points/s") -> None:
    print(
        f"{name:<52} ours {ours:>12,.0f} {unit}   baseline {base:>12,.0f} {unit}   ratio {ours / base:5.2f}x"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    total = args.points
    batches = make_batches(total)
    big = SampleBatch.concat(batches)
    encoder = LineEncoder()
    payloads = [encoder.encode(big.take(slice(i, i + BATCH))) for i in range(0, total, BATCH)]
    print(f"{total:,} points, {len(big.keys)} series, {BATCH} points/request, submit() of {SUBMIT}")

    # serialiser alone
    t = time.perf_counter()
    for b in batches:
        encoder.encode(b)
    enc = total / (time.perf_counter() - t)
    sample = batches[: max(1, len(batches) // 10)]
    t = time.perf_counter()
    for b in sample:
        naive_encode(b)
    naive = sum(len(b) for b in sample) / (time.perf_counter() - t)
    line("line protocol: batch encoder vs per-point", enc, naive)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # Two layouts: influxd sharing both cores with the client (a one-box install; influxd is
        # CPU-bound, so every client cycle costs it throughput), and influxd on a core of its own
        # (as when the historian runs on its own server).
        cpus = os.cpu_count() or 1
        layouts = ["shared cores"] + (["own core"] if cpus >= 2 and hasattr(os, "sched_setaffinity") else [])
        for layout in layouts:
            own = layout == "own core"
            if own:
                os.sched_setaffinity(0, {0})
            server = InfluxDB1Server(tmp / f"influxd-{own}", cpus="1" if own else None)
            server.start()
            try:
                best_ours = best_bare = 0.0
                for r in range(args.rounds):
                    db_bare, db_ours = f"bare{r}", f"ours{r}"
                    server.create_database(db_bare)
                    best_bare = max(best_bare, total / bare_post(server.port, db_bare, payloads))
                    url = f"influxdb-v1+{server.base_url}/{db_ours}"
                    store = InfluxV1Store(parse_url(url), timeout_s=60)
                    dt = await through_writer(store, config(tmp / f"w{r}{own}", url), batches)
                    best_ours = max(best_ours, total / dt)
                line(f"InfluxDB 1.6 write ({layout}): writer vs bare POST", best_ours, best_bare)
            finally:
                server.stop()
                if own:
                    os.sched_setaffinity(0, set(range(cpus)))

        server = InfluxDB1Server(tmp / "influxd")
        server.start()
        try:
            # spool replay after an outage: fill the spool with the store down, then restart it
            url = f"influxdb-v1+{server.base_url}/replay"
            cfg = config(tmp / "replay", url)
            server.kill()
            writer = HistorianWriter(InfluxV1Store(parse_url(url), timeout_s=60), cfg)
            await writer.start()
            for b in batches:
                writer.submit(b)
            spool_bytes = writer.stats().spool_bytes
            server.start()
            t = time.perf_counter()
            assert await writer.flush(600)
            replay = time.perf_counter() - t
            s = writer.stats()
            await writer.stop()
            print(
                f"{'spool replay after outage':<52} {s.written:,} points ({spool_bytes / 2**20:.1f} MiB) "
                f"drained in {replay:.2f} s = {s.written / replay:,.0f} points/s (incl. reconnect backoff)"
            )
        finally:
            server.stop()

        best_ours = best_bare = 0.0
        for r in range(args.rounds):
            best_bare = max(best_bare, total / bare_executemany(tmp / f"bare{r}.db", batches))
            store = SQLiteStore(tmp / f"ours{r}.db")
            best_ours = max(
                best_ours,
                total / await through_writer(store, config(tmp / f"s{r}", f"sqlite:///{tmp}/x.db"), batches),
            )
        line("SQLite write: writer vs bare executemany", best_ours, best_bare)


if __name__ == "__main__":
    asyncio.run(main())
