"""Line page: live trends of one signal across a line's assets, their state timeline over the last 8 hours,
work orders against plan and the shift's energy per tonne.

Trends are aggregated by the store; states, counts and energy come from the MES.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html
from sqlalchemy.exc import SQLAlchemyError

from dashboard import i18n, ids, theme
from dashboard.context import NS, Context, duration, pct, table, unavailable
from dashboard.data import Line, Unavailable, bucket_ns
from dashboard.pages.asset import reason_label, signal_unit, unit_label
from dashboard.widgets import DARK_CONTROLS, chart_layout, dropdown, empty_figure, graph, with_gaps
from mes.records import NotFound
from shopfloor.model import now_ns

TREND_S = 2 * 3600  # the trends show this much history
TREND_POINTS = 600
TIMELINE_S = 8 * 3600
ERRORS = (Unavailable, SQLAlchemyError, NotFound)


def short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def signals_of(ctx: Context, line: Line) -> list[dict[str, str]]:
    """Every chartable signal of the line's assets, once, in the order they first appear."""
    seen: dict[str, str] = {}
    for a in line.assets:
        for s in ctx.data.numeric_signals(a):
            seen.setdefault(s.name, unit_label(s.unit))
    return [{"label": f"{n} ({u})" if u else n, "value": n} for n, u in seen.items()]


def default_signal(ctx: Context, line: Line, keep: str | None = None) -> str | None:
    names = [o["value"] for o in signals_of(ctx, line)]
    for pick in (keep, "power"):
        if pick in names:
            return pick
    return names[0] if names else None


def plant_now(ctx: Context) -> int:
    try:
        return ctx.data.now_ns()
    except Unavailable:  # the panels say the store is down
        return now_ns()


# -- live trends and values -----------------------------------------------------------------------------
def trends_figure(ctx: Context, line: Line, signal: str | None) -> go.Figure:
    """The signal of every asset of the line that has it, over the last TREND_S, aggregated by the store."""
    if not signal:
        return empty_figure(i18n.t("no_data"), 380)
    end = plant_now(ctx)
    start = end - TREND_S * NS
    lay = chart_layout(height=380, uirevision=f"{line.path}|{signal}")
    fig = go.Figure(layout=lay)
    unit = ""
    try:
        for a in line.assets:
            if not any(s.name == signal for s in ctx.data.numeric_signals(a)):
                continue
            frame = ctx.data.series(a, signal, start, end, points=TREND_POINTS)
            _, stale = ctx.data.age(a)
            unit = unit or signal_unit(ctx, a, signal)
            name = f"{short(a)} · {i18n.t('stale')}" if stale else short(a)
            ts, v = with_gaps(frame.ts, frame.value, bucket_ns(end - start, TREND_POINTS))
            fig.add_trace(go.Scatter(x=ctx.to_local(ts), y=v, mode="lines", name=name))
    except Unavailable as exc:
        return empty_figure(i18n.t("sys.historian_down", why=str(exc)), 380)
    if not any(len(t.x) for t in fig.data):
        return empty_figure(i18n.t("no_data"), 380)
    fig.update_layout(
        title={"text": f"{signal} ({unit})" if unit else signal, "x": 0.01},
        yaxis={"title": {"text": unit}},
    )
    return fig


def now_table(ctx: Context, line: Line, signal: str | None) -> list[Any]:
    """Each asset's state, latest value and data age; a stale asset shows 'stale', not an old value."""
    rows = []
    try:
        for a in line.assets:
            age, stale = ctx.data.age(a)
            sample = ctx.data.value(a, signal) if signal else None
            if stale:
                value = i18n.t("stale")
            elif sample is None or isinstance(sample.value, str) or sample.value != sample.value:
                value = "–"
            else:
                value = f"{float(sample.value):,.3g} {signal_unit(ctx, a, signal or '')}".strip()
            state = i18n.t("stale") if stale else i18n.state_label(ctx.data.state_of(a))
            link = dcc.Link(short(a), href=f"/asset?path={quote(a, safe='')}")
            rows.append([link, state, value, duration(age)])
    except Unavailable as exc:
        return [unavailable(i18n.t("sys.historian_down", why=str(exc)))]
    headers = [i18n.t("asset"), i18n.t("state"), signal or i18n.t("value"), i18n.t("data_age")]
    return [table(headers, rows, numeric={2}, id="line-now-table")]


