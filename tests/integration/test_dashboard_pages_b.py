"""The quality and MES pages over real stores: what they show agrees with the MES tables and the analytics,
in English and Chinese, and a dead MES reads as a message, not as zero.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from dashboard_support import History, history, login, serve
from flask import Flask
from sqlalchemy import create_engine, or_, select

from analytics import spc, spc_rules
from dashboard import auth, i18n
from dashboard.context import Context
from dashboard.data import PlantData
from dashboard.pages import mes as mes_page
from dashboard.pages import quality
from historian.factory import open_reader
from historian.reader import SeriesFrame, SyncReader
from mes import lots as mes_lots
from mes import tables as t
from mes.db import open_engine
from mes.kpi import WATERFALL_STEPS
from mes.order_spec import OrderSpec, OrderStatus
from mes.quality import InspectionResult
from mes.repository import Repository
from shopfloor.model import Sample

NS = 1_000_000_000
PAGES = Path(__file__).parents[2] / "dashboard" / "pages"
HOT = "qijiang/copper/hot-rolling/mill-1"
SLITTER = "qijiang/copper/finishing/slitter-1"
FURNACE = "qijiang/copper/casting/melting-furnace-1"


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> History:
    return history(tmp_path_factory.mktemp("dash-b"))  # every asset derived, lots and genealogy too


@pytest.fixture(scope="module")
def url(hist: History) -> Iterator[str]:
    with serve(hist.cfg) as svc:
        yield svc.url


@pytest.fixture(scope="module")
def session(url: str) -> requests.Session:
    return login(url, "viewer")


@pytest.fixture(scope="module")
def deps(url: str, session: requests.Session) -> list[dict[str, Any]]:
    return session.get(url + "_dash-dependencies", timeout=10).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ctx(hist: History) -> Iterator[Context]:
    reader = SyncReader(open_reader(hist.cfg.historian), timeout_s=10.0)
    repo = Repository(open_engine(hist.cfg.mes), hist.cfg.mes)
    yield Context(PlantData(hist.cfg, reader, repo), auth.Users(hist.cfg.dashboard.users_file), hist.cfg)
    reader.close()


def update(
    s: requests.Session,
    url: str,
    deps: list[dict[str, Any]],
    output: str,
    values: dict[str, Any],
    lang: str = "en",
) -> dict[str, dict[str, Any]]:
    """Run the callback whose output names ``output`` as the browser would; ``values`` by 'id.property'."""
    dep = next(d for d in deps if output in d["output"])
    outs = [
        {"id": o.split(".")[0], "property": o.split(".")[1]} for o in dep["output"].strip(".").split("...")
    ]

    def filled(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in items]

    body = {
        "output": dep["output"],
        "outputs": outs if len(outs) > 1 else outs[0],
        "inputs": filled(dep["inputs"]),
        "state": filled(dep["state"]),
        "changedPropIds": [f"{i['id']}.{i['property']}" for i in dep["inputs"]],
    }
    r = s.post(url + "_dash-update-component", json=body, cookies={i18n.COOKIE: lang}, timeout=60)
    assert r.status_code == 200, r.text[:500]
    return r.json()["response"]  # type: ignore[no-any-return]


def rows_of(tree: Any) -> list[str]:
    """Every table row (Tr) in a rendered component tree, as its JSON text."""
    out: list[str] = []
    if isinstance(tree, dict):
        if tree.get("type") == "Tr":
            out.append(json.dumps(tree, ensure_ascii=False))
        for v in tree.values():
            out += rows_of(v)
    elif isinstance(tree, list):
        for v in tree:
            out += rows_of(v)
    return out


def mes_call(
    s: requests.Session, url: str, deps: list[dict[str, Any]], scope: str, shift: str, lang: str
) -> Any:
    values = {
        "mes-scope.value": scope,
        "mes-window.value": 24,
        "mes-shift.value": shift,
        "tick.n_intervals": 1,
    }
    return update(s, url, deps, "mes-pareto.figure", values, lang)


# -- every page, both languages ------------------------------------------------------------------------
def test_every_text_key_the_pages_use_is_written_in_both_languages() -> None:
    keys: set[str] = set()
    for f in ("quality.py", "mes.py"):
        keys |= set(re.findall(r'i18n\.t\(\s*"([^"]+)"', (PAGES / f).read_text()))
    keys |= {f"mes.status.{s.value}" for s in OrderStatus} | {f"q.rules.{k}" for k in quality.RULESETS}
    keys |= {f"q.verdict.{v}" for v in ("pass", "fail", "unknown")}
    keys |= {f"q.char.{c}" for c in ("surface", "scratch", "hole", "inclusion")}
    assert len(keys) > 80
    for k in sorted(keys):
        en, zh = i18n.TEXT[k]
        assert en and zh, k
    assert i18n.t("q.char.scratch", "zh") == "划伤" and i18n.t("q.char.hole", "zh") == "孔洞"
    assert i18n.t("q.char.inclusion", "zh") == "夹杂"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_both_pages_render_through_the_server(
    url: str, session: requests.Session, deps: list[dict[str, Any]], lang: str
) -> None:
    text: dict[str, str] = {}
    for path, title in (("/quality", "q.title"), ("/mes", "mes.title")):
        values = {"_pages_location.pathname": path, "_pages_location.search": ""}
        resp = update(session, url, deps, "_pages_content.children", values, lang)
        text[path] = json.dumps(resp, ensure_ascii=False)
        assert i18n.t(title, lang) in text[path], path
        assert "Traceback" not in text[path]
    if lang == "zh":  # the controls, the baseline and every panel in Chinese
        for word in ("控制图", "基准期", "判异规则触发", "过程能力指数", "表面缺陷检测", "缺陷预测", "追溯"):
            assert word in text["/quality"], word
        for word in ("全厂", "损失瀑布图", "停机原因帕累托图", "各班次 OEE", "工单"):
            assert word in text["/mes"], word


def test_the_chart_follows_the_address_and_the_asset_picked(
    url: str, session: requests.Session, deps: list[dict[str, Any]]
) -> None:
    measuring = "qijiang/machining/gearbox-line/measuring-1"
    search = f"?asset={measuring}&signal=measured_flatness"
    values = {"_pages_location.pathname": "/quality", "_pages_location.search": search}
    page = json.dumps(update(session, url, deps, "_pages_content.children", values), ensure_ascii=False)
    assert "measuring-1 · measured_flatness" in page  # the chart's title
    # picking an asset offers its process signals, its tolerance band first; counters are not offered
    picked = update(session, url, deps, "q-signal.options", {"q-asset.value": measuring})["q-signal"]
    names = [o["value"] for o in picked["options"]]
    assert picked["value"] == "measured_bore" and "part_count" not in names and "energy" not in names


# -- MES page ------------------------------------------------------------------------------------------
def _stops_by_reason(hist: History, scope: str, start: int, end: int) -> dict[str, float]:
    """Stop time by reason in [start, end), straight from the MES's state intervals."""
    si = t.state_intervals.c
    engine = open_engine(hist.cfg.mes)
    with engine.connect() as conn:
        rows = conn.execute(
            select(si.start_ns, si.end_ns, si.state, si.reason).where(
                or_(si.asset == scope, si.asset.like(scope + "/%")),
                si.start_ns < end,
                or_(si.end_ns.is_(None), si.end_ns > start),
            )
        ).all()
    engine.dispose()
    out: dict[str, int] = {}
    for r in rows:
        if r.state == "running":
            continue
        a, b = max(r.start_ns, start), min(end if r.end_ns is None else r.end_ns, end)
        if b > a:
            out[r.reason or "unassigned"] = out.get(r.reason or "unassigned", 0) + b - a
    return {k: v / NS for k, v in out.items()}


