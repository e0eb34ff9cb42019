"""The pieces every page draws with: themed charts on plant-time axes in the current language, the chart
that says why it is empty, broken lines at gaps, the graph component, dropdowns and dark controls.

Chart text plotly writes itself (month names, the mode bar) follows the page's language through the
``zh-CN`` plotly locale in ``assets/plotly-locale-zh-cn.js``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import dcc

from dashboard import i18n, theme

#: Dash 4's controls draw with these CSS variables (light by default): dark ones for this theme's controls
DARK_CONTROLS = {
    "--Dash-Fill-Inverse-Strong": theme.BG,
    "--Dash-Text-Strong": theme.TEXT,
    "--Dash-Text-Primary": theme.TEXT,
    "--Dash-Text-Weak": theme.MUTED,
    "--Dash-Text-Disabled": "#6e7681",
    "--Dash-Stroke-Strong": "#484f58",
    "--Dash-Stroke-Weak": "#30363d",
    "--Dash-Fill-Interactive-Strong": "#1f6feb",
    "--Dash-Fill-Interactive-Weak": "rgba(88,166,255,0.08)",
    "--Dash-Fill-Primary-Hover": "rgba(88,166,255,0.12)",
    "--Dash-Fill-Primary-Active": "rgba(88,166,255,0.2)",
    "--Dash-Fill-Disabled": "rgba(110,118,129,0.2)",
}

#: numeric time ticks (plotly's default first tick spells the month out)
TIME_TICKS = [
    {"dtickrange": [None, 1000], "value": "%H:%M:%S.%L"},
    {"dtickrange": [1000, 60000], "value": "%H:%M:%S"},
    {"dtickrange": [60000, 86400000], "value": "%H:%M"},
    {"dtickrange": [86400000, None], "value": "%Y-%m-%d"},
]
HOVER_TIME = "%Y-%m-%d %H:%M:%S"
#: the plotly locale of each dashboard language (registered by the assets script)
PLOTLY_LOCALE = {"en": "en", "zh": "zh-CN"}


def chart_layout(**extra: Any) -> dict[str, Any]:
    """The theme's layout with a time x axis in plant time, labelled in numbers."""
    lay = theme.layout(**extra)
    lay["xaxis"] = {**lay["xaxis"], "tickformatstops": TIME_TICKS, "hoverformat": HOVER_TIME}
    return lay


def empty_figure(text: str, height: int = 260, colour: str | None = None) -> go.Figure:
    """A chart that says it has nothing to show (no axes that could read as zero)."""
    lay = theme.layout(height=height)
    lay["xaxis"] = {"visible": False}
    lay["yaxis"] = {"visible": False}
    note: dict[str, Any] = {
        "text": text,
        "showarrow": False,
        "xref": "paper",
        "yref": "paper",
        "x": 0.5,
        "y": 0.5,
    }
    if colour:
        note["font"] = {"color": colour, "size": 15}
    lay["annotations"] = [note]
    return go.Figure(layout=lay)


def message_figure(text: str) -> go.Figure:
    """An empty chart that says, in the warning colour, why it is empty."""
    return empty_figure(text, 220, theme.WARN)


def with_gaps(ts: np.ndarray, values: np.ndarray, every_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """A NaN where buckets are missing (no data there), so a line is broken rather than drawn across."""
    ts, values = np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64)
    if len(ts) < 2:
        return ts, values
    step = np.diff(ts)
    # finer buckets than the samples leave every other bucket empty: that is no gap in the data
    gap = np.flatnonzero(step > 2 * max(every_ns, int(np.median(step))))
    if not len(gap):
        return ts, values
    return np.insert(ts, gap + 1, ts[gap] + every_ns), np.insert(values, gap + 1, np.nan)


def graph(gid: str, fig: go.Figure, style: dict[str, str] | None = None) -> dcc.Graph:
    """A chart component in the current language (plotly's own words too), without the plotly logo."""
    config: Any = {"displaylogo": False, "locale": PLOTLY_LOCALE[i18n.current()]}
    if style is None:
        return dcc.Graph(id=gid, figure=fig, config=config)
    return dcc.Graph(id=gid, figure=fig, style=style, config=config)


def dropdown(options: list[dict[str, Any]], value: Any, cid: str, **extra: Any) -> dcc.Dropdown:
    """A single-choice dropdown with its own words (search, nothing found) in the current language."""
    labels: Any = {
        "search": i18n.t("dropdown.search"),
        "clear_search": i18n.t("dropdown.clear_search"),
        "no_options_found": i18n.t("dropdown.none_found"),
    }
    return dcc.Dropdown(options, value, id=cid, clearable=False, labels=labels, **extra)