# -- the MES side: timeline, orders, energy ----------------------------------------------------------------
def timeline_figure(ctx: Context, line: Line) -> go.Figure:
    """A Gantt of the MES state intervals of every asset of the line over the last TIMELINE_S."""
    end = plant_now(ctx)
    start = end - TIMELINE_S * NS
    try:
        rows = ctx.data.timeline(line.path, start, end)
    except ERRORS:
        return empty_figure(i18n.t("mes.unavailable"), 200)
    names = [short(a) for a in line.assets]
    height = 90 + 34 * len(names)
    bars: dict[str, list[tuple[str, int, int, str]]] = {}
    for r in rows:
        s, e = max(int(r["start_ns"]), start), min(int(r["end_ns"] or end), end)
        if e > s:
            bars.setdefault(r["state"], []).append((short(r["asset"]), s, e, reason_label(ctx, r["reason"])))
    if not bars:
        return empty_figure(i18n.t("line.no_intervals"), height)
    lay = chart_layout(height=height, barmode="overlay", bargap=0.25, uirevision=line.path)
    lay["xaxis"] = {**lay["xaxis"], "type": "date", "range": _local_strings(ctx, [start, end])}
    lay["yaxis"] = {
        **lay["yaxis"],
        "type": "category",
        "categoryorder": "array",
        "categoryarray": names,
        "autorange": "reversed",
    }
    lay["title"] = {
        "text": f"{i18n.t('line.timeline')} · {i18n.t('last_hours', n=TIMELINE_S // 3600)}",
        "x": 0.01,
    }
    fig = go.Figure(layout=lay)
    for state, items in bars.items():
        fig.add_trace(_state_bars(ctx, state, items))
    return fig


def _local_strings(ctx: Context, ts: list[int]) -> list[str]:
    return [str(x) for x in np.datetime_as_string(ctx.to_local(ts), unit="ms")]


def _state_bars(ctx: Context, state: str, items: list[tuple[str, int, int, str]]) -> go.Bar:
    label = i18n.state_label(state)
    return go.Bar(
        orientation="h",
        y=[i[0] for i in items],
        base=_local_strings(ctx, [i[1] for i in items]),
        x=[(i[2] - i[1]) / 1e6 for i in items],  # a date axis measures bar lengths in ms
        marker_color=theme.STATE_COLOURS.get(state, theme.STATE_COLOURS["unknown"]),
        name=label,
        customdata=[[ctx.local(i[1]), duration((i[2] - i[1]) / NS), i[3]] for i in items],
        hovertemplate="%{y} · "
        + label
        + "<br>%{customdata[0]} · %{customdata[1]}<br>%{customdata[2]}<extra></extra>",
    )


def product_label(ctx: Context, product: str) -> str:
    p = next((p for p in ctx.cfg.mes.products if p.id == product), None)
    return i18n.pair(p.name or p.id, p.name_zh) if p else product


def counts_table(ctx: Context, line: Line) -> list[Any]:
    """The line's work orders, newest first: planned against good quantity."""
    try:
        orders = ctx.data.line_orders(line.path, limit=20)
    except ERRORS:
        return [unavailable(i18n.t("mes.unavailable"))]
    if not orders:
        return [html.Div(i18n.t("line.no_orders"))]
    headers = [
        i18n.t("mes.order"),
        i18n.t("asset"),
        i18n.t("mes.product"),
        i18n.t("mes.status"),
        i18n.t("mes.planned"),
        i18n.t("mes.good"),
        i18n.t("line.progress"),
    ]
    rows = []
    for o in orders:
        unit = unit_label(o.unit)
        status = str(getattr(o.status, "value", o.status))
        key = f"line.order.{status}"
        rows.append(
            [
                o.id,
                short(o.asset),
                product_label(ctx, o.product),
                i18n.t(key) if key in i18n.TEXT else status,
                f"{o.quantity:,.0f} {unit}",
                f"{o.good:,.0f} {unit}",
                pct(o.good / o.quantity if o.quantity else None),
            ]
        )
    return [table(headers, rows, numeric={4, 5, 6}, id="line-counts-table")]


def energy_panel(ctx: Context, line: Line) -> list[Any]:
    """Energy per tonne of the line over the current shift so far ('–' while nothing was weighed)."""
    try:
        shift, start, end, k = ctx.data.shift_kpis_of(line.path)
    except ERRORS:
        return [unavailable(i18n.t("mes.unavailable"))]
    ept = k.energy_per_tonne
    undefined = ept is None or ept != ept
    big = "–" if undefined else f"{ept:,.0f} {unit_label('kWh/t')}"
    when = f"{shift} · " if shift else ""
    rows = [
        (i18n.t("current_shift"), f"{when}{ctx.local(start, '%H:%M')} – {ctx.local(end, '%H:%M')}"),
        (i18n.t("line.energy_kwh"), f"{k.energy_kwh:,.0f} {unit_label('kWh')}"),
        (i18n.t("line.output_t"), f"{k.mass_kg / 1000:,.2f} {unit_label('t')}" if k.mass_kg else "–"),
        (i18n.t("line.good_units"), f"{k.good_units:,.0f}"),
        (i18n.t("oee"), pct(k.oee) + (" ⚠" if k.above_ideal and k.oee > 1.0 else "")),
    ]
    kv: list[Any] = []
    for key, v in rows:
        kv += [html.Div(key, className="k"), html.Div(v, className="v")]
    out: list[Any] = [
        html.Div(big, className="sf-big", id="line-energy-value"),
        html.Div(kv, className="sf-kv"),
    ]
    if undefined:
        out.append(html.Div(i18n.t("line.energy_none"), style={"color": theme.MUTED, "fontSize": ".85rem"}))
    if k.above_ideal and k.oee > 1.0:
        out.append(
            html.Div("⚠ " + i18n.t("mes.above_ideal"), style={"color": theme.MUTED, "fontSize": ".85rem"})
        )
    return out


