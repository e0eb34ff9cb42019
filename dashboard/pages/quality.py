"""Quality page: a control chart of a process signal with limits from a stated baseline, its rule violations
and capability, defect predictions, surface inspection results and a lot's genealogy from melt to coil.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, html

from analytics import capability as capmod
from analytics import spc, spc_rules
from dashboard import i18n, ids, theme
from dashboard.context import NS, Context, pct, table, unavailable
from dashboard.data import Unavailable, bucket_ns
from dashboard.widgets import chart_layout, dropdown, graph, message_figure
from mes.lots import LotNotFound

log = logging.getLogger(__name__)
POINTS = 700  # bucket means per chart: the store aggregates, the page never pulls raw history
WINDOWS_H = (8, 24, 72)
BASELINES_H = (1, 2, 4)  # the baseline is the first N hours of the data shown; limits come from it only
RULESETS: dict[str, tuple[spc_rules.Rule, ...]] = {
    "nelson": spc_rules.NELSON,
    "western_electric": spc_rules.WESTERN_ELECTRIC,
}
CONFIDENCE = 0.95
LOTS_SHOWN = 200


# -- the control chart -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Judged:
    """Bucket means charted against limits from the first ``n_base`` of them (the baseline) only.

    ``chart`` is None when the baseline cannot give limits (``problem``: "too_small" or "flat");
    ``violations`` holds each triggered rule with the indexes after the baseline where it fires.
    """

    ts: np.ndarray
    x: np.ndarray
    n_base: int
    chart: spc.ControlChart | None
    problem: str
    violations: list[tuple[spc_rules.Rule, np.ndarray]]


def judge(ts: np.ndarray, x: np.ndarray, base_end_ns: int, rules: tuple[spc_rules.Rule, ...]) -> Judged:
    """An individuals chart of ``x``: limits from the points before ``base_end_ns``, rules judged after it."""
    ok = np.isfinite(x)
    ts, x = np.asarray(ts, np.int64)[ok], np.asarray(x, np.float64)[ok]
    n_base = int(np.searchsorted(ts, base_end_ns, side="left"))
    if n_base < spc.MIN_BASELINE_POINTS:
        return Judged(ts, x, n_base, None, "too_small", [])
    try:
        base = spc.individuals_baseline(x[:n_base], source=f"first {n_base} points")
    except ValueError:
        return Judged(ts, x, n_base, None, "flat", [])
    chart = spc.imr_chart(x, base).individuals
    results = spc_rules.evaluate(chart.statistic, chart.centre, chart.sigma, rules)
    found = [(r.rule, r.indexes[r.indexes >= n_base]) for r in results]
    return Judged(ts, x, n_base, chart, "", [(rule, i) for rule, i in found if i.size])


def _span(seconds: float) -> str:
    s = round(seconds)
    if s % 3600 == 0:
        return f"{s // 3600} {i18n.t('h')}"
    if s % 60 == 0:
        return f"{s // 60} {i18n.t('min')}"
    return f"{s} {i18n.t('s')}"


def _short(path: str) -> str:
    """An asset's line and name (two mills may share a name on different lines)."""
    return "/".join(path.split("/")[-2:])


def _iso(ctx: Context, ts_ns: int) -> str:
    """A plant-time instant as plotly reads it (ISO 8601 to the millisecond)."""
    return str(np.datetime_as_string(ctx.to_local([ts_ns])[0], unit="ms"))


