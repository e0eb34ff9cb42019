"""Maintenance page (being built)."""

from __future__ import annotations

import dash
from dash import Dash, html

from dashboard import i18n
from dashboard.context import Context


def register(app: Dash, ctx: Context) -> None:
    def layout(**_query: str) -> html.Div:
        return html.Div([html.H2(i18n.t("nav.maintenance"))])

    dash.register_page("maintenance", path="/maintenance", name="maintenance", layout=layout, order=3)
