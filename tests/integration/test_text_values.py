"""Text signals are stored as text (an InfluxDB string field, a text column in SQLite), through the
writer's spool, and read back by raw queries, `latest` and `shopfloor historian latest` — never as NaN.

Runs against the embedded SQLite store and a real influxd (Debian's InfluxDB 1.6).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from historian.base import Store
from historian.sqlite_store import SQLiteStore
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.schema import HistorianConfig
from shopfloor.model import Quality, Sample

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000_000_000
A = "qijiang/copper/hot-rolling/mill-1"
TEXTS = [
    "Oil pressure low",
    "润滑油压力低 / lube pressure low",
    'quotes " and back\\slash, commas, = signs',
    "two\nlines",
    "",
    "42",  # text that looks like a number stays text
]


def mixed_batch() -> SampleBatch:
    samples = [Sample(A, "alarm_text", t, T0 + i * 1_000_000_000) for i, t in enumerate(TEXTS)]
    samples += [Sample(A, "roll_force", 1000.0 + i, T0 + i * 1_000_000_000) for i in range(len(TEXTS))]
    samples.append(Sample(A, "alarm_text", math.nan, T0 + 99 * 1_000_000_000, Quality.BAD))  # no value
    return SampleBatch.from_samples(samples)


async def test_text_goes_through_the_writer_and_comes_back_as_text(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    s, url = store, store_url
    cfg = HistorianConfig.model_validate(
        {
            "url": url,
            "spool": {"dir": str(tmp_path / "spool")},
            "batch": {"max_age_ms": 10},
            "health_interval_s": 0,
        }
    )
    writer = HistorianWriter(s, cfg)
    await writer.start()
    writer.submit(mixed_batch())
    assert await writer.flush(20)
    await writer.stop()
    await s.open()

    frame = await s.query_raw(A, "alarm_text", 0, 2**62)
    assert frame.text is not None
    assert frame.text.tolist() == [*TEXTS, None]
    assert frame.quality is not None and frame.quality.tolist()[-1] == Quality.BAD
    numbers = await s.query_raw(A, "roll_force", 0, 2**62)
    assert numbers.text is None and numbers.value.tolist() == [1000.0 + i for i in range(len(TEXTS))]
    latest = {x.signal: x for x in await s.latest(A)}
    assert math.isnan(latest["alarm_text"].value)  # type: ignore[arg-type]  # its newest point has none
    assert latest["roll_force"].value == 1005.0

    # the newest text, as a person reads it on the command line
    writer2 = HistorianWriter(s, cfg)
    await writer2.start()
    writer2.submit(
        SampleBatch.from_samples(
            [Sample(A, "alarm_text", "Roll gap sensor fault / 辊缝传感器故障", T0 + 100 * 10**9)]
        )
    )
    assert await writer2.flush(20)
    await writer2.stop()
    (tmp_path / "plant.yaml").write_text(
        f"site: qijiang\nhistorian:\n  url: {url}\n  spool: {{dir: {tmp_path / 'spool'}}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SHOPFLOOR_HISTORIAN_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "shopfloor.app.cli", "historian", "latest", "--config", str(tmp_path / "plant.yaml"),
         "--asset", A, "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = {r["signal"]: r for r in map(json.loads, out.splitlines())}
    assert rows["alarm_text"]["value"] == "Roll gap sensor fault / 辊缝传感器故障"
    assert rows["alarm_text"]["time"] == "2023-11-14T22:15:00Z"


async def test_an_sqlite_file_from_before_text_signals_is_migrated_and_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE series (id INTEGER PRIMARY KEY, asset TEXT NOT NULL, signal TEXT NOT NULL, UNIQUE (asset, signal));
        CREATE TABLE samples (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL,
                              PRIMARY KEY (series_id, ts)) WITHOUT ROWID;
        INSERT INTO series VALUES (1, 'qijiang/copper/hot-rolling/mill-1', 'roll_force');
        INSERT INTO samples VALUES (1, 1, 10.5, 0), (1, 2, 11.5, 0);
        """
    )
    conn.close()
    reader = SQLiteStore(path, create=False)  # a read-only reader reads the old file as it is
    assert (await reader.query_raw(A, "roll_force", 0, 10)).value.tolist() == [10.5, 11.5]
    assert [x.value for x in await reader.latest(A)] == [11.5]
    await reader.close()
    s = SQLiteStore(path)
    await s.open()  # a writing store adds the text column and keeps every row
    await s.write_samples(SampleBatch.from_samples([Sample(A, "alarm_text", "ok", 3)]))
    assert (await s.query_raw(A, "roll_force", 0, 10)).value.tolist() == [10.5, 11.5]
    frame = await s.query_raw(A, "alarm_text", 0, 10)
    assert frame.text is not None and frame.text.tolist() == ["ok"]
    await s.close()