def spc_figure(ctx: Context, j: Judged, title: str, unit: str, bucket: str, base_end_ns: int) -> go.Figure:
    t = ctx.to_local(j.ts)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=t,
            y=j.x,
            mode="lines+markers",
            name=i18n.t("q.mean_of", bucket=bucket),
            line={"color": theme.ACCENT, "width": 1},
            marker={"size": 3},
        )
    )
    if j.chart is not None and len(t):
        ch = j.chart
        for key, y, style in (
            ("q.ucl", ch.ucl, "dash"),
            ("q.centre", ch.centre, "solid"),
            ("q.lcl", ch.lcl, "dash"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[t[0], t[-1]],
                    y=[y, y],
                    mode="lines",
                    name=f"{i18n.t(key)} {y:.6g}",
                    line={"color": theme.GOOD if key == "q.centre" else theme.WARN, "dash": style},
                )
            )
        fig.add_trace(violation_trace(j, t))
    lay = chart_layout(title=title, height=400)
    lay["yaxis"] = {**lay["yaxis"], "title": {"text": unit}}
    if j.n_base:  # the baseline as a shaded band over the whole height (a plain shape: add_vrect is slow)
        x0, x1 = _iso(ctx, int(j.ts[0])), _iso(ctx, base_end_ns)
        band = {"xref": "x", "yref": "paper", "x0": x0, "x1": x1, "y0": 0, "y1": 1}
        lay["shapes"] = [
            {"type": "rect", **band, "fillcolor": theme.MUTED, "opacity": 0.15, "line": {"width": 0}}
        ]
        lay["annotations"] = [
            {
                "text": i18n.t("q.baseline_short"),
                "xref": "x",
                "yref": "paper",
                "x": x0,
                "y": 1,
                "xanchor": "left",
                "yanchor": "top",
                "showarrow": False,
            }
        ]
    fig.update_layout(lay)
    return fig


def violation_trace(j: Judged, t: np.ndarray) -> go.Scatter:
    """Every point after the baseline where a rule fires, marked; its hover names the rules."""
    hit: dict[int, list[str]] = {}
    for rule, idx in j.violations:
        for i in idx.tolist():
            hit.setdefault(int(i), []).append(rule.rule_id)
    at = np.array(sorted(hit), dtype=np.intp)
    return go.Scatter(
        x=t[at],
        y=j.x[at],
        mode="markers",
        name=i18n.t("q.violation"),
        marker={"color": theme.BAD, "size": 10, "symbol": "x"},
        text=[", ".join(hit[int(i)]) for i in at],
        customdata=at.tolist(),
        hovertemplate="%{x}<br>%{y}<br>%{text}<extra></extra>",
    )


def rule_name(rule: spc_rules.Rule) -> str:
    return i18n.pair(rule.description, rule.description_zh)


def violations_view(ctx: Context, j: Judged) -> list[Any]:
    if j.chart is None:
        return [html.P(i18n.t("no_data"))]
    if not j.violations:
        return [html.P(i18n.t("q.no_violations"))]
    rows = [
        [r.rule_id, rule_name(r), len(idx), ctx.local(int(j.ts[int(idx[-1])]))] for r, idx in j.violations
    ]
    headers = [i18n.t("q.rule"), i18n.t("q.violations"), i18n.t("q.points"), i18n.t("q.last_at")]
    return [table(headers, rows, numeric={2}, id="q-violations-table")]


def baseline_note(ctx: Context, j: Judged, start_ns: int, base_end_ns: int, bucket: str) -> str:
    span = {"start": ctx.local(start_ns, "%m-%d %H:%M"), "end": ctx.local(base_end_ns, "%m-%d %H:%M")}
    if j.chart is None and j.problem == "flat":
        return i18n.t("q.baseline_flat", **span)
    if j.chart is None:
        return i18n.t("q.baseline_too_small", n=j.n_base, min=spc.MIN_BASELINE_POINTS, **span)
    return i18n.t(
        "q.baseline_note",
        n=j.n_base,
        bucket=bucket,
        mean=f"{j.chart.centre:.6g}",
        sigma=f"{j.chart.sigma:.4g}",
        **span,
    )


def capability_view(j: Judged, spec: tuple[float, float] | None, unit: str, bucket: str) -> list[Any]:
    """Cp, Cpk, Pp, Ppk with their intervals, of the points after the baseline, against the configured range."""
    if spec is None or not spec[0] < spec[1]:
        return [html.P(i18n.t("q.no_spec"))]
    lsl, usl = spec
    out: list[Any] = [html.P(i18n.t("q.spec_from_range", lsl=f"{lsl:g}", usl=f"{usl:g}", unit=unit))]
    data = j.x[j.n_base :]
    try:
        c = capmod.capability(data, lsl=lsl, usl=usl, confidence=CONFIDENCE)
    except ValueError:
        return [*out, html.P(i18n.t("q.cap_too_few", n=len(data), min=spc.MIN_BASELINE_POINTS))]
    rows = [
        [name, f"{iv.estimate:.2f}", f"{iv.lower:.2f} – {iv.upper:.2f}"]
        for name, iv in (("Cp", c.cp), ("Cpk", c.cpk), ("Pp", c.pp), ("Ppk", c.ppk))
        if iv is not None
    ]
    headers = [i18n.t("q.index"), i18n.t("q.estimate"), i18n.t("q.ci", p=f"{100 * CONFIDENCE:g}")]
    facts = [
        [i18n.t("q.mean"), f"{c.mean:.6g} {unit}"],
        [i18n.t("q.sigma_within"), f"{c.sigma_within:.4g} {unit}"],
        [i18n.t("q.sigma_overall"), f"{c.sigma_overall:.4g} {unit}"],
    ]
    return [
        *out,
        table(headers, rows, numeric={1}, id="q-capability-table"),
        table([i18n.t("q.statistic"), i18n.t("q.estimate")], facts),
        html.P(
            i18n.t("q.cap_data", n=c.n, bucket=bucket), style={"color": theme.MUTED, "fontSize": ".85rem"}
        ),
    ]


