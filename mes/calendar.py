"""The shift calendar: daily shift and planned-stop ranges of the config, laid out in the plant's time
zone over any window, as (n, 2) arrays of UTC nanoseconds for the KPI engine.

Daylight-saving days are handled by building each range from local wall-clock times.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from shopfloor.config.mes import WEEKDAYS, MesConfig, TimeRangeConfig

NS = 1_000_000_000


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def lay_out(
    ranges: list[TimeRangeConfig], tz: str, start_ns: int, end_ns: int
) -> tuple[np.ndarray, list[str]]:
    """Every instance of ``ranges`` overlapping [start_ns, end_ns): (n,2) array and the instance names."""
    zone = ZoneInfo(tz)
    first = datetime.fromtimestamp(start_ns / NS, UTC).astimezone(zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end_ns / NS, UTC).astimezone(zone).date()
    out: list[tuple[int, int]] = []
    names: list[str] = []
    day = first
    while day <= last:
        wd = WEEKDAYS[day.weekday()]
        for r in ranges:
            if wd not in r.days:
                continue
            s = datetime.combine(day, r.start, zone)
            e = datetime.combine(day if r.end > r.start else day + timedelta(days=1), r.end, zone)
            a, b = _ns(s), _ns(e)
            if a < end_ns and b > start_ns:
                out.append((a, b))
                names.append(f"{day.isoformat()} {r.name}")
        day += timedelta(days=1)
    order = sorted(range(len(out)), key=lambda i: out[i])
    return np.array([out[i] for i in order], np.int64).reshape(-1, 2), [names[i] for i in order]


def scheduled(cfg: MesConfig, tz: str, start_ns: int, end_ns: int) -> np.ndarray | None:
    """Shift instances, or None when no shifts are configured (every hour is scheduled)."""
    if not cfg.shifts:
        return None
    return lay_out(list(cfg.shifts), tz, start_ns, end_ns)[0]


def planned(
    cfg: MesConfig, tz: str, start_ns: int, end_ns: int, extra: np.ndarray | None = None
) -> np.ndarray:
    """Daily planned stops of the config plus ``extra`` ranges (planned stops entered in the MES)."""
    daily = lay_out(list(cfg.planned_stops), tz, start_ns, end_ns)[0]
    if extra is not None and len(extra):
        daily = np.concatenate([daily, extra.reshape(-1, 2)])
    return daily[np.argsort(daily[:, 0], kind="stable")] if len(daily) else daily
