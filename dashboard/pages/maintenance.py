"""Maintenance page: the open and acknowledged maintenance requests, most urgent first, each with what the
analytics saw (failure mode, RUL band, score, evidence) and buttons to acknowledge or close it.

Acknowledging and closing change the MES, so the server checks the role of whoever clicks (engineer up).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

import dash
from dash import ALL, Dash, Input, Output, State, dcc, html
from sqlalchemy.exc import SQLAlchemyError

from dashboard import i18n, ids
from dashboard.context import Context, unavailable
from dashboard.data import Unavailable
from dashboard.pages.asset import band, hours, kind_label, mode_label, num, status_label
from mes.records import Conflict, NotFound

ERRORS = (Unavailable, SQLAlchemyError)
ACK_TYPE = ids.ack_button(0)["type"]
CLOSE_TYPE = ids.close_button(0)["type"]


def urgency(r: dict[str, Any]) -> tuple[float, int, float, int]:
    """Smallest RUL first (none last); equipment before sensor faults; then higher score, then older."""
    rul = r.get("rul_hours")
    rul = math.inf if rul is None or rul != rul else float(rul)
    score = r.get("score")
    score = 0.0 if score is None or score != score else float(score)
    return rul, 0 if r.get("kind") == "equipment" else 1, -score, int(r.get("opened_ns") or 0)


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=urgency)


def _status(r: dict[str, Any]) -> str:
    if r["status"] == "acknowledged":
        return i18n.t("mnt.acked", who=r["updated_by"])
    return status_label(r["status"])


def _actions(r: dict[str, Any], may: bool) -> list[html.Button]:
    out = []
    if r["status"] == "open":
        out.append(
            html.Button(
                i18n.t("mnt.ack"),
                id=ids.ack_button(r["id"]),
                n_clicks=0,
                disabled=not may,
                className="sf-button primary",
            )
        )
    out.append(
        html.Button(
            i18n.t("mnt.close"),
            id=ids.close_button(r["id"]),
            n_clicks=0,
            disabled=not may,
            className="sf-button",
        )
    )
    return out


def row_view(ctx: Context, r: dict[str, Any], may: bool) -> html.Tr:
    evidence = ", ".join(str(e) for e in (r.get("evidence") or [])[:6]) or "–"
    cells: list[Any] = [
        dcc.Link(
            r["asset"].rsplit("/", 1)[-1], href=f"/asset?path={quote(r['asset'], safe='')}", title=r["asset"]
        ),
        kind_label(r["kind"]),
        mode_label(r["subject"]),
        ctx.local(r["opened_ns"]),
        hours(r["rul_hours"]),
        band(r["rul_low_hours"], r["rul_high_hours"]),
        num(r["score"]),
        evidence,
        _status(r),
        html.Div(_actions(r, may), style={"display": "flex", "gap": ".4rem"}),
    ]
    numeric = {4, 6}
    marks: dict[str, Any] = {"data-request": str(r["id"]), "data-status": r["status"]}
    return html.Tr(
        [html.Td(c, className="num" if i in numeric else None) for i, c in enumerate(cells)],
        **marks,
    )


def requests_view(ctx: Context) -> list[Any]:
    """The table of open and acknowledged requests, most urgent first."""
    try:
        rows = rank(ctx.data.requests(("open", "acknowledged")))
    except ERRORS:
        return [unavailable(i18n.t("mes.unavailable"))]
    if not rows:
        return [html.Div(i18n.t("mnt.none"))]
    may = ctx.may("engineer")
    headers = [
        i18n.t("asset"),
        i18n.t("mnt.kind"),
        i18n.t("mnt.mode"),
        i18n.t("mnt.opened"),
        i18n.t("mnt.rul"),
        i18n.t("asset.rul_band"),
        i18n.t("mnt.score"),
        i18n.t("mnt.evidence"),
        i18n.t("mnt.status"),
        i18n.t("mnt.actions"),
    ]
    return [
        html.Table(
            [
                html.Thead(html.Tr([html.Th(h) for h in headers])),
                html.Tbody([row_view(ctx, r, may) for r in rows]),
            ],
            className="sf-table",
            id="mnt-requests-table",
        )
    ]


def act(ctx: Context, kind: str, request_id: int) -> tuple[str, bool]:
    """Acknowledge or close a request as the logged-in user: (the message to show, whether it changed)."""
    user = ctx.user()
    if user is None or not ctx.may("engineer"):
        return i18n.t("auth.forbidden"), False
    try:
        if kind == ACK_TYPE:
            ctx.data.acknowledge(request_id, user.name)
            return i18n.t("mnt.done.acknowledged", id=request_id, who=user.name), True
        ctx.data.close_request(request_id, user.name)
        return i18n.t("mnt.done.closed", id=request_id, who=user.name), True
    except NotFound:
        return i18n.t("mnt.missing", id=request_id), True
    except Conflict:  # someone else moved it meanwhile: say what it is now
        return i18n.t("mnt.refused", id=request_id, status=status_label(_status_now(ctx, request_id))), True
    except ERRORS:
        return i18n.t("mes.unavailable"), False


def _status_now(ctx: Context, request_id: int) -> str:
    try:
        return str(ctx.data.repo.request(request_id)["status"]) if ctx.data.repo else "?"
    except (NotFound, *ERRORS):
        return "?"


def register(app: Dash, ctx: Context) -> None:
    def layout(**_query: str) -> html.Div:
        return html.Div(
            [
                html.H2(i18n.t("mnt.title")),
                html.P(i18n.t("mnt.ranked"), style={"color": "#8b949e", "fontSize": ".85rem"}),
                html.Div(id=ids.MNT_MESSAGE, className="sf-msg"),
                dcc.Store(id=ids.MNT_REFRESH, data=0),
                html.Div(requests_view(ctx), id=ids.MNT_TABLE, className="sf-panel"),
            ]
        )

    dash.register_page(
        "maintenance",
        path="/maintenance",
        name="maintenance",
        title="Shopfloor · Maintenance",
        layout=layout,
        order=3,
    )

    @app.callback(
        Output(ids.MNT_TABLE, "children"),
        Input(ids.TICK, "n_intervals"),
        Input(ids.MNT_REFRESH, "data"),
        prevent_initial_call=True,
    )
    def refresh(_n: Any, _changed: Any) -> list[Any]:
        return requests_view(ctx)

    @app.callback(
        Output(ids.MNT_MESSAGE, "children"),
        Output(ids.MNT_REFRESH, "data"),
        Input({"type": ACK_TYPE, "id": ALL}, "n_clicks"),
        Input({"type": CLOSE_TYPE, "id": ALL}, "n_clicks"),
        State(ids.MNT_REFRESH, "data"),
        prevent_initial_call=True,
    )
    def clicked(_acks: list[Any], _closes: list[Any], changed: int | None) -> Any:
        trig = dash.ctx.triggered_id
        if not isinstance(trig, dict) or not any(t.get("value") for t in dash.ctx.triggered):
            return dash.no_update, dash.no_update  # buttons drawn anew, not clicked
        message, moved = act(ctx, str(trig.get("type")), int(trig.get("id", -1)))
        return message, (changed or 0) + 1 if moved else dash.no_update
