"""MES page: work orders, OEE and its loss waterfall by shift, and the downtime Pareto by reason, for the
whole site or one line over the last hours.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Dash, Input, Output, html

from dashboard import i18n, ids, theme
from dashboard.context import NS, Context, duration, pct, table, unavailable
from dashboard.data import Unavailable
from dashboard.widgets import dropdown, graph, message_figure
from mes.kpi import Kpis
from mes.losses import UNASSIGNED, StateCategory
from mes.records import NotFound

log = logging.getLogger(__name__)
WINDOWS_H = (8, 24, 72)
DEFAULT_WINDOW_H = 24
ALL = "all"  # the shift picker's value for the whole window
HEADLINE = ("oee", "availability", "effectiveness", "quality_ratio")

Shift = tuple[str, int, int, Kpis]


# -- downtime Pareto -----------------------------------------------------------------------------------
def pareto_rows(stops: list[dict[str, Any]], start_ns: int, end_ns: int) -> list[tuple[str, float, int]]:
    """(reason, seconds, stops) of the non-running intervals cut to [start, end), longest reason first.

    An open interval lasts until ``end_ns``; a stop without a reason counts as unassigned."""
    ns: dict[str, int] = {}
    count: dict[str, int] = {}
    for s in stops:
        if s["state"] == StateCategory.RUNNING.value:
            continue
        a = max(int(s["start_ns"]), start_ns)
        b = min(end_ns if s["end_ns"] is None else int(s["end_ns"]), end_ns)
        if b <= a:
            continue
        key = s["reason"] or UNASSIGNED
        ns[key] = ns.get(key, 0) + (b - a)
        count[key] = count.get(key, 0) + 1
    return sorted(((k, v / NS, count[k]) for k, v in ns.items()), key=lambda r: (-r[1], r[0]))


def reason_label(ctx: Context, reason: str) -> str:
    """A reason of the MES reason tree in the reader's language (its id if the tree does not know it)."""
    if reason == UNASSIGNED:
        return i18n.t("mes.unassigned")
    node = next((r for r in ctx.cfg.mes.reasons if r.id == reason), None)
    return i18n.pair(node.en, node.zh) if node else reason


def _unique(labels: list[str], keys: list[str]) -> list[str]:
    """Bar labels, the key appended where two reasons read the same (a category axis would merge them)."""
    seen = {lb for lb in labels if labels.count(lb) > 1}
    return [f"{lb} ({k})" if lb in seen else lb for lb, k in zip(labels, keys, strict=True)]


def pareto_figure(ctx: Context, rows: list[tuple[str, float, int]], meta: dict[str, Any]) -> go.Figure:
    if not rows:
        fig = message_figure(i18n.t("mes.no_stops"))
        fig.update_layout(meta=meta)
        return fig
    keys = [r[0] for r in rows]
    labels = _unique([reason_label(ctx, k) for k in keys], keys)
    secs = np.array([r[1] for r in rows])
    cum = 100 * np.cumsum(secs) / secs.sum()
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=labels,
            y=secs / 60,
            name=i18n.t("mes.duration"),
            marker_color=theme.BAD,
            customdata=[[s, n, k] for k, s, n in rows],
            hovertemplate=f"%{{x}}<br>%{{y:.1f}} {i18n.t('min')}<br>{i18n.t('mes.stops')}: %{{customdata[1]}}"
            "<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=labels,
            y=cum,
            yaxis="y2",
            mode="lines+markers",
            name=i18n.t("mes.cumulative"),
            line={"color": theme.WARN},
            hovertemplate="%{x}<br>%{y:.1f} %<extra></extra>",
        )
    )
    fig.update_layout(
        **theme.layout(
            title=i18n.t("mes.pareto"),
            height=400,
            meta=meta,
            yaxis={"title": {"text": f"{i18n.t('mes.duration')} ({i18n.t('min')})"}, "gridcolor": "#21262d"},
            yaxis2={
                "overlaying": "y",
                "side": "right",
                "range": [0, 105],
                "dtick": 20,
                "ticksuffix": " %",
                "showgrid": False,
            },
        )
    )
    return fig


