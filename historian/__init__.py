"""The historian: one store interface, its backends (SQLite, InfluxDB v1 and v2) and the writer.

The writer owns delivery: batching, retries, the on-disk spool, quarantine and the counters.
"""

from historian.base import AggFn, SeriesFrame, Store
from historian.errors import StoreError, StoreRejected, StoreUnavailable
from historian.factory import open_store
from historian.writer import HistorianWriter, WriterStats

__all__ = [
    "AggFn",
    "HistorianWriter",
    "SeriesFrame",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "WriterStats",
    "open_store",
]
