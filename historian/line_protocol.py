"""InfluxDB line protocol for sample batches and events, built a whole batch at a time.

Schema: measurement = asset path, tag ``signal``, fields ``value`` (float) and ``quality`` (int);
a text signal's point carries the string field ``text`` instead of ``value``.
Events: measurement ``_shopfloor_events``, tags ``asset``, ``kind``, ``key`` (when not empty) and
``seq`` (when > 0), string fields ``code``, ``message``, ``data`` (JSON) and float field ``value``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import chain

import numpy as np

from historian.base import EVENTS_MEASUREMENT, event_seqs
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
        if finite.all() and batch.text is None:
            pieces = zip(prefix.tolist(), values, fields.tolist(), batch.ts.tolist())
            fmt = "%svalue=%s%s%d\n" * n
            return (fmt % tuple(chain.from_iterable(pieces))).encode()
        # Rare path: rows without a finite value, and text rows (field ``text`` instead of ``value``).
        vals = np.array(values, dtype=object)
        vals[finite] = "value=" + vals[finite]
        vals[~finite] = ""
        has_field = finite
        if batch.text is not None:
            is_text = batch.text_rows()
            vals[is_text] = [f"text={escape_string_field(t)}" for t in batch.text[is_text].tolist()]
            has_field = finite | is_text
        fields = np.where(has_field, fields, _QUALITY_ONLY[batch.quality])
        pieces = zip(prefix.tolist(), vals.tolist(), fields.tolist(), batch.ts.tolist())
        fmt = "%s%s%s%d\n" * n
        return (fmt % tuple(chain.from_iterable(pieces))).encode()


def encode_events(events: Sequence[Event], seqs: Sequence[int] | None = None) -> bytes:
    """Events go to one measurement tagged by asset, kind, key and seq; text goes in string fields.

    ``key`` is left out when empty and ``seq`` when 0, so an event that needs neither lands in the
    same series as before they existed (``asset`` + ``kind``). ``seqs`` defaults to ``event_seqs``.
    """
    lines = []
    for e, seq in zip(events, event_seqs(events) if seqs is None else seqs, strict=True):
        fields = [
            f"code={escape_string_field(e.code)}",
            f"message={escape_string_field(e.message)}",
        ]
        if e.value is not None and math.isfinite(e.value):
            fields.append(f"value={float(e.value)!r}")
        if e.data:
            data = json.dumps(e.data, separators=(",", ":"), ensure_ascii=False, default=str)
            fields.append(f"data={escape_string_field(data)}")
        # tags in key order (asset, key, kind, seq), as InfluxDB sorts them
        tags = f"{EVENTS_MEASUREMENT},asset={escape_tag(e.asset)}"
        if e.key:
            tags += f",key={escape_tag(e.key)}"
        tags += f",kind={escape_tag(str(e.kind))}"
        if seq:
            tags += f",seq={seq}"
        lines.append(f"{tags} {','.join(fields)} {int(e.ts_ns)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""
