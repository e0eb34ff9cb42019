"""Signal specifications of simulated assets: unit, type, range and how each is encoded.

The same spec drives the plant config, the Parquet schema, the Modbus map and the OPC UA nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from shopfloor.model import SignalType


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One signal of a simulated asset.

    ``counter`` marks monotonic totals (served as uint32 on Modbus after multiplying by
    ``counter_scale``); ``faultable`` marks physical sensors that can suffer sensor faults.
    """

    name: str
    unit: str
    description: str
    low: float
    high: float
    type: SignalType = SignalType.FLOAT
    counter: bool = False
    counter_scale: float = 1.0
    faultable: bool = False

    @property
    def is_float(self) -> bool:
        return self.type is SignalType.FLOAT and not self.counter

    @property
    def int16_scale(self) -> float:
        """Scale for the scaled-int16 view: the largest power of ten that keeps the range in int16."""
        span = max(abs(self.low), abs(self.high), 1e-9)
        for scale in (1000.0, 100.0, 10.0, 1.0, 0.1, 0.01):
            if span * scale <= 32000:
                return scale
        return 0.001


def F(name: str, unit: str, low: float, high: float, description: str, faultable: bool = False) -> SignalSpec:
    """A float (analog) signal."""
    return SignalSpec(name, unit, description, low, high, SignalType.FLOAT, faultable=faultable)


def C(name: str, unit: str, description: str, scale: float = 1.0, high: float = 4e9) -> SignalSpec:
    """A monotonic counter (parts, metres, kWh ...)."""
    return SignalSpec(
        name,
        unit,
        description,
        0.0,
        high / scale,
        SignalType.INT if scale == 1 else SignalType.FLOAT,
        counter=True,
        counter_scale=scale,
    )


def I(name: str, unit: str, low: float, high: float, description: str) -> SignalSpec:  # noqa: E743
    """An integer code or count that is not a counter."""
    return SignalSpec(name, unit, description, low, high, SignalType.INT)


def STATE_SIGNALS() -> list[SignalSpec]:
    """The state signals every asset has, first in its signal list."""
    return [
        SignalSpec(
            "state", "", "asset state code (1 running .. 7 planned maintenance)", 1, 7, SignalType.STATE
        ),
        SignalSpec(
            "down_reason", "", "reason code while down or in setup, 0 otherwise", 0, 99, SignalType.INT
        ),
        SignalSpec(
            "alarm",
            "",
            "1 while an equipment alarm is active (down with a failure reason)",
            0,
            1,
            SignalType.BOOL,
        ),
    ]


def ENERGY_SIGNALS(max_kw: float) -> list[SignalSpec]:
    return [
        F("power", "kW", 0, max_kw, "active electrical power of the asset"),
        C("energy", "kWh", "active energy since the start of the simulation", scale=10.0),
    ]