def spc_outputs(
    ctx: Context, asset: str | None, signal: str | None, window_h: float, baseline_h: float, ruleset: str
) -> tuple[go.Figure, str, list[Any], list[Any]]:
    """(figure, baseline note, violations, capability) of one signal over the last ``window_h`` hours."""
    if not asset or not signal or signal not in ctx.data.process_signals(asset):
        msg = i18n.t("q.no_signal")
        return message_figure(msg), "", [], []
    sig = next(s for s in ctx.data.assets[asset].signals if s.name == signal)
    span = int(window_h * 3600) * NS
    try:
        start, end, frame = ctx.data.recent_series(asset, signal, span, POINTS)
    except Unavailable as exc:
        msg = i18n.t("sys.historian_down", why=str(exc)[:200])
        return message_figure(msg), msg, [], []
    bucket = _span(bucket_ns(span, POINTS) / NS)
    first = int(frame.ts[0]) if len(frame) else start  # the baseline starts with the data shown
    base_end = min(first + int(baseline_h * 3600) * NS, end)
    j = judge(frame.ts, frame.value, base_end, RULESETS.get(ruleset, spc_rules.NELSON))
    if not len(j.ts):
        return message_figure(i18n.t("no_data")), i18n.t("no_data"), [], []
    title = f"{i18n.t('q.spc')} · {_short(asset)} · {signal}"
    fig = spc_figure(ctx, j, title, sig.unit, bucket, base_end)
    fig.update_layout(meta={"start_ns": start, "end_ns": end, "baseline_end_ns": base_end})
    return (
        fig,
        baseline_note(ctx, j, first, base_end, bucket),
        violations_view(ctx, j),
        capability_view(j, sig.range, sig.unit, bucket),
    )


# -- defect predictions and surface inspection ---------------------------------------------------------
def defects_view(ctx: Context) -> list[Any]:
    try:
        preds = ctx.data.defect_predictions()
    except Unavailable as exc:
        return [unavailable(i18n.t("sys.historian_down", why=str(exc)[:200]))]
    if not preds:
        return [html.P(i18n.t("q.no_defects"), style={"color": theme.MUTED})]
    rows = [
        [
            _short(s.asset),
            s.signal,
            "–" if isinstance(s.value, str) else pct(float(s.value)),
            ctx.local(s.ts_ns),
        ]
        for s in preds
    ]
    headers = [i18n.t("asset"), i18n.t("signal"), i18n.t("q.probability"), i18n.t("time")]
    return [table(headers, rows, numeric={2}, id="q-defects-table")]


def characteristic_label(characteristic: str) -> str:
    """``surface`` (a clean image) and ``surface_<class>`` in the reader's language; others as stored."""
    key = (
        "q.char.surface"
        if characteristic == "surface"
        else f"q.char.{characteristic.removeprefix('surface_')}"
    )
    return i18n.t(key) if characteristic.startswith("surface") and key in i18n.TEXT else characteristic


def verdict_view(verdict: str) -> html.Span:
    key = f"q.verdict.{verdict}"
    text = i18n.t(key) if key in i18n.TEXT else verdict
    if verdict == "fail":
        return html.Span(f"✗ {text}", className="sf-failed", style={"color": theme.BAD, "fontWeight": 700})
    return html.Span(text)


def _probability(row: dict[str, Any]) -> str:
    v = row.get("value")
    if v is None:
        return "–"
    return pct(v) if row.get("unit") == "probability" else f"{v:g} {row.get('unit') or ''}".strip()


