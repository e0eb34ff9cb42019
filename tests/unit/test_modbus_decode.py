"""Modbus register decoding: every type in all four word/byte orders against struct, bit fields, strings."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from connectors.modbus.decode import (
    RegisterDecoder,
    RegisterField,
    decode_registers,
    decode_string,
    encode_value,
    registers_to_bytes,
)

FMT = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
SAMPLES = {
    "int16": [-32768, -1, 0, 1234, 32767],
    "uint16": [0, 1, 0xBEEF, 65535],
    "int32": [-(2**31), -123456789, 0, 2**31 - 1],
    "uint32": [0, 0xDEADBEEF, 2**32 - 1],
    "int64": [-(2**53), -1, 0, 2**53],
    "uint64": [0, 2**53, 0x0102030405060708],
    "float32": [-1.5, 0.0, 3.140625, 1e30, float("inf")],
    "float64": [-2.5e-300, 0.0, math.pi, 1.7e308],
}
ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]


def wire(value: float, typ: str, word_order: str, byte_order: str) -> list[int]:
    """Registers as a device with this word/byte order would put them on the wire (independent of decode.py)."""
    raw = struct.pack(">" + FMT[typ], value)  # ABCD...
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@pytest.mark.parametrize("typ", list(FMT))
def test_every_type_in_every_order(typ: str, word_order: str, byte_order: str) -> None:
    for v in SAMPLES[typ]:
        regs = wire(v, typ, word_order, byte_order)
        got = decode_registers(regs, typ, word_order, byte_order)
        expect = float(np.array(v, dtype=np.dtype(">" + FMT[typ])).astype(np.float64))
        assert got == expect, (typ, word_order, byte_order, v, regs)
        assert encode_value(v, typ, word_order, byte_order) == regs


def test_known_orders_of_one_float() -> None:
    # 123.456 as float32 = 0x42F6E979: ABCD, CDAB (word swap), BADC (byte swap), DCBA
    assert wire(123.456, "float32", "big", "big") == [0x42F6, 0xE979]
    for regs, wo, bo in (
        ([0x42F6, 0xE979], "big", "big"),
        ([0xE979, 0x42F6], "little", "big"),
        ([0xF642, 0x79E9], "big", "little"),
        ([0x79E9, 0xF642], "little", "little"),
    ):
        assert decode_registers(regs, "float32", wo, bo) == pytest.approx(123.456, rel=1e-6)


def test_one_decoder_for_a_mixed_buffer_matches_single_decodes() -> None:
    rng = np.random.default_rng(3)
    fields, regs, expect = [], [], []
    for _ in range(300):
        typ = rng.choice(list(FMT))
        wo, bo = ORDERS[rng.integers(4)]
        v = SAMPLES[typ][rng.integers(len(SAMPLES[typ]))]
        fields.append(RegisterField(len(regs), typ, wo, bo))
        regs += wire(v, typ, wo, bo)
        expect.append(float(np.array(v, dtype=np.dtype(">" + FMT[typ])).astype(np.float64)))
    out = RegisterDecoder(fields).decode(registers_to_bytes(regs))
    assert out.tolist() == expect


def test_bit_fields_and_bools_in_registers() -> None:
    regs = [0b1010_0000_0110_0101]
    assert decode_registers(regs, "bool", bit=0) == 1.0
    assert decode_registers(regs, "bool", bit=1) == 0.0
    assert decode_registers(regs, "bool", bit=15) == 1.0
    assert decode_registers(regs, "bits", bit=4, length=4) == 0b0110
    assert decode_registers(regs, "bits", bit=0, length=16) == regs[0]
    # byte-swapped register: the bit numbers refer to the value after the swap
    swapped = [int.from_bytes(regs[0].to_bytes(2, "big")[::-1], "big")]
    assert decode_registers(swapped, "bits", byte_order="little", bit=4, length=4) == 0b0110


def test_strings() -> None:
    regs = [int.from_bytes(b"LO", "big"), int.from_bytes(b"T-", "big"), int.from_bytes(b"7\x00", "big")]
    assert decode_registers(regs, "string", length=6) == "LOT-7"
    assert decode_registers(regs, "string", length=5) == "LOT-7"
    swapped = [int.from_bytes(b"OL", "big"), int.from_bytes(b"-T", "big"), int.from_bytes(b"\x007", "big")]
    assert decode_string(registers_to_bytes(swapped), 0, 6, "little") == "LOT-7"


def test_wrong_register_count_and_short_buffer_are_refused() -> None:
    with pytest.raises(ValueError):
        decode_registers([1], "float32")
    dec = RegisterDecoder([RegisterField(3, "uint32")])
    with pytest.raises(ValueError):
        dec.decode(registers_to_bytes([0, 0, 0, 0]))  # needs 5 registers
    with pytest.raises(ValueError):
        RegisterDecoder([RegisterField(0, "string", length=4)])


def test_encode_refuses_out_of_range() -> None:
    with pytest.raises(ValueError):
        encode_value(70000, "uint16")
    with pytest.raises(ValueError):
        encode_value(-1, "uint32")
