"""The ground-truth log: every onset, failure, repair, defect and sensor fault with its true time.

Analytics are scored against this table; it is never served to connectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa

from plant_simulator.clock import NS

#: The kinds of record, in the ``event`` column.
EVENTS = (
    "onset",  # a degradation starts developing (not yet visible to a careless eye)
    "failure",  # the equipment failed; it goes down with the mode's reason
    "repair",  # repaired after a failure; the degradation is reset
    "maintenance",  # replaced during planned maintenance before failing (degradation reset)
    "replacement",  # planned replacement of a tool or consumable (degradation reset)
    "defect",  # a process-caused quality defect, with its cause
    "sensor_fault_start",
    "sensor_fault_end",
)


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """One true fact; ``t_s`` is seconds since the simulation start."""

    t_s: float
    asset: str
    event: str
    mode: str  # failure mode, defect type or sensor-fault kind
    cause: str = ""
    signal: str = ""
    value: float = float("nan")
    detail: str = ""


SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ns", tz="UTC")),
        ("asset", pa.string()),
        ("event", pa.string()),
        ("mode", pa.string()),
        ("cause", pa.string()),
        ("signal", pa.string()),
        ("value", pa.float64()),
        ("detail", pa.string()),
    ]
)


def to_table(records: list[GroundTruth], start_ns: int) -> pa.Table:
    """Records sorted by time as an Arrow table with UTC nanosecond timestamps."""
    rows = sorted(records, key=lambda r: (r.t_s, r.asset, r.event))
    cols = {
        k: [getattr(r, k) for r in rows]
        for k in ("asset", "event", "mode", "cause", "signal", "value", "detail")
    }
    ts = [start_ns + round(r.t_s * NS) for r in rows]
    return pa.table({"ts": pa.array(ts, pa.timestamp("ns", tz="UTC")), **cols}, schema=SCHEMA)


def as_dicts(records: list[GroundTruth]) -> list[dict]:
    return [asdict(r) for r in records]
