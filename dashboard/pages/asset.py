"""Asset page: one asset's signals with zoomable history, its health index, RUL band and anomaly score,
and its maintenance history (requests and recent stops with their reasons).

History is aggregated by the store at screen resolution; zooming re-queries the zoomed window, finer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import dash
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html
from sqlalchemy.exc import SQLAlchemyError

from dashboard import i18n, ids, theme
from dashboard.context import NS, Context, duration, table, unavailable
from dashboard.data import ANOMALY, HEALTH, RUL, Unavailable, bucket_ns
from dashboard.widgets import DARK_CONTROLS, chart_layout, dropdown, empty_figure, graph, with_gaps
from shopfloor.model import now_ns

RANGES: dict[str, int] = {"1h": 3600, "8h": 8 * 3600, "24h": 86400, "7d": 7 * 86400}  # seconds
DEFAULT_RANGE = "8h"
POINTS = 800  # about one value per screen pixel column of a wide chart
MIN_ZOOM_NS = 10 * NS  # narrower zooms are widened to this
STOPS_S = 7 * 86400  # the stops table looks back this far
HIDDEN = {"display": "none"}
SHOWN = {"height": "260px"}
ERRORS = (Unavailable, SQLAlchemyError)


# -- words and numbers shared by the line, asset and maintenance pages --------------------------------
def unit_label(unit: str) -> str:
    """A unit in the current language (units without a translation are shown as configured)."""
    key = f"unit.{unit}"
    return i18n.t(key) if key in i18n.TEXT else unit


def mode_label(subject: str) -> str:
    """A failure mode's name in the current language; a sensor fault's subject (a signal) as it is."""
    key = f"mode.{subject}"
    return i18n.t(key) if key in i18n.TEXT else subject


def reason_label(ctx: Context, reason: str | None) -> str:
    """A downtime reason id as its label in the reason tree, in the current language."""
    if reason is None:
        return "–"
    if reason == "unassigned":
        return i18n.t("reason.unassigned")
    r = next((r for r in ctx.cfg.mes.reasons if r.id == reason), None)
    return i18n.pair(r.en, r.zh) if r else reason


def num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if x is None or x != x else fmt.format(x)


def hours(x: float | None) -> str:
    return "–" if x is None or x != x else f"{x:,.1f} {i18n.t('h')}"


def band(low: float | None, high: float | None) -> str:
    if (low is None or low != low) and (high is None or high != high):
        return "–"
    return f"{num(low, '{:,.1f}')} – {num(high, '{:,.1f}')} {i18n.t('h')}"


def status_label(status: str) -> str:
    key = f"mnt.status.{status}"
    return i18n.t(key) if key in i18n.TEXT else status


def kind_label(kind: str) -> str:
    key = f"mnt.kind.{kind}"
    return i18n.t(key) if key in i18n.TEXT else kind


# -- time windows ---------------------------------------------------------------------------------------
def from_local(ctx: Context, text: str) -> int:
    """A chart axis time (plant wall time, as plotly reports it) as UTC ns."""
    t = datetime.fromisoformat(str(text).strip().replace("T", " ")[:26])
    return int(t.replace(tzinfo=ZoneInfo(ctx.cfg.timezone)).timestamp() * 1_000_000) * 1000


def parse_zoom(ctx: Context, relayout: dict[str, Any] | None) -> Any:
    """The x window a chart's relayoutData asks for: [start, end] ns, None to go back, else no_update."""
    if not relayout:
        return dash.no_update
    if relayout.get("xaxis.autorange"):
        return None
    if "xaxis.range[0]" in relayout and "xaxis.range[1]" in relayout:
        lo, hi = relayout["xaxis.range[0]"], relayout["xaxis.range[1]"]
    elif isinstance(relayout.get("xaxis.range"), list) and len(relayout["xaxis.range"]) == 2:
        lo, hi = relayout["xaxis.range"]
    else:
        return dash.no_update
    try:
        start, end = sorted((from_local(ctx, lo), from_local(ctx, hi)))
    except (TypeError, ValueError):
        return dash.no_update
    if end - start < MIN_ZOOM_NS:
        mid = (start + end) // 2
        start, end = mid - MIN_ZOOM_NS // 2, mid + MIN_ZOOM_NS // 2
    return [start, end]


