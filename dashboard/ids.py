"""Every component id of the dashboard, in one place, so pages, callbacks and browser tests agree.

Ids are plain strings; pattern-matching ids are dicts made by the functions at the bottom.
"""

from __future__ import annotations

# shell
TICK = "tick"  # the live-update interval
URL = "url"
LANG_SWITCH = "lang-switch"
LANG_DONE = "lang-done"
USER = "user-badge"
CLOCK = "plant-clock"
BANNER = "stale-banner"
NAV = "nav"

# plant
PLANT_MAP = "plant-map"
PLANT_SUMMARY = "plant-summary"

# line
LINE_PICK = "line-pick"
LINE_TIMELINE = "line-timeline"
LINE_TRENDS = "line-trends"
LINE_COUNTS = "line-counts"
LINE_ENERGY = "line-energy"
LINE_SIGNAL = "line-signal"
LINE_LOC = "line-location"  # the page's own location: the chosen line goes into ?line=
LINE_NOW = "line-now"

# asset
ASSET_PICK = "asset-pick"
ASSET_SIGNAL = "asset-signal"
ASSET_RANGE = "asset-range"
ASSET_CHART = "asset-chart"
ASSET_HEALTH = "asset-health"
ASSET_FACTS = "asset-facts"
ASSET_MAINT = "asset-maintenance"
ASSET_LOC = "asset-location"  # the page's own location: the chosen asset goes into ?path=
ASSET_ZOOM = "asset-zoom"  # the zoomed window [start_ns, end_ns] of the history chart, or None
ASSET_RESOLUTION = "asset-resolution"
ASSET_HEALTH_CHART = "asset-health-chart"
ASSET_HEALTH_MSG = "asset-health-msg"
ASSET_RUL_CHART = "asset-rul-chart"
ASSET_RUL_MSG = "asset-rul-msg"
ASSET_ANOMALY_CHART = "asset-anomaly-chart"
ASSET_ANOMALY_MSG = "asset-anomaly-msg"
ASSET_REQUESTS = "asset-requests"
ASSET_STOPS = "asset-stops"

# maintenance
MNT_TABLE = "mnt-table"
MNT_MESSAGE = "mnt-message"
MNT_REFRESH = "mnt-refresh"

# quality
Q_SIGNAL = "q-signal"
Q_ASSET = "q-asset"
Q_SPC = "q-spc"
Q_CAPABILITY = "q-capability"
Q_VIOLATIONS = "q-violations"
Q_INSPECTION = "q-inspection"
Q_LOT = "q-lot"
Q_TRACE = "q-trace"
Q_WINDOW = "q-window"
Q_BASELINE = "q-baseline"
Q_RULES = "q-rules"
Q_SPC_NOTE = "q-spc-note"
Q_DEFECTS = "q-defects"

# mes
MES_SCOPE = "mes-scope"
MES_WATERFALL = "mes-waterfall"
MES_PARETO = "mes-pareto"
MES_SHIFTS = "mes-shifts"
MES_ORDERS = "mes-orders"
MES_WINDOW = "mes-window"
MES_SHIFT = "mes-shift"
MES_KPIS = "mes-kpis"
MES_ABOVE_IDEAL = "mes-above-ideal"
MES_MESSAGE = "mes-message"

# system
SYS_WRITER = "sys-writer"
SYS_SOURCES = "sys-sources"
SYS_STORE = "sys-store"


def tile(path: str) -> dict[str, str]:
    """A plant-map tile (its DOM id is Dash's JSON of this dict)."""
    return {"type": "tile", "asset": path}


def ack_button(request_id: int) -> dict[str, str | int]:
    return {"type": "mnt-ack", "id": request_id}


def close_button(request_id: int) -> dict[str, str | int]:
    return {"type": "mnt-close", "id": request_id}
