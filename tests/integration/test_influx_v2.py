"""The InfluxDB v2 write API backend (influxdb-client) against a real server that speaks it.

Debian's VictoriaMetrics accepts /api/v2/write; it stores series as <measurement>_<field>.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from historian.influx_v2 import InfluxV2Store
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.historian_url import parse_url
from shopfloor.config.schema import HistorianConfig
from shopfloor.testing.servers import VictoriaMetricsServer

# VictoriaMetrics silently drops samples older than its retention (1 month by default).
T0 = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000


def exported(server: VictoriaMetricsServer, measurement: str) -> dict[str, tuple[list[int], list[float]]]:
    out = {}
    for line in server.export(f'{{__name__=~"{measurement}_.*"}}').splitlines():
        doc = json.loads(line)
        name = doc["metric"]["__name__"] + "/" + doc["metric"].get("signal", "")
        out[name] = (doc["timestamps"], doc["values"])
    return out


async def test_writer_through_v2_api_lands_every_point(
    victoria: VictoriaMetricsServer, tmp_path: Path
) -> None:
    url = f"influxdb-v2+{victoria.base_url}/shopfloor?org=qijiang"
    cfg = HistorianConfig.model_validate(
        {
            "url": url,
            "spool": {"dir": str(tmp_path / "spool")},
            "batch": {"max_points": 700},
            "health_interval_s": 0,
        }
    )
    store = InfluxV2Store(parse_url(url), token=None)
    writer = HistorianWriter(store, cfg)
    await writer.start()
    n = 5000
    idx = np.arange(n)
    keys = [("v2plant/copper/extrusion/press-1", "pressure"), ("v2plant/copper/extrusion/press-1", "speed")]
    value = np.round(np.sin(idx / 50) * 200 + 300, 4)
    writer.submit(SampleBatch.from_columns(keys, idx % 2, T0 + idx * 1_000_000, value))
    assert await writer.flush(30)
    stats = writer.stats()
    await writer.stop()
    assert stats.written == n and stats.batches >= 8 and stats.balanced
    series = exported(victoria, "v2plant/copper/extrusion/press-1")
    for i, (_, signal) in enumerate(keys):
        ts, vals = series[f"v2plant/copper/extrusion/press-1_value/{signal}"]
        rows = idx % 2 == i
        assert ts == ((T0 + idx[rows] * 1_000_000) // 1_000_000).tolist()  # VictoriaMetrics keeps ms
        assert vals == value[rows].tolist()
        quality_ts, quality = series[f"v2plant/copper/extrusion/press-1_quality/{signal}"]
        assert len(quality_ts) == rows.sum() and set(quality) == {0}


async def test_unreachable_v2_server_is_reported_as_unavailable(tmp_path: Path) -> None:
    from shopfloor.testing.servers import free_port

    store = InfluxV2Store(
        parse_url(f"influxdb-v2+http://127.0.0.1:{free_port()}/b?org=o"), token="secret-token", timeout_s=1
    )
    from historian.errors import StoreUnavailable

    batch = SampleBatch.from_columns([("s/a/l/m", "x")], [0], [T0], [1.0])
    try:
        await store.write_samples(batch)
    except StoreUnavailable as exc:
        assert "secret-token" not in str(exc)
    else:
        raise AssertionError("write to a closed port succeeded")
    finally:
        await store.close()
