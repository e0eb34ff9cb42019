"""Modbus register decoding for whole polls at once: every type, both word orders, both byte orders.
Vectorised with numpy (see RegisterDecoder); integers wider than 53 bits lose precision in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: big-endian numpy dtype of each numeric register type
NUMPY_TYPE: dict[str, str] = {
    "int16": ">i2",
    "uint16": ">u2",
    "int32": ">i4",
    "uint32": ">u4",
    "int64": ">i8",
    "uint64": ">u8",
    "float32": ">f4",
    "float64": ">f8",
}


@dataclass(frozen=True, slots=True)
class RegisterField:
    """Where one value sits in a register buffer and how it is encoded."""

    offset: int  # register index into the buffer
    type: str  # a NUMPY_TYPE key, or bool/bits (a bit field of one register) or string
    word_order: str = "big"  # big: most significant word first (ABCD); little: CDAB
    byte_order: str = "big"  # big: most significant byte first in each word; little: swapped
    bit: int | None = None  # bool/bits: first bit, 0 = least significant
    length: int | None = None  # bits: number of bits; string: characters

    @property
    def words(self) -> int:
        if self.type == "string":
            return -(-(self.length or 0) // 2)
        if self.type in ("bool", "bits"):
            return 1
        return np.dtype(NUMPY_TYPE[self.type]).itemsize // 2


def byte_index(offset: int, words: int, word_order: str, byte_order: str) -> np.ndarray:
    """Positions in the byte buffer of a value's bytes, most significant first."""
    w = np.arange(words)
    if word_order == "little":
        w = w[::-1]
    pair = np.array([1, 0] if byte_order == "little" else [0, 1])
    return ((offset + w)[:, None] * 2 + pair[None, :]).ravel()


class RegisterDecoder:
    """Decodes a fixed list of numeric fields from a register byte buffer into float64, in one pass.

    Fields are grouped by data type at construction; ``decode`` then does one gather and one view
    per group. Strings are not numeric: use :func:`decode_string`.

    A poll's registers sit in one byte buffer as they came off the wire, and each data type is decoded
    for all its tags by one gather (a precomputed byte-index matrix that already applies word and byte
    order) and one big-endian dtype view. pymodbus' ``convert_from_registers`` decodes one value per
    call from a list of Python ints (a struct call per tag, plus the list pymodbus builds per
    response), which costs a Python round trip per tag per poll; here the cost per poll is a handful
    of numpy calls whatever the tag count.
    """

    def __init__(self, fields: Sequence[RegisterField]) -> None:
        self.n = len(fields)
        self.words_needed = max((f.offset + f.words for f in fields), default=0)
        self._typed: list[tuple[np.dtype, np.ndarray, np.ndarray]] = []
        self._bits: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        by_type: dict[str, list[int]] = {}
        for i, f in enumerate(fields):
            if f.type == "string":
                raise ValueError(f"field {i}: strings are not numeric; use decode_string")
            if f.type not in NUMPY_TYPE and f.type not in ("bool", "bits"):
                raise ValueError(f"field {i}: unknown type {f.type!r}")
            by_type.setdefault("bitfield" if f.type in ("bool", "bits") else f.type, []).append(i)
        for typ, rows in by_type.items():
            dest = np.array(rows, dtype=np.intp)
            if typ == "bitfield":
                idx = np.stack([byte_index(fields[i].offset, 1, "big", fields[i].byte_order) for i in rows])
                shift = np.array([fields[i].bit or 0 for i in rows], dtype=np.uint16)
                width = np.array(
                    [1 if fields[i].type == "bool" else (fields[i].length or 1) for i in rows],
                    dtype=np.uint32,
                )
                mask = ((np.uint32(1) << width) - 1).astype(np.uint16)
                self._bits = (dest, idx, shift, mask)
                continue
            dt = np.dtype(NUMPY_TYPE[typ])
            words = dt.itemsize // 2
            idx = np.stack(
                [
                    byte_index(fields[i].offset, words, fields[i].word_order, fields[i].byte_order)
                    for i in rows
                ]
            )
            self._typed.append((dt, dest, idx))

    def decode(self, buf: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``buf``: uint8 bytes of the registers as on the wire (2 per register, big-endian)."""
        if buf.dtype != np.uint8 or len(buf) < 2 * self.words_needed:
            raise ValueError(f"need a uint8 buffer of at least {2 * self.words_needed} bytes")
        if out is None:
            out = np.empty(self.n, dtype=np.float64)
        for dt, dest, idx in self._typed:
            out[dest] = buf[idx].view(dt).ravel()
        if self._bits is not None:
            dest, idx, shift, mask = self._bits
            word = buf[idx].view(">u2").ravel().astype(np.uint16)
            out[dest] = (word >> shift) & mask
        return out


def decode_string(buf: np.ndarray | bytes, offset: int, length: int, byte_order: str = "big") -> str:
    """Characters packed two per register (first character in the high byte unless byte_order=little).

    Trailing NULs and spaces are dropped; bytes that are not UTF-8 become U+FFFD.
    """
    raw = np.frombuffer(bytes(buf), dtype=np.uint8)[offset * 2 : offset * 2 + 2 * -(-length // 2)]
    if byte_order == "little":
        raw = raw.reshape(-1, 2)[:, ::-1].ravel()
    return raw[:length].tobytes().rstrip(b"\x00 ").decode("utf-8", errors="replace")


def registers_to_bytes(registers: Sequence[int]) -> np.ndarray:
    """Register values (ints 0..65535) -> the uint8 buffer the decoders read."""
    return np.asarray(registers, dtype=">u2").view(np.uint8)


def decode_registers(
    registers: Sequence[int],
    type: str,
    word_order: str = "big",
    byte_order: str = "big",
    bit: int | None = None,
    length: int | None = None,
) -> float | str:
    """One value from its registers (tests, write-back, the CLI); the hot path uses RegisterDecoder."""
    buf = registers_to_bytes(registers)
    if type == "string":
        return decode_string(buf, 0, length or 2 * len(registers), byte_order)
    f = RegisterField(0, type, word_order, byte_order, bit, length)
    if len(registers) != f.words:
        raise ValueError(f"{type} needs {f.words} registers, got {len(registers)}")
    return float(RegisterDecoder([f]).decode(buf)[0])


def encode_value(value: float, type: str, word_order: str = "big", byte_order: str = "big") -> list[int]:
    """The registers that hold ``value`` (inverse of decode_registers) for the numeric types."""
    dt = np.dtype(NUMPY_TYPE[type])
    if dt.kind in "iu":
        info = np.iinfo(dt)
        iv = value if isinstance(value, int) else round(float(value))
        if not info.min <= iv <= info.max:
            raise ValueError(f"{value!r} does not fit in {type}")
        raw = np.array([iv], dtype=dt).view(np.uint8)
    else:
        raw = np.array([value], dtype=dt).view(np.uint8)
    words = dt.itemsize // 2
    out = np.empty(2 * words, dtype=np.uint8)
    out[byte_index(0, words, word_order, byte_order)] = raw
    return out.view(">u2").astype(int).tolist()