def test_the_downtime_pareto_is_the_mes_stop_time_by_reason_longest_first(
    hist: History, url: str, session: requests.Session, deps: list[dict[str, Any]]
) -> None:
    lines = {a.path.rsplit("/", 1)[0] for a in hist.cfg.assets}
    for scope in (hist.cfg.site, "qijiang/machining/gearbox-line"):
        assert scope == hist.cfg.site or scope in lines
        fig = mes_call(session, url, deps, scope, "all", "zh")["mes-pareto"]["figure"]
        meta = fig["layout"]["meta"]
        want = _stops_by_reason(hist, scope, meta["start_ns"], meta["end_ns"])
        assert want, "the simulated day has stops"
        bars = fig["data"][0]
        got = {k: s for s, _, k in bars["customdata"]}
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-6), k
        secs = [s for s, _, _ in bars["customdata"]]
        assert secs == sorted(secs, reverse=True)
        # reason names from the MES reason tree, in Chinese; the unassigned ones say so
        zh = {r.id: r.zh for r in hist.cfg.mes.reasons}
        for (_, _, k), label in zip(bars["customdata"], bars["x"], strict=True):
            assert label.startswith(zh.get(k, "未分配原因")), (k, label)


def test_the_waterfall_steps_add_up_from_the_window_down(
    hist: History, url: str, session: requests.Session, deps: list[dict[str, Any]]
) -> None:
    n_assets = len({a.path for a in hist.cfg.mes.assets})
    resp = mes_call(session, url, deps, hist.cfg.site, "all", "zh")
    shifts = resp["mes-shift"]["options"]
    assert len(shifts) >= 3, "the whole window, and the shifts of the calendar in it"
    for shift in (shifts[0]["value"], shifts[-2]["value"]):  # the whole window and the last full shift
        fig = mes_call(session, url, deps, hist.cfg.site, shift, "zh")["mes-waterfall"]["figure"]
        meta, wf = fig["layout"]["meta"], fig["data"][0]
        assert wf["x"] == [i18n.kpi_label(name, "zh") for name, *_ in WATERFALL_STEPS]
        secs = dict(zip([name for name, *_ in WATERFALL_STEPS], wf["customdata"], strict=True))
        assert secs["calendar"] == pytest.approx(
            (meta["shift_end_ns"] - meta["shift_start_ns"]) / NS * n_assets
        )
        total: float | None = None
        for (name, kind, *_), v in zip(WATERFALL_STEPS, wf["customdata"], strict=True):
            if v is None:  # a loss the MES cannot know (units without an ideal time): shown as unknown
                total = None
            elif kind == "total":
                if total is not None:
                    assert v == pytest.approx(total, abs=1e-3), name
                total = v
            elif total is not None:
                total -= v
        assert secs["fully_productive"] is not None and secs["fully_productive"] <= secs["calendar"]


