"""The shared vocabulary: asset paths, signals, quality, samples and events.

Every subsystem speaks these types; nothing else in the project redefines them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_FIRST = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
ASSET_PATH_RE = re.compile(rf"^{_FIRST}(/{_SEGMENT}){{1,7}}$")
SIGNAL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


SYSTEM_SEGMENT = "_system"  # second segment of every asset path that describes Shopfloor itself


def system_asset(site: str, *parts: str) -> AssetPath:
    """The asset path of a part of Shopfloor itself: ``<site>/_system/<part>/...``.

    Each part is made path-safe (characters outside letters, digits, ``_.-`` become ``_``), so a
    source called ``hot mill #1`` is stored as ``<site>/_system/sources/hot_mill__1``.
    """
    if not parts:
        raise ValueError("system_asset needs at least one part below _system")
    safe = [re.sub(r"[^A-Za-z0-9_.\-]", "_", p) or "_" for p in parts]
    return AssetPath("/".join((site, SYSTEM_SEGMENT, *safe)))


def now_ns() -> int:
    """Current UTC wall time in nanoseconds since the Unix epoch."""
    return time.time_ns()


class AssetPath(str):
    """An ISA-95 hierarchy written as a slash path: ``site/area/line/asset``.

    Two to eight segments; each starts with a letter, digit or underscore and holds only
    letters, digits, ``_``, ``.`` and ``-``.  It is a ``str`` so it costs nothing on the hot path.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> AssetPath:
        if not isinstance(value, str) or not ASSET_PATH_RE.match(value):
            raise ValueError(
                f"invalid asset path {value!r}: expected 'site/area/line/asset' "
                "(2-8 segments of letters, digits, '_', '.', '-')"
            )
        return super().__new__(cls, value)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.split("/"))

    @property
    def site(self) -> str:
        return self.parts[0]

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def parent(self) -> str:
        return self.rsplit("/", 1)[0]


class SignalType(StrEnum):
    """The data type a signal carries: numbers are stored as float64, text as text."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STATE = "state"  # an enumerated state code, e.g. running=1
    TEXT = "text"  # a string: an alarm text, a recipe or product name, a batch id


class Quality(IntEnum):
    """How far a value can be trusted (OPC UA's three severities)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


@dataclass(frozen=True, slots=True)
class Signal:
    """A named measurement of an asset."""

    name: str
    unit: str = ""
    type: SignalType = SignalType.FLOAT
    description: str = ""

    def __post_init__(self) -> None:
        if not SIGNAL_NAME_RE.match(self.name):
            raise ValueError(f"invalid signal name {self.name!r}")


class SeriesKey(NamedTuple):
    """Identifies one time series: which signal of which asset."""

    asset: str
    signal: str


class Sample(NamedTuple):
    """One value of one signal at one instant (UTC ns), with its quality.

    For single values at the edges (tests, the CLI, latest-value queries); the hot path
    carries :class:`shopfloor.batch.SampleBatch` instead. A text signal's value is a ``str``.
    """

    asset: str
    signal: str
    value: float | str
    ts_ns: int
    quality: Quality = Quality.GOOD


class EventKind(StrEnum):
    """What sort of thing happened; a closed set so store tags stay bounded."""

    STATE_CHANGE = "state_change"
    ALARM = "alarm"
    PART_PRODUCED = "part_produced"
    LOT_STARTED = "lot_started"
    LOT_FINISHED = "lot_finished"
    QUALITY_RESULT = "quality_result"
    GAP = "gap"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to an asset at an instant.

    Its identity in a store is (asset, kind, key, ts_ns): ``key`` names what within the asset it is
    about (a signal, a source, an OPC UA event type), from a bounded set, so two events of one asset
    at one instant (two string tags polled together, a gap seen by two sources) never overwrite
    each other. The stores number events that share all four within one write, so even those stay
    apart; writing the same events again (a replay) stores them once.
    """

    asset: str
    kind: EventKind
    ts_ns: int
    code: str = ""
    message: str = ""
    value: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    def __post_init__(self) -> None:
        if self.key and not self.key.isprintable():  # a tag in InfluxDB: no newline, no control bytes
            raise ValueError(f"event key {self.key!r} holds a control character")

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "kind": str(self.kind),
            "key": self.key,
            "ts_ns": self.ts_ns,
            "code": self.code,
            "message": self.message,
            "value": self.value,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Event:
        return cls(
            asset=obj["asset"],
            kind=EventKind(obj["kind"]),
            ts_ns=int(obj["ts_ns"]),
            code=obj.get("code", "") or "",
            message=obj.get("message", "") or "",
            value=obj.get("value"),
            data=obj.get("data") or {},
            key=obj.get("key", "") or "",
        )
