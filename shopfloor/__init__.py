"""Shopfloor's shared kernel: the asset model, samples and events, config, the connector API, the bus.

Imported by every subsystem; it imports none of them (the application layer, ``shopfloor.app``, does).
"""

from shopfloor.batch import SampleBatch
from shopfloor.model import (
    AssetPath,
    Event,
    EventKind,
    Quality,
    Sample,
    SeriesKey,
    Signal,
    SignalType,
    now_ns,
)

__version__ = "0.1.0"

__all__ = [
    "AssetPath",
    "Event",
    "EventKind",
    "Quality",
    "Sample",
    "SampleBatch",
    "SeriesKey",
    "Signal",
    "SignalType",
    "now_ns",
]