def inspection_view(ctx: Context) -> list[Any]:
    try:
        rows = ctx.data.inspections(limit=50)
    except Exception as exc:  # the MES is away: say so, never a traceback
        log.warning("dashboard: inspections not available: %s", exc)
        return [unavailable(i18n.t("mes.unavailable"))]
    if not rows:
        return [html.P(i18n.t("q.no_inspections"))]
    body = [
        [
            ctx.local(r["ts_ns"]),
            _short(r["asset"]),
            characteristic_label(r["characteristic"]),
            verdict_view(r["verdict"]),
            _probability(r),
            r["lot_id"] or "–",
        ]
        for r in rows
    ]
    headers = [
        i18n.t("time"),
        i18n.t("asset"),
        i18n.t("q.characteristic"),
        i18n.t("q.verdict"),
        i18n.t("q.probability"),
        i18n.t("q.lot"),
    ]
    return [table(headers, body, numeric={4}, id="q-inspection-table")]


# -- lots and their trace ------------------------------------------------------------------------------
def kind_label(kind: str) -> str:
    key = f"lot.kind.{kind}"
    return i18n.t(key) if key in i18n.TEXT else kind


def _quantity(q: float | None, unit: str) -> str:
    if q is None:
        return "–"
    key = f"unit.{unit}"
    text = f"{q:,.0f}" if abs(q) >= 100 else f"{q:.3g}"
    return f"{text} {i18n.t(key) if key in i18n.TEXT else unit}"


def lot_options(ctx: Context) -> tuple[list[dict[str, str]], str | None]:
    """The newest lots as dropdown options, and the default: the newest lot made from other lots."""
    rows = ctx.data.recent_lots(LOTS_SHOWN)
    opts = [
        {
            "label": f"{r['id']} · {kind_label(r['kind'])} · {_short(r['asset'])} · "
            f"{ctx.local(r['end_ns'], '%m-%d %H:%M')}",
            "value": r["id"],
        }
        for r in rows
    ]
    default = next((r["id"] for r in rows if r["has_parents"]), rows[0]["id"] if rows else None)
    return opts, default


