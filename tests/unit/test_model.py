"""The shared vocabulary: asset paths and the columnar SampleBatch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shopfloor.batch import SampleBatch
from shopfloor.model import AssetPath, Event, EventKind, Quality, Sample, SeriesKey


@pytest.mark.parametrize("path", ["qijiang/copper/hot-rolling/mill-1", "a/b", "site/area/line/cell/unit_2"])
def test_valid_asset_paths(path: str) -> None:
    p = AssetPath(path)
    assert p.parts == tuple(path.split("/"))
    assert p.site == path.split("/")[0]


@pytest.mark.parametrize(
    "path", ["", "single", "a//b", "/a/b", "a/b/", "a b/c", "_sys/a", "a/b,c", "a/" + "/".join("x" * 8)]
)
def test_invalid_asset_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="asset path"):
        AssetPath(path)


def _batch() -> SampleBatch:
    return SampleBatch.from_samples(
        [
            Sample("s/a/l/m1", "temp", 21.5, 10, Quality.GOOD),
            Sample("s/a/l/m2", "speed", float("nan"), 11, Quality.BAD),
            Sample("s/a/l/m1", "temp", 22.0, 12, Quality.UNCERTAIN),
        ]
    )


def test_batch_from_samples_shares_keys_and_round_trips() -> None:
    b = _batch()
    assert b.keys == (SeriesKey("s/a/l/m1", "temp"), SeriesKey("s/a/l/m2", "speed"))
    assert b.series.tolist() == [0, 1, 0]
    back = b.to_samples()
    assert back[0] == Sample("s/a/l/m1", "temp", 21.5, 10, Quality.GOOD)
    assert math.isnan(back[1].value) and back[1].quality is Quality.BAD


def test_batch_bytes_round_trip_is_exact() -> None:
    b = _batch()
    c = SampleBatch.from_bytes(b.to_bytes())
    assert c.keys == b.keys
    for col in ("series", "ts", "quality"):
        assert np.array_equal(getattr(c, col), getattr(b, col))
    assert np.array_equal(c.value, b.value, equal_nan=True)


def test_batch_from_bytes_rejects_damage() -> None:
    raw = _batch().to_bytes()
    with pytest.raises(ValueError):
        SampleBatch.from_bytes(raw + b"x")


def test_concat_merges_key_tables_in_order() -> None:
    a = SampleBatch.from_columns([("s/a/l/x", "v")], [0, 0], [1, 2], [1.0, 2.0])
    b = SampleBatch.from_columns([("s/a/l/y", "v"), ("s/a/l/x", "v")], [1, 0], [3, 4], [3.0, 4.0])
    c = SampleBatch.concat([a, b])
    assert [(s.asset, s.value) for s in c.to_samples()] == [
        ("s/a/l/x", 1.0),
        ("s/a/l/x", 2.0),
        ("s/a/l/x", 3.0),
        ("s/a/l/y", 4.0),
    ]
    assert len(c.keys) == 2


def test_event_json_round_trip() -> None:
    e = Event("s/a/l/m1", EventKind.ALARM, 5, "HI_TEMP", "temperature high", 812.5, {"limit": 800})
    assert Event.from_json(e.to_json()) == e
