"""The example plugin passes Shopfloor's connector contract, and its own behaviour checks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from shopfloor.testing.connector_contract import ConnectorContract, RecordingSink

CONFIG = """
site: demo
assets:
  - path: demo/area/line/press-1
    signals: [{name: force, unit: kN}, {name: temp, unit: degC}]
sources:
  - name: replay
    connector: csv-replay
    settings: {path: "{tmp}/readings.csv", rows_per_s: 50}
    tags:
      - {asset: demo/area/line/press-1, signal: force, column: force_kN}
      - {asset: demo/area/line/press-1, signal: temp, column: temp_C}
"""


class TestCsvReplayContract(ConnectorContract):
    connector_name = "csv-replay"
    source_yaml = CONFIG
    bad_settings: ClassVar = [({"rows_per_s": -1}, "rows_per_s"), ({"speed": 3}, "speed")]

    def setup_device(self, tmp_path: Path) -> None:
        rows = ["force_kN,temp_C"] + [f"{100 + i},{20 + i / 10}" for i in range(20)] + ["105,"]
        (tmp_path / "readings.csv").write_text("\n".join(rows) + "\n")

    async def test_values_come_from_the_file_and_empty_cells_are_bad(self, device: Path) -> None:
        conn = self.build(device)
        sink = RecordingSink()
        await conn.start(sink)
        while sink.samples < 2 * 21:
            await asyncio.sleep(0.02)
        await conn.stop()
        samples = [s for _, b in sink.batches for s in b.to_samples()][: 2 * 21]
        force = [s.value for s in samples if s.signal == "force"]
        assert force[:3] == [100.0, 101.0, 102.0]
        last_temp = [s for s in samples if s.signal == "temp"][-1]
        assert last_temp.quality == 2  # the empty cell in the last row