# -- the page ----------------------------------------------------------------------------------------------
def _panel(title: str, *children: Any) -> html.Div:
    return html.Div([html.H3(title), *children], className="sf-panel")


def layout_for(ctx: Context, path: str | None) -> html.Div:
    line = ctx.data.line(path)
    head: list[Any] = [dcc.Location(id=ids.LINE_LOC, refresh=False), html.H2(i18n.t("line.title"))]
    if line is None:
        return html.Div([*head, unavailable(i18n.t("line.unknown", path=path or ""))])
    signal = default_signal(ctx, line)
    controls = html.Div(
        [
            html.Div(
                [
                    html.Label(i18n.t("line.pick")),
                    dropdown(
                        [{"label": ln.name, "value": ln.path} for ln in ctx.data.lines],
                        line.path,
                        ids.LINE_PICK,
                    ),
                ]
            ),
            html.Div(
                [
                    html.Label(i18n.t("line.signal")),
                    dropdown(signals_of(ctx, line), signal, ids.LINE_SIGNAL),
                ]
            ),
        ],
        className="sf-controls",
        style=DARK_CONTROLS,
    )
    return html.Div(
        [
            *head,
            controls,
            _panel(
                i18n.t("line.trends"),
                graph(ids.LINE_TRENDS, trends_figure(ctx, line, signal)),
            ),
            html.Div(
                [
                    _panel(i18n.t("line.now"), html.Div(now_table(ctx, line, signal), id=ids.LINE_NOW)),
                    _panel(i18n.t("line.energy"), html.Div(energy_panel(ctx, line), id=ids.LINE_ENERGY)),
                ],
                className="sf-grid",
            ),
            _panel(
                i18n.t("line.timeline"),
                graph(ids.LINE_TIMELINE, timeline_figure(ctx, line)),
            ),
            _panel(i18n.t("line.counts"), html.Div(counts_table(ctx, line), id=ids.LINE_COUNTS)),
        ]
    )


def register(app: Dash, ctx: Context) -> None:
    def layout(line: str | None = None, **_query: str) -> html.Div:
        return layout_for(ctx, line)

    dash.register_page("line", path="/line", name="line", title="Shopfloor · Line", layout=layout, order=1)

    @app.callback(
        Output(ids.LINE_SIGNAL, "options"),
        Output(ids.LINE_SIGNAL, "value"),
        Output(ids.LINE_LOC, "search"),
        Input(ids.LINE_PICK, "value"),
        State(ids.LINE_SIGNAL, "value"),
        prevent_initial_call=True,
    )
    def pick(path: str | None, signal: str | None) -> Any:
        line = ctx.data.line(path)
        if line is None:
            return dash.no_update, dash.no_update, dash.no_update
        return signals_of(ctx, line), default_signal(ctx, line, signal), f"?line={quote(line.path, safe='')}"

    @app.callback(
        Output(ids.LINE_TRENDS, "figure"),
        Output(ids.LINE_NOW, "children"),
        Input(ids.LINE_PICK, "value"),
        Input(ids.LINE_SIGNAL, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,
    )
    def live(path: str | None, signal: str | None, _n: Any) -> Any:
        line = ctx.data.line(path)
        if line is None:
            return dash.no_update, dash.no_update
        return trends_figure(ctx, line, signal), now_table(ctx, line, signal)

    @app.callback(
        Output(ids.LINE_TIMELINE, "figure"),
        Output(ids.LINE_COUNTS, "children"),
        Output(ids.LINE_ENERGY, "children"),
        Input(ids.LINE_PICK, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,
    )
    def mes(path: str | None, _n: int | None) -> Any:
        line = ctx.data.line(path)
        if line is None:
            return dash.no_update, dash.no_update, dash.no_update
        return timeline_figure(ctx, line), counts_table(ctx, line), energy_panel(ctx, line)