def window(ctx: Context, range_key: str | None, zoom: list[int] | None = None) -> tuple[int, int]:
    """The zoomed window if there is one, else the chosen range up to the plant's now."""
    if zoom and len(zoom) == 2:
        return int(zoom[0]), int(zoom[1])
    try:
        end = ctx.data.now_ns()
    except Unavailable:  # the plant clock reads the store; the chart will say the store is down
        end = now_ns()
    return end - RANGES.get(range_key or DEFAULT_RANGE, RANGES[DEFAULT_RANGE]) * NS, end


# -- the pieces of the page --------------------------------------------------------------------------------
def asset_options(ctx: Context) -> list[dict[str, str]]:
    return [
        {"label": f"{ln.name} / {path.rsplit('/', 1)[-1]}", "value": path}
        for ln in ctx.data.lines
        for path in ln.assets
    ]


def signal_options(ctx: Context, asset: str | None) -> list[dict[str, str]]:
    out = []
    for s in ctx.data.numeric_signals(asset or ""):
        unit = unit_label(s.unit)
        out.append({"label": f"{s.name} ({unit})" if unit else s.name, "value": s.name})
    return out


def default_signal(ctx: Context, asset: str | None, keep: str | None = None) -> str | None:
    names = [s.name for s in ctx.data.numeric_signals(asset or "")]
    for pick in (keep, "power"):
        if pick in names:
            return pick
    return names[0] if names else None


def signal_unit(ctx: Context, asset: str, signal: str) -> str:
    s = next((s for s in ctx.data.numeric_signals(asset) if s.name == signal), None)
    return unit_label(s.unit) if s else ""


def history_figure(
    ctx: Context, asset: str | None, signal: str | None, start: int, end: int, revision: str
) -> tuple[go.Figure, str]:
    """The signal over [start, end) at about POINTS values, and a line saying how fine that is."""
    if not asset or not signal:
        return empty_figure(i18n.t("asset.no_signals"), 420), ""
    try:
        frame = ctx.data.series(asset, signal, start, end, points=POINTS)
    except Unavailable as exc:
        return empty_figure(i18n.t("sys.historian_down", why=str(exc)), 420), ""
    every = bucket_ns(end - start, POINTS)
    res = i18n.t("asset.resolution", d=duration(every / NS), n=len(frame))
    if not len(frame):
        return empty_figure(i18n.t("no_data"), 420), res
    ts, v = with_gaps(frame.ts, frame.value, every)
    unit = signal_unit(ctx, asset, signal)
    lay = chart_layout(height=420, uirevision=revision, showlegend=False)
    lay["yaxis"] = {**lay["yaxis"], "title": {"text": unit}}
    lay["title"] = {"text": f"{signal} ({unit})" if unit else signal, "x": 0.01}
    fig = go.Figure(
        go.Scatter(x=ctx.to_local(ts), y=v, mode="lines", name=signal, line={"color": theme.ACCENT}),
        layout=lay,
    )
    return fig, res


