"""InfluxDB line protocol for sample batches and events, built a whole batch at a time.

Schema: measurement = asset path, tag ``signal``, fields ``value`` (float) and ``quality`` (int).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import chain

import numpy as np

from historian.base import EVENTS_MEASUREMENT
from shopfloor.batch import SampleBatch
from shopfloor.model import Event, SeriesKey

_QUALITY_FIELD = np.array(
    [",quality=0i ", ",quality=1i ", ",quality=2i "] + [",quality=2i "] * 253, dtype=object
)
_QUALITY_ONLY = np.array(["quality=0i ", "quality=1i ", "quality=2i "] + ["quality=2i "] * 253, dtype=object)


def escape_measurement(name: str) -> str:
    return name.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def series_prefix(key: SeriesKey) -> str:
    """``<asset>,signal=<signal> `` — everything before the fields."""
    return f"{escape_measurement(key.asset)},signal={escape_tag(key.signal)} "


class LineEncoder:
    """Encodes SampleBatches; caches the per-series prefix so each series is escaped once."""

    def __init__(self) -> None:
        self._prefix: dict[SeriesKey, str] = {}
        self._last_keys: Sequence[SeriesKey] | None = None
        self._last_prefixes = np.empty(0, dtype=object)

    def _prefixes(self, keys: Sequence[SeriesKey]) -> np.ndarray:
        if keys is self._last_keys:
            return self._last_prefixes
        cache = self._prefix
        out = np.empty(len(keys), dtype=object)
        for i, k in enumerate(keys):
            p = cache.get(k)
            if p is None:
                if len(cache) > 100_000:
                    cache.clear()
                p = cache[k] = series_prefix(k)
            out[i] = p
        self._last_keys, self._last_prefixes = keys, out
        return out

    def encode(self, batch: SampleBatch) -> bytes:
        """One line per row. Non-finite values (NaN = no reading) carry only the quality field."""
        n = len(batch)
        if n == 0:
            return b""
        prefix = self._prefixes(batch.keys)[batch.series]
        # repr of a list formats every float with the shortest round-trip repr, in C.
        values = repr(batch.value.tolist())[1:-1].split(", ")
        fields = _QUALITY_FIELD[batch.quality]
        finite = np.isfinite(batch.value)
        if finite.all():
            pieces = zip(prefix.tolist(), values, fields.tolist(), batch.ts.tolist())
            fmt = "%svalue=%s%s%d\n" * n
            return (fmt % tuple(chain.from_iterable(pieces))).encode()
        # Rare path: rows without a finite value.
        vals = np.array(values, dtype=object)
        vals[finite] = "value=" + vals[finite]
        vals[~finite] = ""
        fields = np.where(finite, fields, _QUALITY_ONLY[batch.quality])
        pieces = zip(prefix.tolist(), vals.tolist(), fields.tolist(), batch.ts.tolist())
        fmt = "%s%s%s%d\n" * n
        return (fmt % tuple(chain.from_iterable(pieces))).encode()


def encode_events(events: Sequence[Event]) -> bytes:
    """Events go to one measurement tagged by asset and kind; text goes in string fields."""
    lines = []
    for e in events:
        fields = [
            f"code={escape_string_field(e.code)}",
            f"message={escape_string_field(e.message)}",
        ]
        if e.value is not None and math.isfinite(e.value):
            fields.append(f"value={float(e.value)!r}")
        if e.data:
            data = json.dumps(e.data, separators=(",", ":"), ensure_ascii=False, default=str)
            fields.append(f"data={escape_string_field(data)}")
        lines.append(
            f"{EVENTS_MEASUREMENT},asset={escape_tag(e.asset)},kind={escape_tag(str(e.kind))} "
            f"{','.join(fields)} {int(e.ts_ns)}"
        )
    return ("\n".join(lines) + "\n").encode() if lines else b""
