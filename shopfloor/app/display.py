"""How the command line prints values and instants: full precision, ISO-8601 UTC, or JSON.

A value is printed so that reading it back gives the same float; an instant keeps its nanoseconds.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from shopfloor.model import Quality


def format_value(value: Any) -> str:
    """``305419896`` (not ``3.0542e+08``), ``3.141592653589793``, ``NaN``, text as it is."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def format_ts(ts_ns: int) -> str:
    """``2026-12-01T21:05:03.123456789Z``: ISO 8601, UTC, nanoseconds kept (trailing zeros cut)."""
    seconds, ns = divmod(int(ts_ns), 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{ns:09d}".rstrip("0") if ns else ""
    return f"{base}{frac}Z"


def json_value(value: Any) -> Any:
    """A JSON-safe value: NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def quality_name(q: int) -> str:
    return Quality(q).name