def facts(ctx: Context, asset: str | None, signal: str | None) -> list[Any]:
    """What the asset is and how it is now; a stale asset shows 'stale', never an old value as current."""
    a = ctx.data.assets.get(asset or "")
    if a is None:
        return [unavailable(i18n.t("asset.unknown", path=asset or ""))]
    try:
        age, stale = ctx.data.age(a.path)
        state = ctx.data.state_of(a.path)
        sample = ctx.data.value(a.path, signal) if signal else None
    except Unavailable as exc:
        return [unavailable(i18n.t("sys.historian_down", why=str(exc)))]
    if stale:
        latest = i18n.t("stale")
    elif sample is None or isinstance(sample.value, str) or sample.value != sample.value:
        latest = i18n.t("no_data")
    else:
        latest = f"{float(sample.value):,.3g} {signal_unit(ctx, a.path, signal or '')}".strip()
    rows = [
        (i18n.t("asset.kind"), a.kind),
        (i18n.t("asset.description"), a.description or "–"),
        (i18n.t("state"), i18n.t("stale") if stale else i18n.state_label(state)),
        (i18n.t("data_age"), duration(age)),
        (f"{i18n.t('asset.latest')} · {signal or '–'}", latest),
    ]
    kv: list[Any] = []
    for k, v in rows:
        kv += [html.Div(k, className="k"), html.Div(v, className="v")]
    marks: dict[str, Any] = {"data-stale": "1" if stale else "0"}
    return [html.Div(kv, className="sf-kv", **marks)]


def _series_or_none(ctx: Context, asset: str, signal: str, start: int, end: int) -> Any:
    frame = ctx.data.series(asset, signal, start, end, points=POINTS)
    return frame if len(frame) else None


def analytics_view(ctx: Context, asset: str | None, start: int, end: int) -> list[Any]:
    """Health, RUL band and anomaly charts (figure, style, message each) and the values now."""
    out: list[Any] = []
    every = bucket_ns(end - start, POINTS)
    try:
        frames = (
            {s: _series_or_none(ctx, asset, s, start, end) for s in (HEALTH, *RUL, ANOMALY)} if asset else {}
        )
    except Unavailable as exc:
        frames = {}
        why = i18n.t("sys.historian_down", why=str(exc))
    else:
        why = i18n.t("asset.no_analytics")
    for signal, name in ((HEALTH, "health"), (RUL[0], "asset.rul"), (ANOMALY, "asset.anomaly")):
        frame = frames.get(signal)
        if frame is None:
            out += [empty_figure(why), HIDDEN, why]
            continue
        fig = _rul_figure(ctx, frames, every) if signal == RUL[0] else _line_figure(ctx, frame, name, every)
        out += [fig, SHOWN, ""]
    out.append(analytics_now(ctx, asset))
    return out


def _line_figure(ctx: Context, frame: Any, name: str, every: int) -> go.Figure:
    ts, v = with_gaps(frame.ts, frame.value, every)
    lay = chart_layout(height=260, showlegend=False)
    lay["title"] = {"text": i18n.t(name), "x": 0.01}
    return go.Figure(
        go.Scatter(x=ctx.to_local(ts), y=v, mode="lines", line={"color": theme.ACCENT}), layout=lay
    )


def _rul_figure(ctx: Context, frames: dict[str, Any], every: int) -> go.Figure:
    """The RUL estimate as a line inside its shaded low-high band."""
    lay = chart_layout(height=260)
    lay["title"] = {"text": i18n.t("asset.rul"), "x": 0.01}
    lay["yaxis"] = {**lay["yaxis"], "title": {"text": i18n.t("h")}, "rangemode": "tozero"}
    fig = go.Figure(layout=lay)
    low, high, mid = frames.get(RUL[1]), frames.get(RUL[2]), frames[RUL[0]]
    if low is not None and high is not None:
        for frame, fill in ((low, None), (high, "tonexty")):
            ts, v = with_gaps(frame.ts, frame.value, every)
            fig.add_trace(
                go.Scatter(
                    x=ctx.to_local(ts),
                    y=v,
                    mode="lines",
                    line={"width": 0, "color": theme.ACCENT},
                    fill=fill,
                    fillcolor="rgba(88,166,255,0.25)",
                    name=i18n.t("asset.rul_band"),
                    showlegend=fill is not None,
                    hoverinfo="skip",
                )
            )
    ts, v = with_gaps(mid.ts, mid.value, every)
    fig.add_trace(
        go.Scatter(
            x=ctx.to_local(ts), y=v, mode="lines", line={"color": theme.ACCENT}, name=i18n.t("mnt.rul")
        )
    )
    return fig


