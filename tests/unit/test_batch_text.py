"""Text signals in a SampleBatch: carried in a text column beside the numbers, through the spool's
wire format, concat and take, and back into Samples with their text (never NaN)."""

from __future__ import annotations

import math

import numpy as np

from shopfloor.batch import SampleBatch
from shopfloor.model import Quality, Sample

A = "s/a/l/m"


def mixed() -> SampleBatch:
    return SampleBatch.from_samples(
        [
            Sample(A, "speed", 12.5, 1),
            Sample(A, "alarm_text", "Oil pressure low / 油压低", 1),
            Sample(A, "speed", 12.75, 2, Quality.UNCERTAIN),
            Sample(A, "alarm_text", "", 2),  # an empty text is a value, not a missing one
            Sample(A, "alarm_text", math.nan, 3, Quality.BAD),  # no value at all
        ]
    )


def test_text_survives_the_wire_format_exactly() -> None:
    b = mixed()
    back = SampleBatch.from_bytes(b.to_bytes())
    assert [s.value for s in back.to_samples()][:4] == [12.5, "Oil pressure low / 油压低", 12.75, ""]
    assert math.isnan(back.to_samples()[4].value)  # type: ignore[arg-type]
    assert back.text is not None and back.text.tolist() == b.text.tolist()  # type: ignore[union-attr]
    assert np.isnan(back.value[[1, 3]]).all()  # text rows carry no number


def test_a_numeric_batch_has_no_text_column_and_the_old_format_still_reads() -> None:
    b = SampleBatch.from_samples([Sample(A, "speed", 1.0, 1), Sample(A, "speed", 2.0, 2)])
    assert b.text is None
    raw = b.to_bytes()
    assert SampleBatch.from_bytes(raw).text is None and b"TX" not in raw[-4:]


def test_concat_and_take_keep_text_where_it_was() -> None:
    numeric = SampleBatch.from_samples([Sample(A, "speed", 1.0, 10)])
    joined = SampleBatch.concat([numeric, mixed()])
    assert [s.value for s in joined.to_samples()][:3] == [1.0, 12.5, "Oil pressure low / 油压低"]
    assert joined.take(slice(0, 2)).text is None  # no text rows left: no column
    assert joined.take(np.array([2, 4])).to_samples()[1].value == ""
