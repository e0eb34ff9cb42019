"""SampleBatch: the columnar batch of samples that crosses every boundary on the hot path.

Numpy columns (series index, timestamp ns, value, quality, and text for text signals) plus a small
table of series keys.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from shopfloor.model import Quality, Sample, SeriesKey


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Samples in columns; ``keys[series[i]]`` names the series of row ``i``.

    Values are float64 (integers up to 2**53 are exact; NaN means "no value", usually with
    quality Bad).  Rows keep the order they were produced in.

    Text signals (an alarm text, a recipe name) carry their value in ``text``: an object array with
    the string for text rows and None elsewhere, their ``value`` NaN. A batch with no text row has
    ``text is None``, so numeric batches cost nothing extra.
    """

    keys: tuple[SeriesKey, ...]
    series: np.ndarray  # uint32, index into keys
    ts: np.ndarray  # int64, UTC ns
    value: np.ndarray  # float64
    quality: np.ndarray  # uint8, Quality
    text: np.ndarray | None = None  # object (str | None) per row, or None when no row is text

    def __post_init__(self) -> None:
        n = len(self.ts)
        if not (len(self.series) == len(self.value) == len(self.quality) == n):
            raise ValueError("SampleBatch columns must have equal length")
        if self.text is not None and len(self.text) != n:
            raise ValueError("SampleBatch text column must have one entry per row")

    def __len__(self) -> int:
        return len(self.ts)

    def text_rows(self) -> np.ndarray:
        """Which rows carry text (bool per row; all False for a numeric batch)."""
        if self.text is None:
            return np.zeros(len(self), dtype=bool)
        return _not_none(self.text)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> SampleBatch:
        return cls(
            (),
            np.empty(0, np.uint32),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.uint8),
        )

    @classmethod
    def from_columns(
        cls,
        keys: Sequence[SeriesKey | tuple[str, str]],
        series: Iterable[int] | np.ndarray,
        ts: Iterable[int] | np.ndarray,
        value: Iterable[float] | np.ndarray,
        quality: Iterable[int] | np.ndarray | int = 0,
        text: Sequence[str | None] | np.ndarray | None = None,
    ) -> SampleBatch:
        s = np.ascontiguousarray(series, dtype=np.uint32)
        t = np.ascontiguousarray(ts, dtype=np.int64)
        v = np.ascontiguousarray(value, dtype=np.float64)
        if isinstance(quality, int):
            q = np.full(len(t), quality, dtype=np.uint8)
        else:
            q = np.ascontiguousarray(quality, dtype=np.uint8)
        k = tuple(SeriesKey(*key) for key in keys)
        if len(s) and int(s.max()) >= len(k):
            raise ValueError("series index out of range of keys")
        txt = None
        if text is not None:
            txt = np.empty(len(t), dtype=object)
            txt[:] = list(text)
            rows = _not_none(txt)
            if rows.any():
                v = np.where(rows, np.nan, v)
            else:
                txt = None
        return cls(k, s, t, v, q, txt)

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> SampleBatch:
        index: dict[SeriesKey, int] = {}
        series: list[int] = []
        ts: list[int] = []
        value: list[float] = []
        quality: list[int] = []
        text: list[str | None] = []
        for s in samples:
            key = SeriesKey(s.asset, s.signal)
            series.append(index.setdefault(key, len(index)))
            ts.append(s.ts_ns)
            if isinstance(s.value, str):
                value.append(math.nan)
                text.append(s.value)
            else:
                value.append(s.value)
                text.append(None)
            quality.append(int(s.quality))
        return cls.from_columns(tuple(index), series, ts, value, quality, text)

    @classmethod
    def concat(cls, batches: Sequence[SampleBatch]) -> SampleBatch:
        """Join batches in order, merging their key tables."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        text = _concat_text(batches)
        first = batches[0].keys
        if all(b.keys is first or b.keys == first for b in batches):  # the usual case: one source's tags
            return cls(
                first,
                np.concatenate([b.series for b in batches]),
                np.concatenate([b.ts for b in batches]),
                np.concatenate([b.value for b in batches]),
                np.concatenate([b.quality for b in batches]),
                text,
            )
        index: dict[SeriesKey, int] = {}
        remapped = []
        for b in batches:
            lut = np.fromiter(
                (index.setdefault(k, len(index)) for k in b.keys), dtype=np.uint32, count=len(b.keys)
            )
            remapped.append(lut[b.series])
        return cls(
            tuple(index),
            np.concatenate(remapped),
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
            text,
        )

    def take(self, rows: slice | np.ndarray) -> SampleBatch:
        """A batch of the selected rows (the key table is shared, not compacted)."""
        text = None
        if self.text is not None:
            text = self.text[rows]
            if not _not_none(text).any():
                text = None
        return SampleBatch(
            self.keys, self.series[rows], self.ts[rows], self.value[rows], self.quality[rows], text
        )

    def to_samples(self) -> list[Sample]:
        keys = self.keys
        values: list[float | str] = self.value.tolist()
        if self.text is not None:
            values = [v if t is None else t for v, t in zip(values, self.text.tolist())]
        return [
            Sample(keys[i].asset, keys[i].signal, v, t, Quality(q))
            for i, t, v, q in zip(self.series.tolist(), self.ts.tolist(), values, self.quality.tolist())
        ]

    # -- wire format (spool records, process boundaries) --------------------------------------
    _HEADER = struct.Struct("<II")  # n rows, key-table byte length

    _TEXT_MARK = b"TX"  # an optional trailing section: the text rows, as JSON {"i": rows, "s": strings}

    def to_bytes(self) -> bytes:
        keys = json.dumps([list(k) for k in self.keys], separators=(",", ":")).encode()
        parts = [
            self._HEADER.pack(len(self), len(keys)),
            keys,
            self.ts.astype("<i8", copy=False).tobytes(),
            self.value.astype("<f8", copy=False).tobytes(),
            self.series.astype("<u4", copy=False).tobytes(),
            self.quality.astype("u1", copy=False).tobytes(),
        ]
        if self.text is not None:
            rows = np.flatnonzero(_not_none(self.text))
            body = json.dumps(
                {"i": rows.tolist(), "s": self.text[rows].tolist()}, separators=(",", ":"), ensure_ascii=False
            ).encode()
            parts += [self._TEXT_MARK, struct.pack("<I", len(body)), body]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, buf: bytes | memoryview) -> SampleBatch:
        mv = memoryview(buf)
        n, klen = cls._HEADER.unpack_from(mv, 0)
        off = cls._HEADER.size
        keys = _decode_keys(bytes(mv[off : off + klen]))
        off += klen
        ts = np.frombuffer(mv, "<i8", n, off)
        off += 8 * n
        value = np.frombuffer(mv, "<f8", n, off)
        off += 8 * n
        series = np.frombuffer(mv, "<u4", n, off)
        off += 4 * n
        quality = np.frombuffer(mv, "u1", n, off)
        off += n
        text = None
        if len(mv) - off >= 6 and bytes(mv[off : off + 2]) == cls._TEXT_MARK:
            (tlen,) = struct.unpack_from("<I", mv, off + 2)
            obj = json.loads(bytes(mv[off + 6 : off + 6 + tlen]))
            off += 6 + tlen
            text = np.empty(n, dtype=object)
            for i, t in zip(obj["i"], obj["s"]):
                text[i] = t
        if off != len(mv):
            raise ValueError(f"SampleBatch payload has {len(mv) - off} trailing bytes")
        if n and int(series.max()) >= len(keys):
            raise ValueError("SampleBatch payload has a series index out of range")
        return cls(keys, series, ts, value, quality, text)


def _not_none(column: np.ndarray) -> np.ndarray:
    out: np.ndarray = column != None  # noqa: E711 - elementwise on an object array, in C
    return out


def _concat_text(batches: Sequence[SampleBatch]) -> np.ndarray | None:
    if all(b.text is None for b in batches):
        return None
    out = np.empty(sum(len(b) for b in batches), dtype=object)
    off = 0
    for b in batches:
        if b.text is not None:
            out[off : off + len(b)] = b.text
        off += len(b)
    return out


@lru_cache(maxsize=256)
def _decode_keys(raw: bytes) -> tuple[SeriesKey, ...]:
    """Key tables repeat from poll to poll; decode each distinct one once (and share the tuple)."""
    return tuple(SeriesKey(a, s) for a, s in json.loads(raw))