def test_work_orders_of_the_scope_with_status_and_quantities(
    ctx: Context, url: str, session: requests.Session, deps: list[dict[str, Any]]
) -> None:
    repo = ctx.data.repo
    assert repo is not None
    repo.create_orders(
        [
            OrderSpec(id="WO-B-HOT", product="c110-3mm", asset=HOT, quantity=40, unit="coils"),
            OrderSpec(
                id="WO-B-CNC", product="housing-a", asset="qijiang/machining/gearbox-line/cnc-1", quantity=500
            ),
        ],
        "test",
        OrderStatus.RELEASED,
    )
    copper = update(
        session, url, deps, "mes-orders.children", {"mes-scope.value": "qijiang/copper/hot-rolling"}, "zh"
    )
    rows = rows_of(copper["mes-orders"]["children"])
    hot = next(r for r in rows if "WO-B-HOT" in r)
    assert "已下达" in hot and "40" in hot and "hot-rolling/mill-1" in hot
    assert not any("WO-B-CNC" in r for r in rows)
    site = update(session, url, deps, "mes-orders.children", {"mes-scope.value": "qijiang"}, "en")
    text = json.dumps(site, ensure_ascii=False)
    assert "WO-B-HOT" in text and "WO-B-CNC" in text and "released" in text


def test_a_dead_mes_reads_as_a_message_never_as_zero(hist: History, ctx: Context, tmp_path: Path) -> None:
    broken = Repository(create_engine(f"sqlite:///{tmp_path / 'empty.db'}"), hist.cfg.mes)  # no tables
    dead = Context(PlantData(hist.cfg, ctx.data.reader, broken), ctx.users, hist.cfg)
    with Flask(__name__).test_request_context(headers={"Cookie": f"{i18n.COOKIE}=zh"}):
        msg = i18n.t("mes.unavailable")
        _, kpis, wf, table_, pareto, message = mes_page.mes_outputs(dead, hist.cfg.site, 24, "all")
        assert message == msg and msg == "无法连接生产执行数据库。"
        assert msg in str(kpis) and table_ == []
        for fig in (wf, pareto):
            assert not fig.data and fig.layout.annotations[0].text == msg
        for view in (
            mes_page.orders_view(dead, hist.cfg.site),
            quality.inspection_view(dead),
            quality.trace_view(dead, "melting-furnace-1-1"),
        ):
            assert msg in str(view)
        page = str(quality.page(dead, {})) + str(mes_page.page(dead, {}))
        assert msg in page and "Traceback" not in page


