"""Offline generation: the size is said before anything is written; --every makes it smaller."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from plant_simulator import cli
from plant_simulator.offline import estimate, generate
from plant_simulator.plant import default_plant

CNC = "qijiang/machining/gearbox-line/cnc-1"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_the_estimate_is_printed_before_writing_and_every_keeps_every_nth_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    assert run(["--offline", "--days", "0.04", "--every", "60", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "estimated size about" in printed[0] and "one row every 60 s" in printed[0]
    assert printed[-1].startswith("wrote ")  # the estimate came first
    table = pq.read_table(out / "signals" / f"{CNC}.parquet")
    ts = table.column("ts").to_numpy().astype("datetime64[ns]").astype(np.int64)
    assert len(ts) == 60 and set(np.diff(ts)) == {60 * 1_000_000_000}  # one simulated hour at 60 s
    assert json.loads((out / "manifest.json").read_text())["step_s"] == 60
    # the kept rows are exactly those of a full-resolution run
    full = default_plant().block(0)
    spindle = default_plant().signal_index(CNC, "spindle_load")
    np.testing.assert_allclose(
        table.column("spindle_load").to_numpy(), full.values[CNC][spindle, ::60].astype(np.float32)
    )


def test_the_estimate_is_close_to_what_is_written(tmp_path: Path) -> None:
    plant = default_plant()
    est = estimate(plant, 1 / 24)
    res = generate(plant, 1 / 24, tmp_path, progress=None)
    written = sum(f.stat().st_size for f in (tmp_path / "signals").rglob("*.parquet"))
    assert 0.5 < est.bytes / written < 2.0
    assert est.values == res.values


def test_ninety_days_are_estimated_in_gigabytes_and_every_10_is_a_tenth() -> None:
    plant = default_plant()
    full, coarse = estimate(plant, 90), estimate(plant, 90, every=10)
    assert 1e9 < full.bytes < 1e10  # the issue measured 3.9 GB
    assert full.rows_per_asset == 90 * 86400 and coarse.rows_per_asset == 90 * 8640
    assert 0.05 < coarse.bytes / full.bytes < 0.2


def test_every_out_of_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--offline", "--every", "0", "--out", str(tmp_path)]) == 2
    assert "--every must be from 1 to 86400" in capsys.readouterr().err
