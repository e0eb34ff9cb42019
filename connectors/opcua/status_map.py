"""OPC UA StatusCode → Shopfloor Quality, by the severity bits (Part 4 §7.39), vectorised for batches.

Severity is bits 31–30: 00 Good, 01 Uncertain, 10 Bad (11 is reserved and treated as Bad).

| status code (examples)                       | hex          | quality   |
|----------------------------------------------|--------------|-----------|
| Good                                         | 0x00000000   | GOOD      |
| GoodClamped, GoodLocalOverride, GoodOverload | 0x00xx0000   | GOOD      |
| UncertainLastUsableValue                     | 0x40900000   | UNCERTAIN |
| UncertainSensorNotAccurate                   | 0x40930000   | UNCERTAIN |
| UncertainInitialValue, UncertainSubNormal    | 0x409x0000   | UNCERTAIN |
| UncertainNoCommunicationLastUsableValue      | 0x408F0000   | UNCERTAIN |
| BadSensorFailure                             | 0x808C0000   | BAD       |
| BadCommunicationError, BadNoCommunication    | 0x80050000…  | BAD       |
| BadNodeIdUnknown, BadConfigurationError      | 0x80340000…  | BAD       |
| BadWaitingForInitialData, BadOutOfService    | 0x80320000…  | BAD       |
| any code, SourceTimestamp missing or ≤ 1970  | → 0x80230000 | BAD       |

The info bits (limit, overflow, historian bits) never change the quality. A source may move named
codes to another quality with ``status_overrides`` (Telegraf's "treat these codes as good"), except
``BadWaitingForInitialData``: a server's placeholder before its first value is never data (stored
as NaN, Bad). A Good or Uncertain value without a usable SourceTimestamp (absent, or the 1601/1970
epoch) gets ``BadInvalidTimestamp`` and the server timestamp: when it was measured is unknown
(``status_overrides: {BadInvalidTimestamp: good}`` accepts server timestamps for such a server).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np
from asyncua import ua

from shopfloor.model import Quality

#: quality by severity (status >> 30)
QUALITY_BY_SEVERITY = np.array([Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.BAD], dtype=np.uint8)

_NAMES: dict[str, int] = {
    n: int(getattr(ua.StatusCodes, n)) for n in dir(ua.StatusCodes) if not n.startswith("_")
}
_BY_CODE: dict[int, str] = {}
for _name, _code in sorted(_NAMES.items()):
    _BY_CODE.setdefault(_code, _name)


def quality_of(code: int) -> Quality:
    """The quality of one status code (an int or anything with ``.value``)."""
    return Quality(int(QUALITY_BY_SEVERITY[(int(code) >> 30) & 3]))


def qualities(codes: np.ndarray, overrides: Mapping[int, int] | None = None) -> np.ndarray:
    """Qualities (uint8) of an array of status codes (uint32), with per-code overrides applied."""
    q = QUALITY_BY_SEVERITY[(codes.astype(np.uint32, copy=False) >> 30) & 3]
    if overrides:
        for code, quality in overrides.items():
            q[codes == code] = quality
    return q


def status_name(code: int) -> str:
    """``BadNodeIdUnknown`` for 0x80340000; the hex value for a code asyncua does not know."""
    code = int(code)
    name = _BY_CODE.get(code) or _BY_CODE.get(code & 0xFFFF0000)
    return name if name else f"0x{code:08X}"


def code_of(name: str) -> int:
    """The status code of a name such as ``UncertainInitialValue``; ValueError names close matches."""
    try:
        return _NAMES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_NAMES), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown OPC UA status code name {name!r}{hint}") from None


#: codes no override may move out of Bad
NEVER_DATA = {int(ua.StatusCodes.BadWaitingForInitialData)}


def check_override(name: str, quality: str) -> int:
    """The code of ``name``; ValueError if it is unknown or may not become ``quality``."""
    code = code_of(name)
    if code in NEVER_DATA and quality.lower() != "bad":
        raise ValueError(
            f"status_overrides may not make {name} {quality}: it is a server's placeholder before the "
            "first value of a variable, never a measurement"
        )
    return code


def override_table(overrides: Mapping[str, str]) -> dict[int, int]:
    """``{"UncertainInitialValue": "good"}`` → ``{0x40920000: Quality.GOOD}``."""
    return {check_override(name, q): int(Quality[q.upper()]) for name, q in overrides.items()}
