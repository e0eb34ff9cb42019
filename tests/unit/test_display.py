"""What the command line prints: values at full precision (never 3.0542e+08), instants in ISO 8601 UTC."""

from __future__ import annotations

import math

from shopfloor.app.display import format_ts, format_value, json_value


def test_values_are_printed_at_full_precision() -> None:
    assert format_value(305419896.0) == "305419896"
    assert format_value(math.pi) == "3.141592653589793"
    assert float(format_value(0.1 + 0.2)) == 0.1 + 0.2  # reads back as the same float
    assert format_value(2.0**60) == repr(2.0**60)  # beyond exact integers: no false digits
    assert format_value(math.nan) == "NaN" and format_value("润滑油压力低") == "润滑油压力低"


def test_instants_are_iso_8601_utc_with_their_nanoseconds() -> None:
    assert format_ts(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert format_ts(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert format_ts(1_700_000_000_500_000_000) == "2023-11-14T22:13:20.5Z"


def test_json_has_no_nan() -> None:
    assert json_value(math.nan) is None and json_value(1.5) == 1.5