# -- OEE and its waterfall -----------------------------------------------------------------------------
def waterfall_figure(k: Kpis, title: str) -> go.Figure:
    """Calendar time down to fully productive time: totals at their value, losses as drops (hours)."""
    steps = k.waterfall()
    known = [v == v for _, v, _ in steps]
    fig = go.Figure(
        go.Waterfall(
            x=[i18n.kpi_label(s) for s, _, _ in steps],
            measure=["absolute" if kind == "total" else "relative" for _, _, kind in steps],
            y=[
                0.0 if not ok else (v if kind == "total" else -v) / 3600
                for (_, v, kind), ok in zip(steps, known, strict=True)
            ],
            text=[
                duration(v) if ok else i18n.t("mes.unknown_step")
                for (_, v, _), ok in zip(steps, known, strict=True)
            ],
            customdata=[v if ok else None for (_, v, _), ok in zip(steps, known, strict=True)],
            textposition="outside",
            decreasing={"marker": {"color": theme.BAD}},
            increasing={"marker": {"color": theme.GOOD}},
            totals={"marker": {"color": theme.ACCENT}},
            connector={"line": {"color": theme.MUTED}},
            hovertemplate="%{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(**theme.layout(title=title, height=420, showlegend=False))
    fig.update_yaxes(title_text=i18n.t("mes.hours"))
    return fig


def headline(k: Kpis) -> list[Any]:
    """OEE and its three factors, big; and why they are not known when they are not."""
    out: list[Any] = [
        html.Div(
            [
                html.Div(
                    [
                        html.Div(i18n.kpi_label(name), className="k"),
                        html.Div(pct(getattr(k, name)), className="sf-big"),
                    ]
                )
                for name in HEADLINE
            ],
            className="sf-controls",
        )
    ]
    if k.units_without_ideal > 0:
        out.append(html.P(i18n.t("mes.no_ideal", n=f"{k.units_without_ideal:,.0f}"), className="sf-msg"))
    if k.above_ideal:
        out.append(html.P(i18n.t("mes.above_ideal"), className="sf-msg", id=ids.MES_ABOVE_IDEAL))
    return out


def _from_to(ctx: Context, start_ns: int, end_ns: int) -> str:
    """12-01 08:00 – 16:00, or 12-01 14:50 – 12-02 14:50 across midnight."""
    same_day = ctx.local(start_ns, "%Y-%m-%d") == ctx.local(end_ns - 1, "%Y-%m-%d")
    return (
        f"{ctx.local(start_ns, '%m-%d %H:%M')} – {ctx.local(end_ns, '%H:%M' if same_day else '%m-%d %H:%M')}"
    )


def shifts_table(ctx: Context, shifts: list[Shift] | None) -> list[Any]:
    if shifts is None:
        return [html.P(i18n.t("mes.no_shifts"))]
    rows = [
        [
            name,
            _from_to(ctx, s, e),
            *(pct(getattr(k, f)) + (" ⚠" if k.above_ideal and getattr(k, f) > 1.0 else "") for f in HEADLINE),
            f"{k.good_units:,.0f}",
            f"{k.scrap_units:,.0f}",
        ]
        for name, s, e, k in shifts
    ]
    headers = [
        i18n.t("shift"),
        i18n.t("mes.from_to"),
        *(i18n.kpi_label(f) for f in HEADLINE),
        i18n.t("mes.good"),
        i18n.t("mes.scrap"),
    ]
    return [table(headers, rows, numeric={2, 3, 4, 5, 6, 7}, id="mes-shifts-table")]


def shift_options(ctx: Context, shifts: list[Shift] | None) -> list[dict[str, str]]:
    opts = [{"label": i18n.t("mes.whole_window"), "value": ALL}]
    return opts + [{"label": f"{n} · {_from_to(ctx, s, e)}", "value": str(s)} for n, s, e, _ in shifts or []]


def chosen(report: dict[str, Any], shift: str | None) -> tuple[str | None, Kpis]:
    """The shift picked (name, KPIs), or (None, the whole window's) when none or it left the window."""
    for name, s, _, k in report["shifts"] or []:
        if str(s) == shift:
            return name, k
    return None, report["window"]


def mes_outputs(
    ctx: Context, scope: str, hours: float, shift: str | None
) -> tuple[list[dict[str, str]], list[Any], go.Figure, list[Any], go.Figure, str]:
    """(shift options, headline, waterfall, shifts table, Pareto, message) of ``scope`` over ``hours``."""
    try:
        rep = ctx.data.mes_report(scope, hours)
    except NotFound:
        return _failed(i18n.t("mes.no_assets"))
    except Unavailable as exc:
        log.warning("dashboard: MES report not available: %s", exc)
        return _failed(i18n.t("mes.unavailable"))
    name, k = chosen(rep, shift)
    start, end = (k.start_ns, k.end_ns) if name else (rep["start"], rep["end"])
    title = f"{i18n.t('mes.waterfall')} · {name + ' · ' if name else ''}{_from_to(ctx, start, end)}"
    meta = {"start_ns": rep["start"], "end_ns": rep["end"], "scope": scope}
    note = i18n.t(
        "mes.window_note",
        start=ctx.local(rep["start"], "%m-%d %H:%M"),
        end=ctx.local(rep["end"], "%m-%d %H:%M"),
        n=len(rep["assets"]),
    )
    wf = waterfall_figure(k, title)
    wf.update_layout(meta={**meta, "shift": name, "shift_start_ns": start, "shift_end_ns": end})
    return (
        shift_options(ctx, rep["shifts"]),
        [*headline(k), html.P(note, style={"color": theme.MUTED})],
        wf,
        shifts_table(ctx, rep["shifts"]),
        pareto_figure(ctx, pareto_rows(rep["stops"], rep["start"], rep["end"]), meta),
        "",
    )


def _failed(msg: str) -> tuple[list[dict[str, str]], list[Any], go.Figure, list[Any], go.Figure, str]:
    return (
        [{"label": i18n.t("mes.whole_window"), "value": ALL}],
        [unavailable(msg)],
        message_figure(msg),
        [],
        message_figure(msg),
        msg,
    )


# -- work orders ---------------------------------------------------------------------------------------
def product_label(ctx: Context, product: str) -> str:
    p = next((p for p in ctx.cfg.mes.products if p.id == product), None)
    name = i18n.pair(p.name, p.name_zh) if p else ""
    return f"{product} · {name}" if name else product


def _qty(q: float, unit: str) -> str:
    key = f"unit.{unit}"
    return f"{q:,.0f} {i18n.t(key) if key in i18n.TEXT else unit}"


def orders_view(ctx: Context, scope: str) -> list[Any]:
    try:
        orders = ctx.data.order_rows(scope)
    except Exception as exc:  # the MES is away: say so, never a traceback
        log.warning("dashboard: orders not available: %s", exc)
        return [unavailable(i18n.t("mes.unavailable"))]
    if not orders:
        return [html.P(i18n.t("mes.no_orders"))]
    rows = [
        [
            o["id"],
            product_label(ctx, o["product"]),
            "/".join(o["asset"].split("/")[-2:]),
            i18n.t(f"mes.status.{o['status']}"),
            _qty(o["quantity"], o["unit"]),
            _qty(o["good"], o["unit"]),
            _qty(o["scrap"], o["unit"]),
            pct(o["good"] / o["quantity"] if o["quantity"] else math.nan),
        ]
        for o in orders
    ]
    headers = [
        i18n.t("mes.order"),
        i18n.t("mes.product"),
        i18n.t("asset"),
        i18n.t("mes.status"),
        i18n.t("mes.planned"),
        i18n.t("mes.good"),
        i18n.t("mes.scrap"),
        i18n.t("mes.progress"),
    ]
    return [table(headers, rows, numeric={4, 5, 6, 7}, id="mes-orders-table")]


# -- the page ------------------------------------------------------------------------------------------
def scope_options(ctx: Context) -> list[dict[str, str]]:
    return [{"label": i18n.t("mes.site"), "value": ctx.cfg.site}] + [
        {"label": ln.name, "value": ln.path} for ln in ctx.data.lines
    ]


def _picker(label: str, component: Any) -> html.Div:
    return html.Div([html.Label(label), component])


def _panel(title: str, *children: Any) -> html.Div:
    return html.Div([html.H3(title), *children], className="sf-panel")


def page(ctx: Context, query: dict[str, str]) -> html.Div:
    scopes = scope_options(ctx)
    scope = query.get("scope") if query.get("scope") in {o["value"] for o in scopes} else ctx.cfg.site
    opts, kpis, wf, shifts, pareto, msg = mes_outputs(ctx, scope, DEFAULT_WINDOW_H, ALL)
    controls = html.Div(
        [
            _picker(i18n.t("mes.scope"), dropdown(scopes, scope, ids.MES_SCOPE)),
            _picker(
                i18n.t("mes.window"),
                dropdown(
                    [{"label": i18n.t("last_hours", n=h), "value": h} for h in WINDOWS_H],
                    DEFAULT_WINDOW_H,
                    ids.MES_WINDOW,
                ),
            ),
            _picker(i18n.t("mes.shift_pick"), dropdown(opts, ALL, ids.MES_SHIFT)),
        ],
        className="sf-controls",
    )
    return html.Div(
        [
            html.H2(i18n.t("mes.title")),
            controls,
            html.Div(msg, id=ids.MES_MESSAGE, className="sf-msg"),
            _panel(i18n.t("oee"), html.Div(kpis, id=ids.MES_KPIS)),
            _panel(i18n.t("mes.waterfall"), graph(ids.MES_WATERFALL, wf)),
            html.Div(
                [
                    _panel(
                        i18n.t("mes.pareto"),
                        graph(ids.MES_PARETO, pareto),
                        html.P(i18n.t("mes.pareto_note"), style={"color": theme.MUTED, "fontSize": ".85rem"}),
                    ),
                    _panel(i18n.t("mes.by_shift"), html.Div(shifts, id=ids.MES_SHIFTS)),
                ],
                className="sf-grid",
            ),
            _panel(i18n.t("mes.orders"), html.Div(orders_view(ctx, scope), id=ids.MES_ORDERS)),
        ]
    )


def register(app: Dash, ctx: Context) -> None:
    def layout(**query: str) -> html.Div:
        return page(ctx, query)

    dash.register_page("mes", path="/mes", name="mes", title="Shopfloor · MES", layout=layout, order=5)

    @app.callback(
        Output(ids.MES_SHIFT, "options"),
        Output(ids.MES_KPIS, "children"),
        Output(ids.MES_WATERFALL, "figure"),
        Output(ids.MES_SHIFTS, "children"),
        Output(ids.MES_PARETO, "figure"),
        Output(ids.MES_MESSAGE, "children"),
        Input(ids.MES_SCOPE, "value"),
        Input(ids.MES_WINDOW, "value"),
        Input(ids.MES_SHIFT, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,  # the layout drew it: the first tick refreshes
    )
    def refresh(
        scope: str | None, hours: float | None, shift: str | None, _n: int | None
    ) -> tuple[list[dict[str, str]], list[Any], go.Figure, list[Any], go.Figure, str]:
        return mes_outputs(ctx, scope or ctx.cfg.site, hours or DEFAULT_WINDOW_H, shift)

    @app.callback(
        Output(ids.MES_ORDERS, "children"),
        Input(ids.MES_SCOPE, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,  # the layout drew it: the first tick refreshes
    )
    def orders(scope: str | None, _n: int | None) -> list[Any]:
        return orders_view(ctx, scope or ctx.cfg.site)
