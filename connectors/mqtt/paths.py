"""The small grammars of MQTT source tags: topic filters (check, match, cover), value paths (JSONPath
subset or JSON pointer) and timestamps (epoch s/ms/us/ns or ISO 8601) as UTC nanoseconds.
"""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Step = str | int
Path = tuple[Step, ...]

MISSING: Any = object()  # what a path gives when the payload does not have it


class Refused(ValueError):
    """A message (or one tag's part of it) that cannot become a sample; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# -- topic filters -------------------------------------------------------------------------------------------
def check_filter(topic: str) -> str:
    """``topic`` if it is a valid MQTT topic filter; ValueError with the reason."""
    if not topic:
        raise ValueError("a topic filter is not empty")
    if "\x00" in topic or len(topic.encode()) > 65535:
        raise ValueError("a topic filter holds no NUL and is at most 65535 bytes")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"{topic!r}: '#' must be a whole level, and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"{topic!r}: '+' must be a whole level")
    return topic


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` (a concrete topic) matches ``topic_filter`` (MQTT 3.1.1 / 5 rules, $-topics
    excepted from wildcards at the first level)."""
    f, t = topic_filter.split("/"), topic.split("/")
    if t[0].startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def covers(wide: str, narrow: str) -> bool:
    """Whether every topic ``narrow`` matches is matched by ``wide`` too (both filters)."""
    w, n = wide.split("/"), narrow.split("/")
    for i, level in enumerate(w):
        if level == "#":
            return not (i == 0 and n[0].startswith("$"))
        if i >= len(n):
            return False
        if level == "+":
            if n[i] == "#":
                return False
            continue
        if level != n[i]:
            return False
    return len(w) == len(n)


def minimal_filters(filters: list[str]) -> list[str]:
    """The filters without those another one covers (a broker may send a message once per matching
    subscription), first occurrence kept, order kept."""
    out: list[str] = []
    for i, f in enumerate(filters):
        if f in out:
            continue
        if any(covers(g, f) and not (covers(f, g) and j > i) for j, g in enumerate(filters) if g != f):
            continue
        out.append(f)
    return out


# -- value paths ---------------------------------------------------------------------------------------------
_DOTTED = re.compile(
    r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\['((?:[^'\\]|\\.)*)'\]"
)


def parse_path(text: str) -> Path:
    """A value path: ``$`` (the whole payload), ``$.a.b[0]``, ``$["key with.dots"]``, plain ``a.b``, or a
    JSON pointer ``/a/b/0`` (RFC 6901: ``~1`` for ``/``, ``~0`` for ``~``); ValueError if malformed."""
    if text.startswith("/"):
        out: list[Step] = []
        for part in text[1:].split("/"):
            if re.search(r"~[^01]|~$", part):
                raise ValueError(f"{text!r}: '~' in a JSON pointer is ~0 or ~1")
            key = part.replace("~1", "/").replace("~0", "~")
            out.append(int(key) if key.isdigit() and (key == "0" or not key.startswith("0")) else key)
        return tuple(out)
    body = text if text.startswith("$") else "$." + text
    pos, steps = 1, list[Step]()
    while pos < len(body):
        m = _DOTTED.match(body, pos)
        if m is None:
            raise ValueError(
                f'{text!r} is not a path: write $.a.b[0], $["odd key"], a.b or a JSON pointer /a/b/0'
            )
        name, index, dq, sq = m.groups()
        if index is not None:
            steps.append(int(index))
        else:
            raw = name if name is not None else dq if dq is not None else sq
            steps.append(re.sub(r"\\(.)", r"\1", raw))
        pos = m.end()
    return tuple(steps)


def follow(doc: Any, path: Path) -> Any:
    """The value at ``path`` in a parsed JSON document, or MISSING. A numeric step indexes a list; on an
    object (a JSON pointer cannot tell) it is the key of that name."""
    cur = doc
    for step in path:
        if isinstance(cur, dict):
            key = str(step)
            if key not in cur:
                return MISSING
            cur = cur[key]
        elif isinstance(cur, list) and isinstance(step, int):
            if step >= len(cur):
                return MISSING
            cur = cur[step]
        else:
            return MISSING
    return cur


# -- timestamps ----------------------------------------------------------------------------------------------
UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_ISO_FRACTION = re.compile(r"([T ]\d{2}:\d{2}:\d{2})[.,](\d+)")


def zone(name: str | None) -> datetime.tzinfo | None:
    """The time zone of a name (``UTC``, ``Asia/Shanghai``, ``+08:00``); ValueError if unknown."""
    if name is None:
        return None
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return datetime.timezone(sign * datetime.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    if name.upper() in ("UTC", "Z"):
        return datetime.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name such as Asia/Shanghai, or +08:00)"
        ) from None


def auto_unit(value: Decimal) -> str:
    """The epoch unit a number's magnitude implies: below 1e11 seconds (to the year 5138), below 1e14
    milliseconds, below 1e17 microseconds, else nanoseconds."""
    v = abs(value)
    return (
        "s" if v < Decimal(10**11) else "ms" if v < Decimal(10**14) else "us" if v < Decimal(10**17) else "ns"
    )


def to_ns(raw: Any, unit: str, tz: datetime.tzinfo | None) -> int:
    """UTC nanoseconds of a JSON timestamp: a number (``unit`` s/ms/us/ns, or ``auto`` by magnitude), a
    string of digits (the same) or an ISO 8601 string (naive ones in ``tz``); Refused otherwise."""
    if isinstance(raw, bool) or raw is None:
        raise Refused("timestamp", f"a timestamp is a number or an ISO 8601 string, not {raw!r}")
    if isinstance(raw, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", raw):  # an epoch number as a string
        raw = Decimal(raw.strip())
    if isinstance(raw, int | Decimal | float):
        d = raw if isinstance(raw, Decimal) else Decimal(repr(raw) if isinstance(raw, float) else raw)
        if not d.is_finite():
            raise Refused("timestamp", f"timestamp {raw!r} is not finite")
        u = auto_unit(d) if unit == "auto" else unit
        ns = int((d * UNIT_NS[u]).to_integral_value())
    elif isinstance(raw, str):
        ns = _iso_ns(raw, tz)
    else:
        raise Refused("timestamp", f"a timestamp is a number or an ISO 8601 string, not {type(raw).__name__}")
    if not 0 <= ns < 2**63:
        raise Refused("timestamp", f"timestamp {raw!r} is before 1970 or beyond 2262")
    return ns


def _iso_ns(text: str, tz: datetime.tzinfo | None) -> int:
    extra = 0
    m = _ISO_FRACTION.search(text)
    if m:  # datetime keeps microseconds: the digits past them are added back as nanoseconds
        digits = m.group(2)
        extra = int(digits[6:9].ljust(3, "0")) if len(digits) > 6 else 0
        text = text[: m.start(2)] + digits[:6].ljust(6, "0") + text[m.end(2) :]
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise Refused("timestamp", f"{text!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        if tz is None:
            raise Refused(
                "timestamp", f"{text!r} has no UTC offset (set the tag's timezone to read local times)"
            )
        dt = dt.replace(tzinfo=tz)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    delta = dt - epoch
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000 + extra
