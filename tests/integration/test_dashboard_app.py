"""The dashboard behind waitress over real stores: every route refuses a request without a login, each page
renders for a logged-in user, and the live tiles carry the state the historian holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dashboard_support import NS, History, history, login, serve

from dashboard.server import DashboardService

PAGES = ("/", "/line", "/asset", "/maintenance", "/quality", "/mes", "/system")


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> History:
    return history(tmp_path_factory.mktemp("dash"))


@pytest.fixture(scope="module")
def dash_url(hist: History) -> Iterator[str]:
    with serve(hist.cfg) as svc:
        yield svc.url


def test_every_route_refuses_an_anonymous_request(dash_url: str) -> None:
    for path in (
        "_dash-layout",
        "_dash-dependencies",
        "_dash-component-suites/dash/dcc/dash_core_components.js",
    ):
        assert requests.get(dash_url + path, timeout=10, allow_redirects=False).status_code == 401, path
    r = requests.post(dash_url + "_dash-update-component", json={"output": "x", "inputs": []}, timeout=10)
    assert r.status_code == 401
    for page in PAGES:
        r = requests.get(dash_url + page.lstrip("/"), timeout=10, allow_redirects=False)
        assert r.status_code == 302 and "/login?next=" in r.headers["Location"], page
    assert requests.get(dash_url + "healthz", timeout=10).text == "ok\n"


def test_a_wrong_password_is_refused_and_the_next_target_stays_on_this_server(dash_url: str) -> None:
    r = requests.post(dash_url + "login", data={"username": "viewer", "password": "nope"}, timeout=10)
    assert r.status_code == 401
    s = requests.Session()
    r = s.post(
        dash_url + "login",
        data={"username": "viewer", "password": "viewer-pass-1", "next": "https://evil.example/"},
        timeout=10,
        allow_redirects=False,
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_logged_in_user_gets_the_layout_and_the_callbacks(dash_url: str) -> None:
    s = login(dash_url, "viewer")
    assert s.get(dash_url + "_dash-layout", timeout=10).status_code == 200
    deps = s.get(dash_url + "_dash-dependencies", timeout=10).json()
    assert any("plant-map" in d["output"] for d in deps)
    for page in PAGES:
        assert s.get(dash_url + page.lstrip("/"), timeout=10).status_code == 200, page
    s.get(dash_url + "logout", timeout=10)
    assert s.get(dash_url + "_dash-layout", timeout=10, allow_redirects=False).status_code == 401


def test_tiles_show_the_state_the_historian_holds(hist: History) -> None:
    from dashboard.data import PlantData

    svc = DashboardService(hist.cfg, port=0)
    svc.build()
    try:
        assert svc.reader is not None
        data = PlantData(hist.cfg, svc.reader, None)
        tiles = {t.path: t for t in data.tiles()}
        assert set(tiles) == {a.path for a in hist.cfg.assets}
        end = hist.plant.block(hist.plant.next_block - 1)
        for path, t in tiles.items():
            code = int(end.values[path][hist.plant.signal_index(path, "state"), -10])
            want = str(hist.cfg.mes.state_codes[code])
            assert t.state == want, path
    finally:
        svc.stop_sync()


def test_the_same_pages_work_on_influxdb(tmp_path: Path, influxd: Any, influx_db: str) -> None:
    """A real influxd (v1 API) as the historian: the tiles carry the stored states, charts get at most the
    buckets they asked for, and the pages and the live plant-map callback answer through the server."""
    from dashboard.data import PlantData

    url = f"influxdb-v1+{influxd.base_url}/{influx_db}"
    h = history(tmp_path, hours=3, historian=url)
    with serve(h.cfg) as svc:
        assert svc.reader is not None
        data = PlantData(h.cfg, svc.reader, None)
        tiles = {t.path: t for t in data.tiles()}
        end = h.plant.block(h.plant.next_block - 1)
        for path, t in tiles.items():
            code = int(end.values[path][h.plant.signal_index(path, "state"), -10])
            assert t.state == str(h.cfg.mes.state_codes[code]), path
        asset = h.cfg.assets[0].path
        frame = data.series(asset, "power", h.end_ns - 3 * 3600 * NS, h.end_ns, points=100)
        assert 50 <= len(frame) <= 100 and (frame.value == frame.value).all()
        s = login(svc.url, "viewer")
        for page in PAGES:
            assert s.get(svc.url + page.lstrip("/"), timeout=30).status_code == 200, page
        body = {
            "output": "plant-map.children",
            "outputs": {"id": "plant-map", "property": "children"},
            "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
            "changedPropIds": ["tick.n_intervals"],
            "state": [],
        }
        r = s.post(svc.url + "_dash-update-component", json=body, timeout=30)
        assert r.status_code == 200 and f'"data-asset": "{asset}"' in json.dumps(r.json())
