"""The Modbus TCP connector's config models: source settings (connection, polling groups, planner
limits) and tags (unit id, table, address, data type, byte/word order, scale, status register).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from shopfloor.connector import SettingsBase, TagBase

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal[
    "bool",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
    "bits",
]
Order = Literal["big", "little"]

#: registers per value of each fixed-size type (string: ceil(length / 2); bool/bits: 1 register)
WORDS: dict[str, int] = {
    "bool": 1,
    "bits": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
BIT_TABLES = ("coil", "discrete")
REGISTER_TABLES = ("holding", "input")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|h)?\s*$")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """``100ms``, ``5s``, ``1.5 min``, ``1h`` or a plain number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '100ms', '5s', '1min'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(
                f"{value!r} is not a duration; write e.g. '100ms', '5s', '1min' or a number of seconds"
            )
        return float(m.group(1)) * _UNIT_S[m.group(2)]
    return value


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)\s*(ms|s|min|h)?\s*$"},
    ],
    "description": "seconds, or a string such as '100ms', '5s', '1min'",
}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]


class ModbusSettings(SettingsBase):
    """One Modbus TCP device (or gateway): how to reach it, how often to poll, how to plan reads."""

    host: str = Field(description="device or gateway host name or IP address")
    port: int = Field(502, ge=1, le=65535, description="TCP port (Modbus TCP: 502)")
    timeout_s: float = Field(1.0, gt=0, le=120, description="connect timeout and per-request answer timeout")
    retries: int = Field(
        1, ge=0, le=10, description="re-sends of an unanswered request before its tags are marked Bad"
    )
    reconnect_initial_s: float = Field(0.5, gt=0, le=600, description="first reconnect delay")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="cap of the doubling reconnect delay")
    probe_interval_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="while waiting to reconnect, try a bare TCP connect this often (0: never); once the "
        "port answers again after being closed, reconnect at once instead of at the next backoff step",
    )
    refused_retry_s: float = Field(
        60.0,
        ge=0.1,
        le=86_400,
        description="re-read addresses the device refused (exception 02) this often, to restore them",
    )
    groups: dict[str, Duration] = Field(
        default_factory=lambda: {"default": 1.0},
        description="polling groups: name -> interval (e.g. {fast: 100ms, slow: 5s})",
    )
    default_group: str = Field("default", description="group of tags that name none")
    gap_fill_registers: int = Field(
        10, ge=0, le=124, description="unused registers the planner may read to merge two requests"
    )
    gap_fill_bits: int = Field(
        64, ge=0, le=1999, description="unused coils/discrete inputs the planner may read to merge requests"
    )
    max_registers_per_request: int = Field(125, ge=1, le=125, description="registers per FC3/FC4 request")
    max_bits_per_request: int = Field(2000, ge=1, le=2000, description="bits per FC1/FC2 request")
    status_good: list[int] = Field(
        default_factory=lambda: [0], description="status-register values meaning Good"
    )
    status_uncertain: list[int] = Field(
        default_factory=lambda: [1, 2],
        description="status-register values meaning Uncertain (any other value means Bad)",
    )

    @model_validator(mode="after")
    def _check(self) -> ModbusSettings:
        if not self.groups:
            raise ValueError("groups must name at least one polling group")
        for name, interval in self.groups.items():
            if not 0.001 <= interval <= 86_400:
                raise ValueError(f"group {name!r}: interval must be between 1ms and 24h, got {interval:g} s")
        if self.default_group not in self.groups:
            raise ValueError(
                f"default_group {self.default_group!r} is not one of the groups ({', '.join(self.groups)})"
            )
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        if 0 < self.probe_interval_s < 0.05:
            raise ValueError("probe_interval_s must be 0 (no probing) or at least 0.05 s")
        both = set(self.status_good) & set(self.status_uncertain)
        if both:
            raise ValueError(f"status values {sorted(both)} are listed as both good and uncertain")
        for v in (*self.status_good, *self.status_uncertain):
            if not 0 <= v <= 0xFFFF:
                raise ValueError(f"status value {v} is not a 16-bit register value")
        return self