# -- quality page: the control chart -------------------------------------------------------------------
class StubReader:
    """A historian with one signal whose bucket means are ``values(ts)``, and a fixed newest sample."""

    def __init__(self, asset: str, signal: str, newest_ns: int, values: Any) -> None:
        self.asset, self.signal, self.newest, self.values = asset, signal, newest_ns, values
        self.asked: list[tuple[int, int, int]] = []

    def latest(self) -> list[Sample]:
        return [Sample(self.asset, self.signal, 0.0, self.newest)]

    def query_agg(self, asset: str, signal: str, start: int, end: int, every: int, fn: str) -> SeriesFrame:
        self.asked.append((start, end, every))
        ts = np.arange(start, end, every, dtype=np.int64)
        return SeriesFrame(ts, self.values(ts, every))


def _chart(
    hist: History, asset: str, signal: str, values: Any, lang: str = "en"
) -> tuple[Any, str, StubReader]:
    newest = 1_800_000_000 * NS
    reader = StubReader(asset, signal, newest, values)
    data = PlantData(hist.cfg, reader, None, dash=hist.cfg.dashboard.model_copy(update={"clock": "data"}))  # type: ignore[arg-type]
    c = Context(data, auth.Users(hist.cfg.dashboard.users_file), hist.cfg)
    with Flask(__name__).test_request_context(headers={"Cookie": f"{i18n.COOKIE}={lang}"}):
        fig, note, violations, _cap = quality.spc_outputs(c, asset, signal, 8, 2, "nelson")
        return fig, note + json.dumps([str(v) for v in violations], ensure_ascii=False), reader


