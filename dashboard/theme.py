"""Colours and chart styling of the dashboard: one palette for states, a dark control-room theme.

State colours are read from across a room: red is down and nothing else, green is running.
"""

from __future__ import annotations

from typing import Any

STATE_COLOURS = {
    "running": "#2ea043",
    "idle": "#6e7b8b",
    "setup": "#d29922",
    "starved": "#a371f7",
    "blocked": "#db61a2",
    "down": "#f85149",
    "planned_maintenance": "#388bfd",
    "unknown": "#484f58",
}
STALE = "#30363d"
TEXT = "#e6edf3"
MUTED = "#8b949e"
PANEL = "#161b22"
BG = "#0d1117"
ACCENT = "#58a6ff"
WARN = "#d29922"
BAD = "#f85149"
GOOD = "#2ea043"


def layout(**extra: Any) -> dict[str, Any]:
    """A plotly layout in the dashboard's theme."""
    base: dict[str, Any] = {
        "paper_bgcolor": PANEL,
        "plot_bgcolor": PANEL,
        "font": {"color": TEXT, "family": "system-ui, 'WenQuanYi Zen Hei', 'Noto Sans CJK SC', sans-serif"},
        "margin": {"l": 50, "r": 20, "t": 36, "b": 40},
        "xaxis": {"gridcolor": "#21262d", "zerolinecolor": "#21262d"},
        "yaxis": {"gridcolor": "#21262d", "zerolinecolor": "#21262d"},
        "legend": {"orientation": "h", "y": -0.2},
        "uirevision": "keep",  # zoom and pan survive live updates
    }
    base.update(extra)
    return base
