"""CsvReplayConnector: reads rows of a CSV file at a fixed rate and emits them as samples.

Settings and tag models are pydantic; Shopfloor validates them before start() with file:line:key errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from shopfloor.batch import SampleBatch
from shopfloor.connector import Connector, ConnectorSpec, SettingsBase, Sink, TagBase
from shopfloor.model import Quality, now_ns


class CsvSettings(SettingsBase):
    path: Path = Field(description="CSV file with a header row; one column per tag.")
    rows_per_s: float = Field(10.0, gt=0, le=100_000, description="Replay rate.")
    loop: bool = Field(True, description="Start again at the first row after the last.")
    timestamps: Literal["now", "column"] = Field(
        "now", description="Stamp rows with the replay time, or take UTC ns from `timestamp_column`."
    )
    timestamp_column: str = "timestamp_ns"


class CsvTag(TagBase):
    column: str = Field(description="CSV column holding this signal's values.")


class CsvReplayConnector(Connector[CsvSettings, CsvTag]):
    spec = ConnectorSpec(
        name="csv-replay",
        settings_model=CsvSettings,
        tag_model=CsvTag,
        description="Replays a CSV file of readings as a live source (example plugin).",
    )

    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self._task: asyncio.Task[None] | None = None
        self._sink: Sink | None = None

    def _read(self) -> tuple[np.ndarray, np.ndarray | None]:
        s = self.ctx.settings
        with open(s.path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError(f"{s.path}: no rows")
        missing = [t.column for t in self.ctx.tags if t.column not in rows[0]]
        if missing:
            raise ValueError(f"{s.path}: no column(s) {', '.join(missing)}")

        def num(text: str) -> float:
            try:
                return float(text)
            except ValueError:
                return math.nan  # an empty or non-numeric cell is a Bad reading

        values = np.array([[num(r[t.column]) for t in self.ctx.tags] for r in rows], dtype=np.float64)
        ts = None
        if s.timestamps == "column":
            ts = np.array([int(r[s.timestamp_column]) for r in rows], dtype=np.int64)
        return values, ts

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        values, ts = await asyncio.to_thread(self._read)  # file I/O off the event loop
        self.tracker.on_connected()
        self._task = self.spawn(self._replay(values, ts), f"csv-replay-{self.ctx.name}")

    async def _replay(self, values: np.ndarray, ts: np.ndarray | None) -> None:
        keys = [(t.asset, t.signal) for t in self.ctx.tags]
        series = np.arange(len(keys), dtype=np.uint32)
        period = 1.0 / self.ctx.settings.rows_per_s
        i = 0
        while True:
            row = values[i]
            stamp = now_ns() if ts is None else int(ts[i])
            quality = np.where(np.isnan(row), int(Quality.BAD), int(Quality.GOOD)).astype(np.uint8)
            batch = SampleBatch.from_columns(keys, series, np.full(len(keys), stamp, np.int64), row, quality)
            assert self._sink is not None
            self._sink.emit(batch)
            self.tracker.on_samples(len(batch), stamp)
            i += 1
            if i == len(values):
                if not self.ctx.settings.loop:
                    return
                i = 0
            await asyncio.sleep(period)

    async def stop(self) -> None:
        # Every row read has been emitted synchronously, so cancelling the loop drains nothing.
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.tracker.on_stopped()
