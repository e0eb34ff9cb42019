"""The Dash application: the shell (navigation, language, user, plant clock) and the registered pages.

``create_app`` builds a fresh app per call (callbacks are bound to it, not to a module-level default).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import dash
from dash import Dash, Input, Output, State, dcc, html
from flask import current_app

from dashboard import auth, i18n, ids
from dashboard.context import Context

PAGES = ("plant", "line", "asset", "maintenance", "quality", "mes", "system")
ASSETS = Path(__file__).with_name("assets")


def _bind_layouts(app: Dash) -> None:
    """Dash keeps one page registry per process: each app keeps its own page layouts on its server, and
    the registry's layout asks the app serving the request for its own (two apps in one process, as in
    the tests, each render with their own data)."""
    own = {}
    for page in dash.page_registry.values():
        layout = page["layout"]
        if getattr(layout, "_shopfloor_dispatch", False):
            layout = page["_shopfloor_layout"]
        own[page["module"]] = layout
    app.server.config["SHOPFLOOR_LAYOUTS"] = own

    for page in dash.page_registry.values():
        module = page["module"]
        page["_shopfloor_layout"] = own[module]

        def dispatch(module: str = module, **query: str) -> object:
            return current_app.config["SHOPFLOOR_LAYOUTS"][module](**query)

        dispatch._shopfloor_dispatch = True  # type: ignore[attr-defined]
        page["layout"] = dispatch


def create_app(ctx: Context, *, key: bytes) -> Dash:
    """The dashboard for ``ctx``, with login in front of every route (``key`` signs the sessions)."""
    dcfg = ctx.data.dash
    i18n.DEFAULT[0] = dcfg.language
    app = Dash(
        __name__,
        use_pages=True,
        pages_folder="",
        assets_folder=str(ASSETS),
        title="Shopfloor",
        update_title=None,  # no "Updating..." flicker in the tab title every refresh
        suppress_callback_exceptions=True,
        serve_locally=True,  # no CDN: plants are often offline
    )
    auth.install(
        app.server,
        ctx.users,
        key=key,
        secure_cookies=dcfg.secure_cookies,
        session_hours=dcfg.session_hours,
    )
    for name in PAGES:
        importlib.import_module(f"dashboard.pages.{name}").register(app, ctx)
    _bind_layouts(app)

    def shell() -> html.Div:
        user = ctx.user()
        who = f"{user.name} · {i18n.t('role.' + user.role)}" if user else ""
        return html.Div(
            [
                dcc.Location(id=ids.URL),
                dcc.Interval(id=ids.TICK, interval=int(dcfg.refresh_s * 1000)),
                html.Div(
                    [
                        html.Div(i18n.t("app.title"), className="sf-title"),
                        html.Nav(
                            [
                                dcc.Link(
                                    i18n.t(f"nav.{p['name']}"), href=p["relative_path"], id=f"nav-{p['name']}"
                                )
                                for p in dash.page_registry.values()
                            ],
                            className="sf-nav",
                            id=ids.NAV,
                        ),
                        html.Div(
                            [
                                html.Span(id=ids.CLOCK),
                                html.Span(who, id=ids.USER),
                                html.Button(i18n.t("lang.switch"), id=ids.LANG_SWITCH, n_clicks=0),
                                html.A(i18n.t("auth.logout"), href="/logout", id="logout"),
                            ],
                            className="sf-right",
                        ),
                    ],
                    className="sf-header",
                ),
                html.Div(id=ids.BANNER, className="sf-banner"),
                html.Div(dash.page_container, className="sf-page"),
                html.Div(id=ids.LANG_DONE, style={"display": "none"}),
            ]
        )

    app.layout = shell  # a function: built per page load, in the user's language

    @app.callback(
        Output(ids.CLOCK, "children"), Output(ids.BANNER, "children"), Input(ids.TICK, "n_intervals")
    )
    def clock(_n: int | None) -> tuple[str, str]:
        try:
            now = ctx.data.now_ns()
            stale = ctx.data.plant_stale()
        except Exception as exc:  # the banner is where a dead store is shown
            return "", i18n.t("sys.historian_down", why=str(exc)[:200])
        banner = i18n.t("stale") + " — " + i18n.t("no_data") if stale else ""
        return f"{i18n.t('plant_clock')} {ctx.local(now)}", banner

    # the language lives in a cookie, so every layout and callback is built in it; switching reloads
    app.clientside_callback(
        f"""function(n, lang) {{
            if (!n) return window.dash_clientside.no_update;
            const next = lang === 'zh' ? 'en' : 'zh';
            document.cookie = '{i18n.COOKIE}=' + next + '; path=/; max-age=31536000; samesite=lax';
            window.location.reload();
            return next;
        }}""",
        Output(ids.LANG_DONE, "children"),
        Input(ids.LANG_SWITCH, "n_clicks"),
        State(ids.LANG_DONE, "title"),
    )

    @app.callback(Output(ids.LANG_DONE, "title"), Input(ids.URL, "pathname"))
    def lang(_p: str | None) -> str:
        return i18n.current()

    return app