def analytics_now(ctx: Context, asset: str | None) -> list[Any]:
    """The newest health, RUL (with band) and anomaly score; 'stale' when the asset's data has stopped."""
    if not asset or asset not in ctx.data.assets:
        return []
    try:
        _, stale = ctx.data.age(asset)
        v = ctx.data.analytics(asset)
    except Unavailable as exc:
        return [unavailable(i18n.t("sys.historian_down", why=str(exc)))]

    def show(text: str, value: float | None) -> str:
        return i18n.t("stale") if stale else (i18n.t("no_data") if value is None else text)

    rows = [
        (i18n.t("asset.health_now"), show(num(v[HEALTH]), v[HEALTH])),
        (
            i18n.t("asset.rul_now"),
            show(f"{hours(v[RUL[0]])} ({i18n.t('asset.rul_band')} {band(v[RUL[1]], v[RUL[2]])})", v[RUL[0]]),
        ),
        (i18n.t("asset.anomaly_now"), show(num(v[ANOMALY]), v[ANOMALY])),
    ]
    scored = ctx.data.value(asset, HEALTH)
    if scored is not None:  # the analytics score every few minutes: say when they last did
        rows.append((i18n.t("asset.scored_at"), ctx.local(scored.ts_ns)))
    kv: list[Any] = []
    for k, val in rows:
        kv += [html.Div(k, className="k"), html.Div(val, className="v")]
    return [html.Div(kv, className="sf-kv")]


def requests_table(ctx: Context, asset: str | None) -> list[Any]:
    if not asset:
        return []
    try:
        rows = ctx.data.asset_requests(asset, limit=50)
    except ERRORS:
        return [unavailable(i18n.t("mes.unavailable"))]
    if not rows:
        return [html.Div(i18n.t("asset.no_requests"))]
    headers = [
        i18n.t("mnt.opened"),
        i18n.t("mnt.kind"),
        i18n.t("mnt.mode"),
        i18n.t("mnt.rul"),
        i18n.t("asset.rul_band"),
        i18n.t("mnt.score"),
        i18n.t("mnt.status"),
        i18n.t("mnt.updated"),
    ]
    body = [
        [
            ctx.local(r["opened_ns"]),
            kind_label(r["kind"]),
            mode_label(r["subject"]),
            hours(r["rul_hours"]),
            band(r["rul_low_hours"], r["rul_high_hours"]),
            num(r["score"]),
            status_label(r["status"]),
            f"{r['updated_by']} · {ctx.local(r['updated_ns'])}",
        ]
        for r in rows
    ]
    return [table(headers, body, numeric={3, 5}, id="asset-requests-table")]