class ModbusTag(TagBase):
    """One value read from a device: where it lives, how its registers decode, how it scales."""

    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id; 0 or 255 for many TCP devices")
    table: Table = Field("holding", description="holding | input | coil | discrete")
    address: int = Field(ge=0, le=65535, description="0-based address on the wire (PLC 40001 -> 0)")
    type: DataType = Field("uint16", description="data type of the value")
    bit: int | None = Field(None, ge=0, le=15, description="bool/bits in a register: first bit (0 = LSB)")
    length: int | None = Field(
        None, ge=1, le=250, description="string: characters (bytes); bits: number of bits"
    )
    word_order: Order = Field("big", description="big: high word first (ABCD); little: CDAB")
    byte_order: Order = Field("big", description="big: high byte first in each word; little: bytes swapped")
    scale: float = Field(1.0, description="value = raw * scale + offset")
    offset: float = 0.0
    status_address: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="register holding this value's status (0 good, 1-2 uncertain, else bad)",
    )
    status_table: Literal["holding", "input"] = "holding"
    group: str | None = Field(None, description="polling group (settings.groups); default_group if unset")
    writable: bool = Field(False, description="allow write() to this tag (never used by polling)")

    @property
    def words(self) -> int:
        """Registers (or, for coil/discrete, bits) this tag occupies."""
        if self.table in BIT_TABLES:
            return 1
        if self.type == "string":
            return math.ceil((self.length or 0) / 2)
        return WORDS[self.type]

    @property
    def is_numeric(self) -> bool:
        return self.type != "string"

    @model_validator(mode="after")
    def _check(self) -> ModbusTag:
        t = self.type
        if self.table in BIT_TABLES:
            if t != "bool":
                raise ValueError(f"table {self.table!r} holds single bits: type must be 'bool', not {t!r}")
            if self.bit is not None:
                raise ValueError(f"'bit' is for bits inside a register, not for table {self.table!r}")
        else:
            if t == "bool" and self.bit is None:
                raise ValueError(
                    "a bool in a register needs 'bit' (0-15); or read it from table 'coil' or 'discrete'"
                )
            if t == "bits":
                start = self.bit or 0
                n = self.length or 1
                if start + n > 16:
                    raise ValueError(f"bits {start}..{start + n - 1} do not fit in one 16-bit register")
            elif t != "bool" and self.bit is not None:
                raise ValueError(f"'bit' applies to types bool and bits, not {t!r}")
            if t == "string" and self.length is None:
                raise ValueError("a string needs 'length' (characters)")
            if t not in ("string", "bits") and self.length is not None:
                raise ValueError(f"'length' applies to types string and bits, not {t!r}")
        if t in ("bool", "string") and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"scale and offset do not apply to type {t!r}")
        if self.scale == 0.0:
            raise ValueError("scale must not be 0")
        if self.address + self.words > 65536:
            raise ValueError(f"address {self.address} + {self.words} registers runs past 65535")
        if self.writable and self.table in ("input", "discrete"):
            raise ValueError(f"table {self.table!r} is read-only in Modbus; it cannot be writable")
        if self.writable and (t in ("string", "bits") or (t == "bool" and self.bit is not None)):
            raise ValueError(
                f"writing type {t!r} inside a register is not supported (it needs read-modify-write)"
            )
        return self


def check_groups(
    settings: ModbusSettings, tags: Sequence[ModbusTag]
) -> list[tuple[tuple[int | str, ...], str]]:
    """Every tag's polling group must be one the settings define (reported at the tag's line)."""
    out: list[tuple[tuple[int | str, ...], str]] = []
    for i, t in enumerate(tags):
        group = t.group or settings.default_group
        if group not in settings.groups:
            where: tuple[int | str, ...] = ("tags", i, "group") if t.group else ("settings", "default_group")
            out.append(
                (
                    where,
                    f"polling group {group!r} is not defined; settings.groups has {', '.join(settings.groups)}",
                )
            )
    return out
