"""The Modbus register map of every simulated asset (one unit id per asset) and its encoders.

Built from the signal specs, so the server, the generated connector config and the docs cannot disagree.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from plant_simulator.codes import State, Status
from plant_simulator.signals import SignalSpec

HEADER_WORDS = 10
COMMAND_REGISTER = 8  # the only writable holding register: 1 = acknowledge alarm
INT16_BAD = -32768  # scaled-int16 marker for a value with Bad status
STATUS_BITS = {int(s): i for i, s in enumerate(State)}  # state code -> bit number in register 6
ALARM_BIT = 8
SENSOR_FAULT_BIT = 9


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    """One mapped item: ``table`` is holding|input|coil|discrete; ``address`` is 0-based on the wire."""

    unit_id: int
    asset: str
    table: str
    address: int
    words: int
    type: str  # float32 | uint32 | int16 | uint16 | uint64 | bool
    word_order: str  # big | little (for multi-word values)
    signal: str
    scale: float
    description: str
    unit: str = ""


@dataclass
class AssetMap:
    unit_id: int
    asset: str
    specs: list[SignalSpec]
    entries: list[RegisterEntry]
    hr_words: int
    ir_words: int
    coils: int
    discretes: int

    def entry(self, table: str, signal: str, type: str | None = None) -> RegisterEntry:
        for e in self.entries:
            if e.table == table and e.signal == signal and (type is None or e.type == type):
                return e
        raise KeyError((table, signal))


def build_asset_map(unit_id: int, asset: str, specs: list[SignalSpec]) -> AssetMap:
    E: list[RegisterEntry] = []

    def add(
        table: str,
        addr: int,
        words: int,
        typ: str,
        order: str,
        sig: str,
        scale: float,
        desc: str,
        unit: str = "",
    ) -> None:
        E.append(RegisterEntry(unit_id, asset, table, addr, words, typ, order, sig, scale, desc, unit))

    floats = [s for s in specs if s.is_float]
    counters = [s for s in specs if s.counter]
    ints = [s for s in specs if not s.is_float and not s.counter]
    # holding registers
    add(
        "holding",
        0,
        4,
        "uint64",
        "big",
        "_sim_time_ms",
        1,
        "simulation time of this snapshot, UTC ms since epoch",
    )
    add("holding", 4, 1, "uint16", "big", "_state", 1, "state code (1 running .. 7 planned maintenance)")
    add("holding", 5, 1, "uint16", "big", "_down_reason", 1, "down/setup reason code, 0 while running")
    add(
        "holding",
        6,
        1,
        "uint16",
        "big",
        "_status_bits",
        1,
        "bit n-1 set while state == n (n = 1..7); bit 8 alarm active; bit 9 any sensor fault",
    )
    add("holding", 7, 1, "uint16", "big", "_heartbeat", 1, "simulated seconds modulo 65536")
    add(
        "holding",
        COMMAND_REGISTER,
        1,
        "uint16",
        "big",
        "_command",
        1,
        "command word, writable: 1 = acknowledge alarm (every write is logged)",
    )
    a = HEADER_WORDS
    for s in floats:
        add("holding", a, 2, "float32", "big", s.name, 1, s.description + " (NaN when Bad)", s.unit)
        a += 2
    for s in counters:
        add("holding", a, 2, "uint32", "big", s.name, s.counter_scale, s.description, s.unit)
        a += 2
    for s in ints:
        add("holding", a, 1, "int16", "big", s.name, 1, s.description, s.unit)
        a += 1
    for s in specs:
        add(
            "holding",
            a,
            1,
            "uint16",
            "big",
            s.name + ".status",
            1,
            f"status of {s.name}: 0 good, 1 uncertain last usable, 2 uncertain not accurate, 3 bad",
        )
        a += 1
    hr_words = a
    # input registers
    add(
        "input",
        0,
        4,
        "uint64",
        "big",
        "_sim_time_ms",
        1,
        "simulation time of this snapshot, UTC ms since epoch",
    )
    a = HEADER_WORDS
    for s in floats:
        add(
            "input",
            a,
            2,
            "float32",
            "little",
            s.name,
            1,
            s.description + " (word-swapped CDAB; NaN when Bad)",
            s.unit,
        )
        a += 2
    for s in floats:
        add(
            "input",
            a,
            1,
            "int16",
            "big",
            s.name,
            s.int16_scale,
            f"{s.description} x {s.int16_scale:g} (-32768 when Bad)",
            s.unit,
        )
        a += 1
    for s in counters:
        add(
            "input",
            a,
            2,
            "uint32",
            "little",
            s.name,
            s.counter_scale,
            s.description + " (word-swapped)",
            s.unit,
        )
        a += 2
    ir_words = a
    for st in State:
        add(
            "coil",
            int(st) - 1,
            1,
            "bool",
            "big",
            f"_is_{st.name.lower()}",
            1,
            f"1 while state is {st.name.lower()}",
        )
    add("coil", 7, 1, "bool", "big", "_alarm", 1, "1 while an equipment alarm is active")
    for i, s in enumerate(specs):
        add(
            "discrete",
            i,
            1,
            "bool",
            "big",
            s.name + ".fault",
            1,
            f"1 while {s.name} has a sensor fault (status != 0)",
        )
    return AssetMap(
        unit_id, asset, specs, E, hr_words, ir_words, 16, max(16, 16 * math.ceil(len(specs) / 16))
    )


def build_register_map(assets: dict[str, list[SignalSpec]]) -> list[AssetMap]:
    """Unit ids 1..N in the given asset order."""
    return [build_asset_map(i + 1, path, specs) for i, (path, specs) in enumerate(assets.items())]


# -- encoding ----------------------------------------------------------------------------------
def f32_words(v: float, order: str) -> tuple[int, int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", v))
    return (hi, lo) if order == "big" else (lo, hi)


def u32_words(v: int, order: str) -> tuple[int, int]:
    v &= 0xFFFFFFFF
    hi, lo = v >> 16, v & 0xFFFF
    return (hi, lo) if order == "big" else (lo, hi)


def u64_words(v: int) -> tuple[int, int, int, int]:
    return tuple((v >> s) & 0xFFFF for s in (48, 32, 16, 0))  # type: ignore[return-value]


def i16_word(v: float, scale: float, bad: bool) -> int:
    if bad or not math.isfinite(v):
        return INT16_BAD & 0xFFFF
    x = int(max(-32767, min(32767, round(v * scale))))
    return x & 0xFFFF


@dataclass
class Snapshot:
    """The registers and bits of one asset at one instant."""

    hr: list[int]
    ir: list[int]
    coils: list[bool]
    discretes: list[bool]


def encode(
    m: AssetMap, ts_ms: int, step: int, values: np.ndarray, status: np.ndarray, command: int
) -> Snapshot:
    """Fill the map from one column of the model (``values``/``status`` in spec order)."""
    hr = [0] * m.hr_words
    ir = [0] * m.ir_words
    coils = [False] * m.coils
    di = [False] * m.discretes
    idx = {s.name: i for i, s in enumerate(m.specs)}
    state = int(values[idx["state"]])
    alarm = bool(values[idx["alarm"]] > 0.5)
    fault = bool((status != 0).any())
    bits = (1 << STATUS_BITS.get(state, 15)) | (alarm << ALARM_BIT) | (fault << SENSOR_FAULT_BIT)
    vals = values.tolist()
    sts = status.tolist()
    for e in m.entries:
        tgt = hr if e.table == "holding" else ir if e.table == "input" else None
        if e.signal.startswith("_"):
            if e.signal == "_sim_time_ms":
                tgt[e.address : e.address + 4] = u64_words(ts_ms)  # type: ignore[index]
            elif e.signal == "_state":
                hr[e.address] = state
            elif e.signal == "_down_reason":
                hr[e.address] = int(vals[idx["down_reason"]])
            elif e.signal == "_status_bits":
                hr[e.address] = bits
            elif e.signal == "_heartbeat":
                hr[e.address] = step & 0xFFFF
            elif e.signal == "_command":
                hr[e.address] = command & 0xFFFF
            elif e.signal == "_alarm":
                coils[e.address] = alarm
            elif e.signal.startswith("_is_"):
                coils[e.address] = state == e.address + 1
            continue
        if e.table == "discrete":
            di[e.address] = sts[idx[e.signal[: -len(".fault")]]] != Status.GOOD
            continue
        if e.signal.endswith(".status"):
            hr[e.address] = sts[idx[e.signal[: -len(".status")]]]
            continue
        i = idx[e.signal]
        v = vals[i]
        bad = sts[i] == Status.BAD_SENSOR_FAILURE or not math.isfinite(v)
        assert tgt is not None
        if e.type == "float32":
            tgt[e.address : e.address + 2] = f32_words(float("nan") if bad else v, e.word_order)
        elif e.type == "uint32":
            tgt[e.address : e.address + 2] = u32_words(0 if bad else round(v * e.scale), e.word_order)
        elif e.type == "int16":
            tgt[e.address] = i16_word(v, e.scale, bad)
    return Snapshot(hr, ir, coils, di)


def render_markdown(maps: list[AssetMap]) -> str:
    """The register map as Markdown (``--print-register-map`` and docs/simulator.md)."""
    out = [
        "Addresses are 0-based as on the wire (PLC notation 4xxxx/3xxxx = address + 1).",
        "float32 word order: `big` = ABCD (high word first), `little` = CDAB (word-swapped); bytes within a",
        "word are always big-endian. uint32 counters hold value x scale. Sensor-fault markers: float32",
        "NaN and int16 -32768 when a value is Bad; the `.status` holding register and the discrete input",
        "of the signal show Uncertain and Bad. Coils and discrete inputs are read-only status bits.",
        "",
    ]
    for m in maps:
        out.append(f"### Unit {m.unit_id}: `{m.asset}`")
        out.append("")
        out.append("| table | address | words | type | word order | signal | unit | scale | description |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for e in m.entries:
            out.append(
                f"| {e.table} | {e.address} | {e.words} | {e.type} | {e.word_order} | {e.signal} | "
                f"{e.unit} | {e.scale:g} | {e.description} |"
            )
        out.append("")
    return "\n".join(out)