def _noise(ts: np.ndarray, every: int) -> np.ndarray:
    """Reproducible white noise per bucket, mean 62.0, sigma 0.002 (a bore diameter)."""
    k = (ts // every).astype(np.uint64)
    u = ((k * np.uint64(2654435761)) % np.uint64(1_000_003)).astype(np.float64) / 1_000_003
    v = ((k * np.uint64(40503)) % np.uint64(999_983)).astype(np.float64) / 999_983
    return 62.0 + 0.002 * np.sqrt(-2 * np.log(u + 1e-12)) * np.cos(2 * np.pi * v)


def test_spc_limits_come_from_the_baseline_only_and_a_point_beyond_3_sigma_is_marked(hist: History) -> None:
    asset, signal = "qijiang/machining/gearbox-line/cnc-1", "bore_diameter"
    calm, note, reader = _chart(hist, asset, signal, _noise)
    assert "Control limits from the baseline" in note
    start, end, every = reader.asked[0]
    assert (end - start) / every <= 800, "the chart asks the store for bucket means, not raw history"
    base_end = calm.layout.meta["baseline_end_ns"]
    assert base_end == start + 2 * 3600 * NS

    def disturbed(ts: np.ndarray, every: int) -> np.ndarray:
        x = _noise(ts, every)
        after = ts >= base_end
        x[after] += 0.004  # the process moves after the baseline ...
        x[np.flatnonzero(after)[100]] = 62.1  # ... and one point is far beyond 3 sigma
        return x

    moved, moved_note, _ = _chart(hist, asset, signal, disturbed)
    limits = {tr.name.split()[0]: tr.y[0] for tr in calm.data if tr.mode == "lines"}
    assert limits == {tr.name.split()[0]: tr.y[0] for tr in moved.data if tr.mode == "lines"}
    # and they are the baseline's mean ± 3 MR̄/d2, computed here from the same bucket means
    ts = np.arange(start, end, every, dtype=np.int64)
    base = spc.individuals_baseline(_noise(ts, every)[ts < base_end])
    assert limits["UCL"] == pytest.approx(base.mean + 3 * base.sigma)
    assert limits["LCL"] == pytest.approx(base.mean - 3 * base.sigma)
    spike_i = int(np.flatnonzero(ts >= base_end)[100])
    marks = next(tr for tr in moved.data if tr.mode == "markers")
    assert spike_i in marks.customdata
    assert "N1" in marks.text[list(marks.customdata).index(spike_i)]
    assert spc_rules.RULES["N1"].description in moved_note and "N2" in moved_note  # the shift is a run too
    # the Chinese page names the rule in Chinese and states where the limits came from
    _, zh_note, _ = _chart(hist, asset, signal, disturbed, "zh")
    assert spc_rules.RULES["N1"].description_zh in zh_note and "控制限来自基准期" in zh_note


# -- quality page: inspection and trace ----------------------------------------------------------------
def test_surface_inspection_results_are_listed_with_chinese_names(
    ctx: Context, url: str, session: requests.Session, deps: list[dict[str, Any]]
) -> None:
    strips = ctx.data.lots(SLITTER, limit=1)
    assert strips, "the simulated slitter made strips"
    at = int(strips[0]["end_ns"]) - 30 * NS
    repo = ctx.data.repo
    assert repo is not None
    stored = repo.record_inspections(
        [
            InspectionResult(
                SLITTER, at, "surface_scratch", "fail", 0.93, "probability", "surface_inspection"
            ),
            InspectionResult(
                SLITTER, at + NS, "surface_inclusion", "fail", 0.61, "probability", "surface_inspection"
            ),
            InspectionResult(SLITTER, at + 2 * NS, "surface", "pass", None, "", "surface_inspection"),
        ]
    )
    lot = stored[0][0]
    assert lot is not None and lot.split(".")[0] == strips[0]["id"].split(".")[0]  # a piece of that coil
    resp = update(session, url, deps, "q-inspection.children", {"tick.n_intervals": 1}, "zh")
    rows = rows_of(resp["q-inspection"]["children"])
    scratch = next(r for r in rows if "划伤" in r)
    assert "不合格" in scratch and "93.0 %" in scratch and lot in scratch and "finishing/slitter-1" in scratch
    assert any("夹杂" in r and "61.0 %" in r for r in rows)
    assert any("无缺陷" in r and "合格" in r for r in rows)
    en = json.dumps(update(session, url, deps, "q-inspection.children", {"tick.n_intervals": 2}, "en"))
    assert "scratch" in en and "inclusion" in en and "划伤" not in en


def _coil_from_a_melt(ctx: Context) -> tuple[str, str]:
    """(coil lot, melt lot) of the newest cold-rolled or hot-rolled coil whose genealogy reaches a melt."""
    repo = ctx.data.repo
    assert repo is not None
    lt = t.lots.c
    with repo.engine.connect() as conn:
        coils = conn.execute(
            select(lt.id).where(lt.kind == "coil").order_by(lt.end_ns.desc()).limit(300)
        ).scalars()
        for coil in list(coils):
            tr = mes_lots.trace(conn, coil, "backward")
            melts = [n["id"] for n in tr.nodes if n["kind"] == "melt"]
            if melts:
                return coil, melts[0]
    raise AssertionError("no coil of the simulated copper line traces back to a melt")


def test_the_trace_of_a_coil_reaches_its_melt_and_marks_failed_lots(
    ctx: Context, url: str, session: requests.Session, deps: list[dict[str, Any]]
) -> None:
    coil, melt = _coil_from_a_melt(ctx)
    repo = ctx.data.repo
    assert repo is not None
    melt_row = next(r for r in ctx.data.lots(FURNACE, limit=50) if r["id"] == melt)
    failed_lot, _ = repo.record_inspection(
        InspectionResult(FURNACE, int(melt_row["end_ns"]), "chemistry_cu", "fail", 99.2, "%", "lab")
    )
    assert failed_lot == melt
    resp = update(session, url, deps, "q-trace.children", {"q-lot.value": coil, "tick.n_intervals": 1}, "zh")
    rows = rows_of(resp["q-trace"]["children"])
    assert any(coil in r and "卷" in r for r in rows)
    melt_rows = [r for r in rows if f"↳ {melt}" in r]
    assert melt_rows and "熔次" in melt_rows[0] and "sf-failed" in melt_rows[0] and "不合格" in melt_rows[0]
    text = json.dumps(resp, ensure_ascii=False)
    assert "源头批次" in text and melt in text
    # the lot picker offers recent lots and defaults to one with a genealogy
    opts = update(session, url, deps, "q-lot.options", {"tick.n_intervals": 1, "q-lot.value": coil}, "en")
    values = [o["value"] for o in opts["q-lot"]["options"]]
    assert coil in values and len(values) <= quality.LOTS_SHOWN + 1