def stops_table(ctx: Context, asset: str | None) -> list[Any]:
    """The asset's newest stops from the MES, with their reasons (and who gave a reason by hand)."""
    if not asset:
        return []
    try:
        end = ctx.data.now_ns()
        rows = ctx.data.stops(asset, end - STOPS_S * NS, end, limit=50)
    except ERRORS:
        return [unavailable(i18n.t("mes.unavailable"))]
    if not rows:
        return [html.Div(i18n.t("asset.no_stops", n=STOPS_S // 86400))]
    headers = [
        i18n.t("asset.start"),
        i18n.t("mes.duration"),
        i18n.t("state"),
        i18n.t("mes.reason"),
        i18n.t("asset.by"),
    ]
    body = [
        [
            ctx.local(r["start_ns"]),
            i18n.t("asset.ongoing") if r["end_ns"] is None else duration((r["end_ns"] - r["start_ns"]) / NS),
            i18n.state_label(r["state"]),
            reason_label(ctx, r["reason"]),
            r["reason_by"] or i18n.t("asset.plc"),
        ]
        for r in rows
    ]
    return [table(headers, body, numeric={1}, id="asset-stops-table")]


def _panel(title: str, *children: Any) -> html.Div:
    return html.Div([html.H3(title), *children], className="sf-panel")


def layout_for(ctx: Context, path: str | None) -> html.Div:
    asset = path or (ctx.data.lines[0].assets[0] if ctx.data.lines else None)
    known = asset in ctx.data.assets
    signal = default_signal(ctx, asset) if known else None
    start, end = window(ctx, DEFAULT_RANGE)
    revision = f"{asset}|{signal}|{DEFAULT_RANGE}"
    fig, res = history_figure(ctx, asset, signal, start, end, revision) if known else (empty_figure(""), "")
    h_fig, h_style, h_msg, r_fig, r_style, r_msg, a_fig, a_style, a_msg, now = analytics_view(
        ctx, asset if known else None, start, end
    )
    controls = html.Div(
        [
            html.Div(
                [
                    html.Label(i18n.t("asset.pick")),
                    dropdown(asset_options(ctx), asset if known else None, ids.ASSET_PICK),
                ]
            ),
            html.Div(
                [
                    html.Label(i18n.t("signal")),
                    dropdown(signal_options(ctx, asset), signal, ids.ASSET_SIGNAL),
                ]
            ),
            html.Div(
                [
                    html.Label(i18n.t("asset.range")),
                    dcc.RadioItems(
                        [{"label": i18n.t(f"range.{k}"), "value": k} for k in RANGES],
                        DEFAULT_RANGE,
                        id=ids.ASSET_RANGE,
                        inline=True,
                    ),
                ]
            ),
        ],
        className="sf-controls",
        style=DARK_CONTROLS,
    )
    return html.Div(
        [
            dcc.Location(id=ids.ASSET_LOC, refresh=False),
            dcc.Store(id=ids.ASSET_ZOOM, data=None),
            html.H2(i18n.t("asset.title")),
            controls,
            html.Div(
                [
                    _panel(i18n.t("asset.title"), html.Div(facts(ctx, asset, signal), id=ids.ASSET_FACTS)),
                    _panel(i18n.t("asset.pdm"), html.Div(now, id=ids.ASSET_HEALTH)),
                ],
                className="sf-grid",
            ),
            _panel(
                i18n.t("asset.signals"),
                graph(ids.ASSET_CHART, fig, {"height": "420px"}),
                html.Div(
                    [html.Span(res, id=ids.ASSET_RESOLUTION), " · ", html.Span(i18n.t("asset.zoom_hint"))],
                    style={"color": theme.MUTED, "fontSize": ".85rem"},
                ),
            ),
            html.Div(
                [
                    _panel(
                        i18n.t("health"),
                        graph(ids.ASSET_HEALTH_CHART, h_fig, h_style),
                        _msg(ids.ASSET_HEALTH_MSG, h_msg),
                    ),
                    _panel(
                        i18n.t("asset.rul"),
                        graph(ids.ASSET_RUL_CHART, r_fig, r_style),
                        _msg(ids.ASSET_RUL_MSG, r_msg),
                    ),
                    _panel(
                        i18n.t("asset.anomaly"),
                        graph(ids.ASSET_ANOMALY_CHART, a_fig, a_style),
                        _msg(ids.ASSET_ANOMALY_MSG, a_msg),
                    ),
                ],
                className="sf-grid",
            ),
            html.Div(
                [
                    _panel(
                        i18n.t("asset.requests"), html.Div(requests_table(ctx, asset), id=ids.ASSET_REQUESTS)
                    ),
                    _panel(i18n.t("asset.stops"), html.Div(stops_table(ctx, asset), id=ids.ASSET_STOPS)),
                ],
                className="sf-grid",
                id=ids.ASSET_MAINT,
            ),
        ]
    )


def _msg(mid: str, text: str) -> html.Div:
    return html.Div(text, id=mid, className="sf-msg")


def register(app: Dash, ctx: Context) -> None:
    def layout(path: str | None = None, **_query: str) -> html.Div:
        return layout_for(ctx, path)

    dash.register_page(
        "asset", path="/asset", name="asset", title="Shopfloor · Asset", layout=layout, order=2
    )

    @app.callback(
        Output(ids.ASSET_SIGNAL, "options"),
        Output(ids.ASSET_SIGNAL, "value"),
        Output(ids.ASSET_LOC, "search"),
        Input(ids.ASSET_PICK, "value"),
        State(ids.ASSET_SIGNAL, "value"),
        prevent_initial_call=True,
    )
    def pick(asset: str | None, signal: str | None) -> tuple[Any, Any, str]:
        search = f"?path={quote(asset, safe='')}" if asset else ""
        return signal_options(ctx, asset), default_signal(ctx, asset, signal), search

    @app.callback(
        Output(ids.ASSET_ZOOM, "data"),
        Input(ids.ASSET_CHART, "relayoutData"),
        Input(ids.ASSET_PICK, "value"),
        Input(ids.ASSET_SIGNAL, "value"),
        Input(ids.ASSET_RANGE, "value"),
        prevent_initial_call=True,
    )
    def zoom(relayout: dict[str, Any] | None, *_: Any) -> Any:
        if dash.ctx.triggered_id != ids.ASSET_CHART:
            return None  # another asset, signal or range: back to the whole range
        return parse_zoom(ctx, relayout)

    @app.callback(
        Output(ids.ASSET_CHART, "figure"),
        Output(ids.ASSET_RESOLUTION, "children"),
        Input(ids.ASSET_PICK, "value"),
        Input(ids.ASSET_SIGNAL, "value"),
        Input(ids.ASSET_RANGE, "value"),
        Input(ids.ASSET_ZOOM, "data"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,
    )
    def chart(asset: str | None, signal: str | None, rng: str | None, zoomed: Any, _n: Any) -> Any:
        start, end = window(ctx, rng, zoomed)
        return history_figure(ctx, asset, signal, start, end, f"{asset}|{signal}|{rng}")

    @app.callback(
        Output(ids.ASSET_FACTS, "children"),
        Input(ids.ASSET_PICK, "value"),
        Input(ids.ASSET_SIGNAL, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,
    )
    def refresh_facts(asset: str | None, signal: str | None, _n: Any) -> list[Any]:
        return facts(ctx, asset, signal)

    @app.callback(
        Output(ids.ASSET_HEALTH_CHART, "figure"),
        Output(ids.ASSET_HEALTH_CHART, "style"),
        Output(ids.ASSET_HEALTH_MSG, "children"),
        Output(ids.ASSET_RUL_CHART, "figure"),
        Output(ids.ASSET_RUL_CHART, "style"),
        Output(ids.ASSET_RUL_MSG, "children"),
        Output(ids.ASSET_ANOMALY_CHART, "figure"),
        Output(ids.ASSET_ANOMALY_CHART, "style"),
        Output(ids.ASSET_ANOMALY_MSG, "children"),
        Output(ids.ASSET_HEALTH, "children"),
        Input(ids.ASSET_PICK, "value"),
        Input(ids.ASSET_RANGE, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,
    )
    def refresh_analytics(asset: str | None, rng: str | None, _n: int | None) -> Any:
        start, end = window(ctx, rng)
        return analytics_view(ctx, asset if asset in ctx.data.assets else None, start, end)

    @app.callback(
        Output(ids.ASSET_REQUESTS, "children"),
        Output(ids.ASSET_STOPS, "children"),
        Input(ids.ASSET_PICK, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,
    )
    def refresh_maintenance(asset: str | None, _n: int | None) -> Any:
        return requests_table(ctx, asset), stops_table(ctx, asset)
