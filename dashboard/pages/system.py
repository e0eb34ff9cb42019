"""System page: the historian writer's counters and every connector's health, so nothing is lost unseen.

Counters are the ones the writer and acquisition store in the historian under ``<site>/_system/``.
"""

from __future__ import annotations

import math
from typing import Any

import dash
from dash import Dash, Input, Output, html

from dashboard import i18n, ids
from dashboard.context import Context, duration, table, unavailable
from dashboard.data import Unavailable

COUNTERS = ("produced", "written", "pending", "spooled", "replayed", "quarantined", "dropped", "retries")
NS = 1_000_000_000


def _n(v: float | None) -> str:
    if v is None or v != v:
        return "–"
    return f"{v:,.0f}"


def writer_panel(ctx: Context) -> list[Any]:
    try:
        c, ts = ctx.data.writer_counters()
    except Unavailable as exc:
        return [unavailable(i18n.t("sys.historian_down", why=str(exc)))]
    if not c:
        return [html.Div(i18n.t("no_data"))]
    rows = [[i18n.t(f"sys.{k}"), _n(c.get(k))] for k in COUNTERS if k in c]
    if "spool_bytes" in c:
        rows.append([i18n.t("sys.spool_bytes"), f"{c['spool_bytes'] / 1e6:.2f} MB"])
    online = c.get("online")
    rows.append([i18n.t("sys.online"), i18n.t("sys.yes") if online == 1 else i18n.t("sys.no")])
    return [
        table([i18n.t("signal"), i18n.t("value")], rows, numeric={1}, id="writer-table"),
        html.P(i18n.t("sys.nothing_lost"), style={"color": "#8b949e", "fontSize": ".85rem"}),
        html.P(f"{i18n.t('time')}: {ctx.local(ts)}", style={"color": "#8b949e", "fontSize": ".85rem"}),
    ]


def sources_panel(ctx: Context) -> list[Any]:
    try:
        src = ctx.data.sources()
    except Unavailable as exc:
        return [unavailable(str(exc))]
    if not src:
        return [html.Div(i18n.t("no_data"))]
    rows = []
    for name, d in sorted(src.items()):
        age = d.get("data_age_s")
        rows.append(
            [
                name,
                i18n.t("sys.yes") if d.get("connected") == 1 else i18n.t("sys.no"),
                _n(d.get("samples")),
                "–" if d.get("samples_per_s") is None else f"{d['samples_per_s']:,.1f}",
                _n(d.get("errors")),
                _n(d.get("reconnects")),
                _n(d.get("gaps")),
                _n(d.get("failed_items")),
                duration(None if age is None or math.isnan(age) else age),
            ]
        )
    headers = [
        i18n.t("sys.sources"),
        i18n.t("sys.connected"),
        i18n.t("sys.samples"),
        i18n.t("sys.rate"),
        i18n.t("sys.errors"),
        i18n.t("sys.reconnects"),
        i18n.t("sys.gaps"),
        i18n.t("sys.failed_items"),
        i18n.t("data_age"),
    ]
    return [table(headers, rows, numeric={2, 3, 4, 5, 6, 7}, id="sources-table")]


def register(app: Dash, ctx: Context) -> None:
    def layout(**_query: str) -> html.Div:
        return html.Div(
            [
                html.H2(i18n.t("sys.title")),
                html.Div(
                    [
                        html.Div(
                            [html.H3(i18n.t("sys.writer")), html.Div(writer_panel(ctx), id=ids.SYS_WRITER)],
                            className="sf-panel",
                        ),
                        html.Div(
                            [
                                html.H3(i18n.t("sys.sources")),
                                html.Div(sources_panel(ctx), id=ids.SYS_SOURCES),
                            ],
                            className="sf-panel",
                        ),
                    ],
                    className="sf-grid",
                ),
            ]
        )

    dash.register_page(
        "system", path="/system", name="system", title="Shopfloor · System", layout=layout, order=6
    )

    @app.callback(
        Output(ids.SYS_WRITER, "children"),
        Output(ids.SYS_SOURCES, "children"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,  # the layout drew it: the first tick refreshes
    )
    def refresh(_n: int | None) -> tuple[list[Any], list[Any]]:
        return writer_panel(ctx), sources_panel(ctx)
