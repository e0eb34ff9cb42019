"""The historian: one store interface, its backends (SQLite, InfluxDB v1 and v2) and the writer.

Readers (dashboards, analytics) use ``HistorianReader`` from ``open_reader``, or ``SyncReader``
around it from threads without an event loop. The writer owns delivery: batching, retries, the
on-disk spool, quarantine and the counters.
"""

from historian.base import Store
from historian.errors import StoreError, StoreRejected, StoreUnavailable
from historian.factory import open_reader, open_store
from historian.reader import AGG_FNS, AggFn, HistorianReader, ReaderClosedError, SeriesFrame, SyncReader
from historian.writer import HistorianWriter, WriterStats

__all__ = [
    "AGG_FNS",
    "AggFn",
    "HistorianReader",
    "HistorianWriter",
    "ReaderClosedError",
    "SeriesFrame",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "SyncReader",
    "WriterStats",
    "open_reader",
    "open_store",
]
