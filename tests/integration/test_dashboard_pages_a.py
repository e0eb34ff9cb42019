"""The line, asset and maintenance pages over real stores, through the real HTTP server: what a user sees in
English and Chinese, who may acknowledge, how requests rank, and how zooming fetches finer history."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import requests
from dashboard_support import NS, History, history, login, serve
from flask import Flask
from plotly.utils import PlotlyJSONEncoder

from dashboard import auth, i18n, ids
from dashboard.context import Context
from dashboard.data import PlantData
from dashboard.pages import asset, line, maintenance
from historian.factory import open_reader, open_store
from historian.reader import SyncReader
from mes.db import open_engine
from mes.maintenance import MaintenanceRequest
from mes.order_spec import OrderSpec
from mes.repository import Repository
from shopfloor.batch import SampleBatch
from shopfloor.config.dashboard import DashboardConfig
from shopfloor.model import Sample

CNC = "qijiang/machining/gearbox-line/cnc-1"
PRESS = "qijiang/aluminium/extrusion/press-1"
GEARBOX = "qijiang/machining/gearbox-line"
ORDER = "WO-A-1"


# -- fixtures -----------------------------------------------------------------------------------------------
def _write_pdm(hist: History) -> None:
    """Two hours of predictive-maintenance scores for the press, as the analytics would store them."""
    samples = []
    for i in range(120):
        ts = hist.end_ns - (120 - i) * 60 * NS
        rul = 60.0 - i * 0.2
        for sig, v in (
            ("pdm.health", 0.9 - i * 0.002),
            ("pdm.rul_hours", rul),
            ("pdm.rul_low_hours", rul - 12),
            ("pdm.rul_high_hours", rul + 15),
            ("pdm.anomaly", 1.0 + i * 0.02),
        ):
            samples.append(Sample(PRESS, sig, v, ts))

    async def write() -> None:
        store = open_store(hist.cfg.historian)
        await store.open()
        try:
            await store.write_samples(SampleBatch.from_samples(samples))
        finally:
            await store.close()

    asyncio.run(write())


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> History:
    h = history(tmp_path_factory.mktemp("dash-a"))
    _write_pdm(h)
    repo = Repository(open_engine(h.cfg.mes), h.cfg.mes)
    repo.create_order(OrderSpec(id=ORDER, product="gear-a", asset=CNC, quantity=500), "planner")
    return h


@pytest.fixture(scope="module")
def repo(hist: History) -> Repository:
    return Repository(open_engine(hist.cfg.mes), hist.cfg.mes)


@pytest.fixture(scope="module")
def url(hist: History) -> Iterator[str]:
    with serve(hist.cfg) as svc:
        yield svc.url


@pytest.fixture(scope="module")
def reader(hist: History) -> Iterator[SyncReader]:
    r = SyncReader(open_reader(hist.cfg.historian), timeout_s=10.0)
    yield r
    r.close()


def make_ctx(hist: History, reader: SyncReader, repo: Repository, **dash: Any) -> Context:
    dcfg = DashboardConfig(**{**hist.cfg.dashboard.model_dump(), **dash})
    return Context(
        PlantData(hist.cfg, reader, repo, dcfg), auth.Users(hist.cfg.dashboard.users_file), hist.cfg
    )


def open_request(repo: Repository, asset_path: str, key: str, kind: str = "equipment", **kw: Any) -> int:
    req = MaintenanceRequest(
        key=key,
        asset=asset_path,
        kind=kind,
        subject=kw.pop("subject", "spindle_bearing"),
        opened_ns=kw.pop("opened_ns", 1),
        **kw,
    )
    return repo.open_request(req)[0]


# -- talking to Dash as the browser does ----------------------------------------------------------------------
def update(
    s: requests.Session,
    url: str,
    outputs: list[tuple[str, str]],
    inputs: list[dict[str, Any]],
    changed: list[str],
    state: list[dict[str, Any]] | None = None,
) -> requests.Response:
    out = [{"id": i, "property": p} for i, p in outputs]
    spec = (
        f"{outputs[0][0]}.{outputs[0][1]}"
        if len(outputs) == 1
        else ".." + "...".join(f"{i}.{p}" for i, p in outputs) + ".."
    )
    body = {
        "output": spec,
        "outputs": out[0] if len(out) == 1 else out,
        "inputs": inputs,
        "changedPropIds": changed,
        "state": state or [],
    }
    return s.post(url + "_dash-update-component", json=body, timeout=60)


def page(s: requests.Session, url: str, path: str, search: str = "") -> dict[str, Any]:
    """What the page router renders for a path (the page's layout, as JSON)."""
    r = update(
        s,
        url,
        [("_pages_content", "children"), ("_pages_store", "data")],
        [
            {"id": "_pages_location", "property": "pathname", "value": path},
            {"id": "_pages_location", "property": "search", "value": search},
        ],
        ["_pages_location.pathname"],
    )
    assert r.status_code == 200, r.text[:500]
    return r.json()["response"]["_pages_content"]["children"]


def session(url: str, role: str, lang: str = "en") -> requests.Session:
    s = login(url, role)
    s.cookies.set(i18n.COOKIE, lang)
    return s


def find(tree: Any, key: str) -> list[Any]:
    """Every value of prop ``key`` anywhere in a rendered layout."""
    out: list[Any] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key:
                out.append(v)
            out += find(v, key)
    elif isinstance(tree, list):
        for v in tree:
            out += find(v, key)
    return out


def by_id(tree: Any, cid: str) -> dict[str, Any]:
    if isinstance(tree, dict):
        if tree.get("props", {}).get("id") == cid:
            return tree["props"]
        for v in tree.values():
            hit = by_id(v, cid)
            if hit:
                return hit
    elif isinstance(tree, list):
        for v in tree:
            hit = by_id(v, cid)
            if hit:
                return hit
    return {}


def array(v: Any) -> np.ndarray:
    """A plotly JSON array: a plain list, or a typed array ({"dtype", "bdata"})."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def texts(tree: Any) -> str:
    """A rendered layout (JSON, or Dash components) as one string to look for words in."""
    return json.dumps(tree, cls=PlotlyJSONEncoder, ensure_ascii=False)


# -- the tests -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_each_page_renders_in_both_languages(url: str, lang: str) -> None:
    s = session(url, "viewer", lang)
    want = {
        "en": ("state timeline", "counts against plan", "remaining useful life", "Predicted failures"),
        "zh": ("状态时间线", "计划完成情况", "剩余使用寿命", "预测性维护"),
    }[lang]
    line_page = texts(page(s, url, "/line"))
    assert want[0] in line_page and want[1] in line_page
    casting = texts(page(s, url, "/line", "?line=" + quote("qijiang/copper/casting", safe="")))
    assert "melting-furnace-1" in casting
    asset_page = texts(page(s, url, "/asset", "?path=" + quote(PRESS, safe="")))
    assert want[2] in asset_page
    assert want[3] in texts(page(s, url, "/maintenance"))
    if lang == "zh":  # labels are translated, not left in English
        for english in ("state timeline", "counts against plan", "maintenance history", "Acknowledge"):
            assert english not in line_page + asset_page


def test_every_line_and_asset_renders_in_both_languages_in_process(
    hist: History, reader: SyncReader, repo: Repository
) -> None:
    """Every branch a page takes for this plant finds its words (a missing key raises KeyError)."""
    ctx = make_ctx(hist, reader, repo)
    app = Flask(__name__)
    for lang in ("en", "zh"):
        with app.test_request_context(headers={"Cookie": f"{i18n.COOKIE}={lang}"}):
            for ln in ctx.data.lines:
                line.layout_for(ctx, ln.path)
            for a in ctx.data.assets:
                asset.layout_for(ctx, a)
            maintenance.requests_view(ctx)
            unknown = texts(asset.layout_for(ctx, "nowhere/x/y"))
            assert i18n.t("asset.unknown", lang, path="nowhere/x/y") in unknown  # type: ignore[arg-type]


def test_acknowledge_needs_an_engineer_and_records_who(url: str, repo: Repository) -> None:
    rid = open_request(
        repo, CNC, "test:ack", rul_hours=30.0, rul_low_hours=20.0, rul_high_hours=45.0, score=0.8
    )
    button = ids.ack_button(rid)
    prop = json.dumps(button, sort_keys=True, separators=(",", ":")) + ".n_clicks"

    def click(s: requests.Session, which: dict[str, Any] = button, p: str = prop) -> dict[str, Any]:
        ack = [{"id": which, "property": "n_clicks", "value": 1}] if which["type"] == "mnt-ack" else []
        close = [{"id": which, "property": "n_clicks", "value": 1}] if which["type"] == "mnt-close" else []
        r = update(
            s,
            url,
            [(ids.MNT_MESSAGE, "children"), (ids.MNT_REFRESH, "data")],
            [ack, close],
            [p],
            [{"id": ids.MNT_REFRESH, "property": "data", "value": 0}],
        )
        assert r.status_code == 200, r.text[:500]
        return r.json()["response"]

    for lang in ("en", "zh"):
        got = click(session(url, "viewer", lang))
        assert got[ids.MNT_MESSAGE]["children"] == i18n.t("auth.forbidden", lang)  # type: ignore[arg-type]
        assert ids.MNT_REFRESH not in got
        row = repo.request(rid)
        assert row["status"] == "open" and row["updated_by"] == "analytics"

    viewer_table = page(session(url, "viewer"), url, "/maintenance")
    buttons = [b for b in find(viewer_table, "props") if isinstance(b, dict) and b.get("id") == button]
    assert buttons and buttons[0]["disabled"] is True  # shown, but not for a viewer to press

    got = click(session(url, "engineer"))
    assert "engineer" in got[ids.MNT_MESSAGE]["children"]
    row = repo.request(rid)
    assert row["status"] == "acknowledged" and row["updated_by"] == "engineer"

    close = ids.close_button(rid)
    got = click(
        session(url, "admin", "zh"),
        close,
        json.dumps(close, sort_keys=True, separators=(",", ":")) + ".n_clicks",
    )
    assert got[ids.MNT_MESSAGE]["children"] == i18n.t("mnt.done.closed", "zh", id=rid, who="admin")
    row = repo.request(rid)
    assert row["status"] == "closed" and row["updated_by"] == "admin"


def test_requests_rank_by_remaining_life_then_equipment_first(url: str, repo: Repository) -> None:
    made = {
        "soon": open_request(repo, PRESS, "rank:soon", rul_hours=2.0, score=0.5),
        "later": open_request(repo, PRESS, "rank:later", rul_hours=5.0, score=0.9),
        "later-sensor": open_request(
            repo, PRESS, "rank:ls", "sensor_fault", subject="pump_vib_rms", rul_hours=5.0
        ),
        "unknown": open_request(repo, PRESS, "rank:none", rul_hours=None, score=0.99),
        "unknown-sensor": open_request(
            repo, PRESS, "rank:none-s", "sensor_fault", subject="pump_pressure", rul_hours=math.nan
        ),
    }
    rendered = page(session(url, "engineer"), url, "/maintenance")
    order = [int(r) for r in find(rendered, "data-request")]
    mine = [o for o in order if o in made.values()]
    assert mine == [made[k] for k in ("soon", "later", "later-sensor", "unknown", "unknown-sensor")]
    text = texts(rendered)
    assert "2.0 h" in text and "sensor fault" in text and "spindle bearing" in text
    for rid in made.values():
        repo.close_request(rid, "test")


def _chart(s: requests.Session, url: str, rng: str, zoom: list[int] | None) -> tuple[np.ndarray, str]:
    r = update(
        s,
        url,
        [(ids.ASSET_CHART, "figure"), (ids.ASSET_RESOLUTION, "children")],
        [
            {"id": ids.ASSET_PICK, "property": "value", "value": CNC},
            {"id": ids.ASSET_SIGNAL, "property": "value", "value": "power"},
            {"id": ids.ASSET_RANGE, "property": "value", "value": rng},
            {"id": ids.ASSET_ZOOM, "property": "data", "value": zoom},
            {"id": ids.TICK, "property": "n_intervals", "value": None},
        ],
        [f"{ids.ASSET_ZOOM}.data"],
    )
    assert r.status_code == 200, r.text[:500]
    got = r.json()["response"]
    x = array(got[ids.ASSET_CHART]["figure"]["data"][0]["x"]).astype("datetime64[ns]")
    return x, got[ids.ASSET_RESOLUTION]["children"]


def test_zooming_into_the_history_fetches_finer_buckets(
    url: str, hist: History, reader: SyncReader, repo: Repository
) -> None:
    s = session(url, "viewer")
    wide, wide_res = _chart(s, url, "7d", None)
    assert 0 < len(wide) <= asset.POINTS
    end = hist.end_ns - 30 * 60 * NS
    zoom = [end - 15 * 60 * NS, end]
    narrow, narrow_res = _chart(s, url, "7d", zoom)
    assert 0 < len(narrow) <= asset.POINTS
    step = lambda x: float(np.median(np.diff(x).astype(np.int64)))  # noqa: E731
    assert step(narrow) < step(wide) / 10
    assert wide_res != narrow_res and "15 min" in wide_res
    # the zoom the browser reports (plant wall time on the axis) becomes that window again
    ctx = make_ctx(hist, reader, repo)
    lo, hi = (str(v) for v in np.datetime_as_string(ctx.to_local(zoom), unit="ms"))
    r = update(
        s,
        url,
        [(ids.ASSET_ZOOM, "data")],
        [
            {
                "id": ids.ASSET_CHART,
                "property": "relayoutData",
                "value": {"xaxis.range[0]": lo, "xaxis.range[1]": hi},
            },
            {"id": ids.ASSET_PICK, "property": "value", "value": CNC},
            {"id": ids.ASSET_SIGNAL, "property": "value", "value": "power"},
            {"id": ids.ASSET_RANGE, "property": "value", "value": "7d"},
        ],
        [f"{ids.ASSET_CHART}.relayoutData"],
    )
    assert r.json()["response"][ids.ASSET_ZOOM]["data"] == zoom
    reset = asset.parse_zoom(ctx, {"xaxis.autorange": True})
    assert reset is None


def test_analytics_show_a_rul_band_where_scored_and_say_no_data_where_not(url: str) -> None:
    s = session(url, "viewer")
    scored = page(s, url, "/asset", "?path=" + quote(PRESS, safe=""))
    rul = by_id(scored, ids.ASSET_RUL_CHART)
    assert rul["style"].get("display") != "none"
    fills = [t.get("fill") for t in rul["figure"]["data"]]
    assert fills.count("tonexty") == 1 and len(fills) == 3  # low, high filled to low, the estimate
    assert by_id(scored, ids.ASSET_HEALTH_MSG)["children"] == ""
    unscored = page(s, url, "/asset", "?path=" + quote(CNC, safe=""))
    for chart, msg in (
        (ids.ASSET_HEALTH_CHART, ids.ASSET_HEALTH_MSG),
        (ids.ASSET_RUL_CHART, ids.ASSET_RUL_MSG),
        (ids.ASSET_ANOMALY_CHART, ids.ASSET_ANOMALY_MSG),
    ):
        assert by_id(unscored, chart)["style"] == {"display": "none"}
        assert by_id(unscored, msg)["children"] == i18n.t("asset.no_analytics", "en")  # type: ignore[arg-type]


def test_a_stale_asset_shows_stale_not_its_last_value(
    hist: History, reader: SyncReader, repo: Repository
) -> None:
    fresh = make_ctx(hist, reader, repo, stale_after=1000, refresh_s=60)  # 16 h: the history is fresh
    stale = make_ctx(hist, reader, repo, stale_after=1, refresh_s=0.5)  # half a second: it is stale
    with Flask(__name__).test_request_context():
        shown = texts(asset.facts(fresh, CNC, "power"))
        assert "kW" in shown and '"stale"' not in shown
        shown = texts(asset.facts(stale, CNC, "power"))
        assert '"stale"' in shown and "kW" not in shown
        gearbox = stale.data.line(GEARBOX)
        assert gearbox is not None
        now = texts(line.now_table(stale, gearbox, "power"))
        assert "kW" not in now and now.count('"stale"') >= len(gearbox.assets)


def test_the_line_shows_states_orders_against_plan_and_energy(url: str) -> None:
    s = session(url, "viewer")
    r = update(
        s,
        url,
        [(ids.LINE_TIMELINE, "figure"), (ids.LINE_COUNTS, "children"), (ids.LINE_ENERGY, "children")],
        [
            {"id": ids.LINE_PICK, "property": "value", "value": GEARBOX},
            {"id": ids.TICK, "property": "n_intervals", "value": None},
        ],
        [f"{ids.LINE_PICK}.value"],
    )
    assert r.status_code == 200, r.text[:500]
    got = r.json()["response"]
    bars = got[ids.LINE_TIMELINE]["figure"]["data"]
    assert bars and all(b["type"] == "bar" and b["orientation"] == "h" for b in bars)
    assert "cnc-1" in {y for b in bars for y in b["y"]}
    assert {b["name"] for b in bars} <= {
        i18n.state_label(st, "en")
        for st in ("running", "idle", "down", "setup", "starved", "blocked", "planned_maintenance", "unknown")
    }  # type: ignore[arg-type]
    counts = texts(got[ids.LINE_COUNTS]["children"])
    assert ORDER in counts and "500" in counts and "0.0 %" in counts
    energy = by_id(got[ids.LINE_ENERGY]["children"], "line-energy-value")
    assert energy["children"] == "–"  # machining weighs nothing: energy per tonne is undefined, not 0
