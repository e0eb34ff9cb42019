"""What every page is handed: the data access, the users, the plant config and small shared widgets.

Pages register their layout and callbacks with ``register(app, ctx)``; nothing here holds per-request state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from dash import html

from dashboard import auth, i18n
from dashboard.data import PlantData
from shopfloor.config.schema import PlantConfig

NS = 1_000_000_000


@dataclass
class Context:
    data: PlantData
    users: auth.Users
    cfg: PlantConfig

    def user(self) -> auth.User | None:
        return auth.current_user(self.users)

    def may(self, role: auth.Role) -> bool:
        u = self.user()
        return u is not None and u.may(role)

    def local(self, ts_ns: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        """A timestamp in the plant's time zone."""
        if ts_ns is None:
            return "–"
        return datetime.fromtimestamp(ts_ns / NS, UTC).astimezone(ZoneInfo(self.cfg.timezone)).strftime(fmt)

    def to_local(self, ts_ns: Any) -> np.ndarray:
        """UTC ns timestamps -> datetime64 wall times in the plant's zone, for chart axes."""
        ts = np.asarray(ts_ns, dtype=np.int64)
        if not len(ts):
            return ts.astype("datetime64[ns]")
        zone = ZoneInfo(self.cfg.timezone)

        def offset(t: int) -> int:
            off = datetime.fromtimestamp(t / NS, UTC).astimezone(zone).utcoffset()
            return int(off.total_seconds()) * NS if off else 0

        first, last = offset(int(ts[0])), offset(int(ts[-1]))
        if first == last:  # no daylight-saving change inside: one offset for all
            return (ts + first).astype("datetime64[ns]")
        return np.array([t + offset(int(t)) for t in ts], dtype=np.int64).astype("datetime64[ns]")


def duration(seconds: float | None) -> str:
    """1 h 05 min / 3 min 20 s / 12 s, in the current language's units."""
    if seconds is None or seconds != seconds:
        return "–"
    s = round(float(seconds))
    if s >= 86400:
        return f"{s // 86400} {i18n.t('d')} {s % 86400 // 3600} {i18n.t('h')}"
    if s >= 3600:
        return f"{s // 3600} {i18n.t('h')} {s % 3600 // 60:02d} {i18n.t('min')}"
    if s >= 60:
        return f"{s // 60} {i18n.t('min')} {s % 60:02d} {i18n.t('s')}"
    return f"{s} {i18n.t('s')}"


def pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:.1f} %"


def table(
    headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None, **kw: Any
) -> html.Table:
    numeric = numeric or set()
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in headers])),
            html.Tbody(
                [
                    html.Tr([html.Td(c, className="num" if i in numeric else None) for i, c in enumerate(r)])
                    for r in rows
                ]
            ),
        ],
        className="sf-table",
        **kw,
    )


def unavailable(message: str) -> html.Div:
    return html.Div(message, className="sf-msg")
