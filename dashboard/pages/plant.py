"""Plant page: both lines as a schematic in flow order, every asset a live tile you can click through.

A tile shows state (its colour), current-shift OEE, an active alarm or alert, the health index and data age.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
from dash import Dash, Input, Output, html

from dashboard import i18n, ids, theme
from dashboard.context import Context, duration, unavailable
from dashboard.data import Tile, Unavailable


def tile_view(t: Tile) -> html.A:
    classes = ["sf-tile"]
    if t.stale:
        classes.append("stale")
    elif t.alarm:
        classes.append("alarm")
    badges = []
    if t.alarm and not t.stale:
        badges.append(html.Span(i18n.t("alarm"), className="badge"))
    if t.alert:
        badges.append(html.Span(i18n.t("alert"), className="badge"))
    if t.sensor_fault:
        badges.append(html.Span(i18n.t("sensor_fault"), className="badge sensor"))
    state = i18n.t("stale") if t.stale else i18n.state_label(t.state)
    health = "–" if t.health is None or t.stale else f"{t.health:.2f}"
    oee = "–" if t.oee is None else f"{100 * t.oee:.0f} %"
    oee_span = html.Span(f"{i18n.t('oee.short')} {oee}")
    if t.oee_over:
        oee_span = html.Span(
            f"{i18n.t('oee.short')} {oee} ⚠", title=i18n.t("mes.above_ideal"), className="over"
        )
    return html.A(
        [
            html.Div(t.name, className="name", title=t.path),
            html.Div(f"{t.line.rsplit('/', 1)[-1]} · {t.description}", className="desc", title=t.description),
            html.Div(state, className="state", **{"data-state": "stale" if t.stale else t.state}),
            html.Div(
                [oee_span, html.Span(f"♥ {health}", title=i18n.t("health"))],
                className="facts",
            ),
            html.Div(
                f"{i18n.t('data_age')} {duration(t.age_s)}",
                className="facts",
            ),
            html.Div(badges, className="badges"),
        ],
        href=f"/asset?path={quote(t.path, safe='')}",
        className=" ".join(classes),
        id=ids.tile(t.path),
        style={"background": theme.STATE_COLOURS.get(t.state, theme.STATE_COLOURS["unknown"])},
        **{"data-asset": t.path},
    )


def plant_map(ctx: Context) -> list[Any]:
    try:
        tiles = {t.path: t for t in ctx.data.tiles()}
    except Unavailable as exc:
        return [unavailable(i18n.t("sys.historian_down", why=str(exc)))]
    out: list[Any] = []
    for ln in ctx.data.areas:
        flow: list[Any] = []
        for i, path in enumerate(ln.assets):
            if i:
                flow.append(html.Span("→", className="sf-arrow"))
            flow.append(tile_view(tiles[path]))
        out.append(
            html.Div(
                [html.Div(ln.name, className="sf-line-name"), html.Div(flow, className="sf-flow")],
                className="sf-line",
                **{"data-line": ln.path},
            )
        )
    return out


def legend() -> html.Div:
    items = [
        html.Span([html.Span(className="sw", style={"background": colour}), i18n.state_label(state)])
        for state, colour in theme.STATE_COLOURS.items()
    ]
    items.append(html.Span([html.Span(className="sw", style={"background": theme.STALE}), i18n.t("stale")]))
    return html.Div([*items, html.Span(i18n.t("plant.legend"))], className="sf-legend")


def register(app: Dash, ctx: Context) -> None:
    def layout(**_query: str) -> html.Div:
        return html.Div(
            [
                html.H2(i18n.t("plant.title")),
                legend(),
                html.Div(plant_map(ctx), id=ids.PLANT_MAP),
            ]
        )

    dash.register_page("plant", path="/", name="plant", title="Shopfloor", layout=layout, order=0)

    @app.callback(Output(ids.PLANT_MAP, "children"), Input(ids.TICK, "n_intervals"))
    def refresh(_n: int | None) -> list[Any]:
        return plant_map(ctx)
