"""SIGKILL the writer's process mid-stream while the store is down; a restart replays its spool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from historian.influx_v1 import InfluxV1Store
from historian.writer import HistorianWriter
from shopfloor.config.historian_url import parse_url
from shopfloor.config.schema import HistorianConfig
from shopfloor.testing.servers import InfluxDB1Server

ROOT = Path(__file__).resolve().parents[2]


def run_until(proc: subprocess.Popen[str], at_least: int, timeout_s: float = 60) -> int:
    """Read progress lines until ``at_least`` points were submitted; return the last count seen."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    last = 0
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("submitted "):
            last = int(line.split()[1])
            if last >= at_least:
                return last
    raise AssertionError(f"writer process reached only {last} points")


async def test_sigkill_then_restart_replays_the_spool(
    influxd_private: InfluxDB1Server, tmp_path: Path
) -> None:
    server = influxd_private
    url = f"influxdb-v1+{server.base_url}/plant"
    spool = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/integration/writer_proc.py"), url, str(spool)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        run_until(proc, 2000)  # some points delivered while the store is up
        server.kill()
        acknowledged_by_submit = run_until(proc, 12_000)  # the rest goes to the spool
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    server.start()

    cfg = HistorianConfig.model_validate(
        {
            "url": url,
            "spool": {"dir": str(spool), "segment_bytes": 128 << 10, "max_bytes": 256 << 20},
            "health_interval_s": 0,
        }
    )
    store = InfluxV1Store(parse_url(url))
    writer = HistorianWriter(store, cfg)
    await writer.start()
    recovered = writer.stats().recovered
    assert await writer.flush(60)
    stats = writer.stats()
    await writer.stop()
    reader = InfluxV1Store(parse_url(url))
    frame = await reader.query_raw("s/a/l/m", "x", 0, 2**62)
    await reader.close()
    print(
        f"\n[writer crash] submitted before SIGKILL >= {acknowledged_by_submit}, recovered from spool "
        f"{recovered}, in store {len(frame)}, torn bytes {stats.torn_bytes}"
    )
    assert recovered > 0 and stats.replayed == recovered
    # everything submit() returned for is there, once, in order, with no gap
    assert len(frame) >= acknowledged_by_submit
    assert np.array_equal(frame.value, np.arange(len(frame), dtype=float))
