"""Line protocol: the batch encoder must equal a straightforward per-point encoder."""

from __future__ import annotations

import math

import numpy as np

from historian.line_protocol import LineEncoder, encode_events, escape_measurement, escape_tag
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, EventKind


def naive(batch: SampleBatch) -> bytes:
    out = []
    for s in batch.to_samples():
        head = f"{escape_measurement(s.asset)},signal={escape_tag(s.signal)} "
        fields = (
            f"value={s.value!r},quality={int(s.quality)}i"
            if math.isfinite(s.value)
            else f"quality={int(s.quality)}i"
        )
        out.append(f"{head}{fields} {s.ts_ns}\n")
    return "".join(out).encode()


def test_encoder_matches_per_point_reference_on_random_data() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    keys = [(f"qijiang/copper/line-{i}/mill-{i}", f"sig_{i}") for i in range(17)]
    value = rng.normal(0, 1e6, n) * rng.choice([1e-9, 1.0, 1e12], n)
    batch = SampleBatch.from_columns(
        keys, rng.integers(0, 17, n), np.arange(n) + 1_700_000_000_000_000_000, value, rng.integers(0, 3, n)
    )
    assert LineEncoder().encode(batch) == naive(batch)


def test_non_finite_values_carry_only_quality() -> None:
    batch = SampleBatch.from_columns(
        [("s/a/l/m", "x")], [0, 0, 0], [1, 2, 3], [1.5, float("nan"), float("inf")], [0, 2, 2]
    )
    lines = LineEncoder().encode(batch).decode().splitlines()
    assert lines == [
        "s/a/l/m,signal=x value=1.5,quality=0i 1",
        "s/a/l/m,signal=x quality=2i 2",
        "s/a/l/m,signal=x quality=2i 3",
    ]
    assert LineEncoder().encode(batch) == naive(batch)


def test_escaping_of_special_characters() -> None:
    assert escape_measurement("a b,c") == "a\\ b\\,c"
    assert escape_tag("x=y z") == "x\\=y\\ z"


def test_events_encode_strings_safely() -> None:
    e = Event("s/a/l/m", EventKind.ALARM, 42, 'HI"', 'line1\\ "quoted"', 3.0, {"k": "v"})
    line = encode_events([e]).decode()
    assert line.startswith("_shopfloor_events,asset=s/a/l/m,kind=alarm ")
    assert 'code="HI\\""' in line and 'message="line1\\\\ \\"quoted\\""' in line
    assert line.rstrip().endswith(" 42")