def tree_order(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The trace's nodes depth first from the root, each followed by what it was made from."""
    by_id = {n["id"]: n for n in trace["nodes"]}
    parents: dict[str, list[str]] = {}
    for e in trace["edges"]:
        parents.setdefault(e["child"], []).append(e["parent"])
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    stack = [trace["root"]]
    while stack:
        lot = stack.pop()
        if lot in seen or lot not in by_id:
            continue
        seen.add(lot)
        out.append(by_id[lot])
        stack += sorted(
            p for p in parents.get(lot, []) if by_id.get(p, {}).get("depth") == by_id[lot]["depth"] + 1
        )[::-1]
    return out + [n for n in trace["nodes"] if n["id"] not in seen]


def trace_view(ctx: Context, lot: str | None) -> list[Any]:
    if not lot:
        return [html.P(i18n.t("q.no_lots"))]
    try:
        tr = ctx.data.trace(lot, "backward")
    except LotNotFound:
        return [html.P(i18n.t("q.lot_unknown", lot=lot))]
    except Exception as exc:
        log.warning("dashboard: trace not available: %s", exc)
        return [unavailable(i18n.t("mes.unavailable"))]
    failed = set(tr["failed"])
    made_from: dict[str, list[str]] = {}
    for e in tr["edges"]:
        made_from.setdefault(e["child"], []).append(e["parent"])
    rows = [
        [
            html.Span(("\u3000" * n["depth"]) + ("↳ " if n["depth"] else "") + n["id"]),
            kind_label(n["kind"]),
            _short(n["asset"]),
            _quantity(n["quantity"], n["unit"]),
            ctx.local(n["end_ns"], "%m-%d %H:%M"),
            verdict_view("fail" if n["id"] in failed else n["verdict"]),
            ", ".join(sorted(made_from.get(n["id"], []))) or "–",
        ]
        for n in tree_order(tr)
    ]
    headers = [
        i18n.t("q.lot"),
        i18n.t("q.kind"),
        i18n.t("asset"),
        i18n.t("q.quantity"),
        i18n.t("q.finished"),
        i18n.t("q.verdict"),
        i18n.t("q.made_from"),
    ]
    facts = [
        [i18n.t("q.origins"), ", ".join(tr["origins"]) or "–"],
        [i18n.t("q.failed_lots"), ", ".join(tr["failed"]) or i18n.t("none")],
    ]
    if tr["energy_kwh"] is not None:
        facts.append([i18n.t("q.energy_total"), f"{tr['energy_kwh']:,.1f} kWh"])
    out: list[Any] = [
        html.H4(i18n.t("q.trace_back", lot=lot)),
        table(headers, rows, numeric={3}, id="q-trace-table"),
        table([i18n.t("q.trace"), i18n.t("value")], facts),
    ]
    if tr["truncated"]:
        out.append(html.P(i18n.t("q.trace_truncated"), className="sf-msg"))
    return out


def lots_state(ctx: Context) -> tuple[list[dict[str, str]], str | None, str | None]:
    """(options, default lot, message) for the lot picker; the message says why it is empty."""
    try:
        opts, default = lot_options(ctx)
    except Exception as exc:
        log.warning("dashboard: lots not available: %s", exc)
        return [], None, i18n.t("mes.unavailable")
    return opts, default, None if opts else i18n.t("q.no_lots")


# -- the page ------------------------------------------------------------------------------------------
def _picker(label: str, component: Any) -> html.Div:
    return html.Div([html.Label(label), component])


def _asset_options(ctx: Context) -> list[dict[str, str]]:
    return [
        {"label": f"{_short(a.path)} — {a.description}" if a.description else _short(a.path), "value": a.path}
        for a in ctx.cfg.assets
        if ctx.data.process_signals(a.path)
    ]


def _signal_options(ctx: Context, asset: str | None) -> list[dict[str, str]]:
    if not asset or asset not in ctx.data.assets:
        return []
    units = {s.name: s.unit for s in ctx.data.assets[asset].signals}
    return [
        {"label": f"{n} ({units[n]})" if units[n] else n, "value": n} for n in ctx.data.process_signals(asset)
    ]


def _choice(ctx: Context, query: dict[str, str]) -> tuple[str | None, str | None]:
    """The asset and signal to chart: from the address (?asset=&signal=), else the default."""
    default = ctx.data.default_spc_signal()
    asset = query.get("asset")
    if asset not in ctx.data.assets or not ctx.data.process_signals(asset):
        asset = default[0] if default else None
    signals = ctx.data.process_signals(asset) if asset else []
    signal = query.get("signal")
    if signal not in signals:
        signal = default[1] if default and default[0] == asset else (signals[0] if signals else None)
    return asset, signal


def controls(ctx: Context, asset: str | None, signal: str | None) -> html.Div:
    return html.Div(
        [
            _picker(
                i18n.t("q.pick_asset"),
                dropdown(_asset_options(ctx), asset, ids.Q_ASSET),
            ),
            _picker(
                i18n.t("q.pick_signal"),
                dropdown(_signal_options(ctx, asset), signal, ids.Q_SIGNAL),
            ),
            _picker(
                i18n.t("q.window"),
                dropdown(
                    [{"label": i18n.t("last_hours", n=h), "value": h} for h in WINDOWS_H],
                    WINDOWS_H[0],
                    ids.Q_WINDOW,
                ),
            ),
            _picker(
                i18n.t("q.baseline"),
                dropdown(
                    [{"label": i18n.t("q.baseline_first", n=h), "value": h} for h in BASELINES_H],
                    BASELINES_H[1],
                    ids.Q_BASELINE,
                ),
            ),
            _picker(
                i18n.t("q.rules"),
                dropdown(
                    [{"label": i18n.t(f"q.rules.{k}"), "value": k} for k in RULESETS], "nelson", ids.Q_RULES
                ),
            ),
        ],
        className="sf-controls",
    )


def _panel(title: str, *children: Any) -> html.Div:
    return html.Div([html.H3(title), *children], className="sf-panel")


def page(ctx: Context, query: dict[str, str]) -> html.Div:
    asset, signal = _choice(ctx, query)
    fig, note, violations, capability = spc_outputs(
        ctx, asset, signal, WINDOWS_H[0], BASELINES_H[1], "nelson"
    )
    opts, default, lots_msg = lots_state(ctx)
    lot = query.get("lot") or default
    return html.Div(
        [
            html.H2(i18n.t("q.title")),
            controls(ctx, asset, signal),
            _panel(
                i18n.t("q.spc"),
                graph(ids.Q_SPC, fig),
                html.P(note, id=ids.Q_SPC_NOTE, style={"color": theme.MUTED, "fontSize": ".9rem"}),
            ),
            html.Div(
                [
                    _panel(i18n.t("q.violations"), html.Div(violations, id=ids.Q_VIOLATIONS)),
                    _panel(i18n.t("q.capability"), html.Div(capability, id=ids.Q_CAPABILITY)),
                ],
                className="sf-grid",
            ),
            html.Div(
                [
                    _panel(i18n.t("q.inspection"), html.Div(inspection_view(ctx), id=ids.Q_INSPECTION)),
                    _panel(i18n.t("q.defects"), html.Div(defects_view(ctx), id=ids.Q_DEFECTS)),
                ],
                className="sf-grid",
            ),
            _panel(
                i18n.t("q.trace"),
                html.Div(
                    _picker(
                        i18n.t("q.trace_lot"),
                        dropdown(opts, lot, ids.Q_LOT, placeholder=lots_msg or ""),
                    ),
                    className="sf-controls",
                ),
                html.Div(trace_view(ctx, lot) if lot else [html.P(lots_msg or "")], id=ids.Q_TRACE),
            ),
        ]
    )


def register(app: Dash, ctx: Context) -> None:
    def layout(**query: str) -> html.Div:
        return page(ctx, query)

    dash.register_page(
        "quality", path="/quality", name="quality", title="Shopfloor · Quality", layout=layout, order=4
    )

    @app.callback(
        Output(ids.Q_SIGNAL, "options"),
        Output(ids.Q_SIGNAL, "value"),
        Input(ids.Q_ASSET, "value"),
        State(ids.Q_SIGNAL, "value"),
        prevent_initial_call=True,
    )
    def signals(asset: str | None, current: str | None) -> tuple[list[dict[str, str]], str | None]:
        opts = _signal_options(ctx, asset)
        if current in [o["value"] for o in opts]:
            return opts, current
        default = ctx.data.default_spc_signal(asset) if asset else None
        return opts, default[1] if default else None

    @app.callback(
        Output(ids.Q_SPC, "figure"),
        Output(ids.Q_SPC_NOTE, "children"),
        Output(ids.Q_VIOLATIONS, "children"),
        Output(ids.Q_CAPABILITY, "children"),
        Input(ids.Q_ASSET, "value"),
        Input(ids.Q_SIGNAL, "value"),
        Input(ids.Q_WINDOW, "value"),
        Input(ids.Q_BASELINE, "value"),
        Input(ids.Q_RULES, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,  # the layout drew it: the first tick refreshes
    )
    def chart(
        asset: str | None,
        signal: str | None,
        window_h: float | None,
        baseline_h: float | None,
        ruleset: str | None,
        _n: int | None,
    ) -> tuple[go.Figure, str, list[Any], list[Any]]:
        return spc_outputs(
            ctx, asset, signal, window_h or WINDOWS_H[0], baseline_h or BASELINES_H[1], ruleset or "nelson"
        )

    @app.callback(
        Output(ids.Q_INSPECTION, "children"),
        Output(ids.Q_DEFECTS, "children"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,  # the layout drew it: the first tick refreshes
    )
    def results(_n: int | None) -> tuple[list[Any], list[Any]]:
        return inspection_view(ctx), defects_view(ctx)

    @app.callback(
        Output(ids.Q_LOT, "options"),
        Input(ids.TICK, "n_intervals"),
        State(ids.Q_LOT, "value"),
        prevent_initial_call=True,  # the layout drew it: the first tick refreshes
    )
    def lots(_n: int | None, current: str | None) -> list[dict[str, str]]:
        opts = lots_state(ctx)[0]
        if current and all(o["value"] != current for o in opts):
            opts = [{"label": current, "value": current}, *opts]  # the lot being looked at stays pickable
        return opts

    @app.callback(
        Output(ids.Q_TRACE, "children"),
        Input(ids.Q_LOT, "value"),
        Input(ids.TICK, "n_intervals"),
        prevent_initial_call=True,  # the layout drew it: the first tick refreshes
    )
    def trace(lot: str | None, _n: int | None) -> list[Any]:
        return trace_view(ctx, lot) if lot else [html.P(lots_state(ctx)[2] or "")]
