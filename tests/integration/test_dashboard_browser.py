"""The dashboard in a real browser against the running demo pipeline (simulator → OPC UA → acquisition →
historian → MES → dashboard): pages load without console errors, a forced trip turns its tile red, an
engineer can acknowledge an alert and a viewer cannot, and the language switch changes the labels.

Screenshots of every page are saved to $SHOPFLOOR_SCREENSHOTS (default: the test's temp folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from browser_support import chromium, severe_console
from test_demo import demo_config

from shopfloor.config import load_plant_config
from shopfloor.testing.servers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PAGES = {"plant": "/", "line": "/line", "asset": "/asset", "maintenance": "/maintenance",
         "quality": "/quality", "mes": "/mes", "system": "/system"}  # fmt: skip
VIEWER_PASSWORD = "viewer-pass-1"


@dataclass
class Demo:
    url: str
    cwd: Path
    config: Path
    opcua: str
    password: str
    log: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("browser-demo")
    config = demo_config(tmp)
    port = free_port()
    log = tmp / "demo.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SHOPFLOOR_HISTORIAN_URL", None)
    cmd = [sys.executable, "-m", "shopfloor.app.cli", "demo", "--config", str(config), "--port", str(port),
           "--speed", "60", "--history-days", "2"]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        password = _wait_ready(proc, url, log)
        from dashboard.auth import Users

        Users(tmp / "var/dashboard/users.json").set("viewer", "viewer", VIEWER_PASSWORD)
        text = config.read_text()
        opcua = "opc.tcp://127.0.0.1:" + text.split("opc.tcp://127.0.0.1:", 1)[1].split("/", 1)[0] + "/"
        yield Demo(url, tmp, config, opcua, password, log)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited: {log.read_text()[-3000:]}")
        m = re.search(r"log in as demo / (\S+)", log.read_text())
        if m:
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "healthz", timeout=2).status_code == 200:
                    return m.group(1)
        time.sleep(0.5)
    raise AssertionError(f"the demo's dashboard did not come up: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = Path(os.environ.get("SHOPFLOOR_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def log_in(driver: Any, url: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(url + "login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "nav"))


def wait_loaded(driver: Any) -> None:
    """Until Dash has rendered the page and no callback is pending."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "return document.querySelector('#_dash-app-content, #react-entry-point') !== null"
            " && document.querySelectorAll('[data-dash-is-loading=\"true\"]').length === 0"
        )
    )


def test_every_page_loads_without_console_errors(demo: Demo, shots: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(tmp_path / "profile") as d:
        log_in(d, demo.url, "demo", demo.password)
        severe_console(d)
        for name, path in PAGES.items():
            d.get(demo.url + path.lstrip("/"))
            wait_loaded(d)
            WebDriverWait(d, 20).until(lambda d: d.find_elements(By.TAG_NAME, "h2"))
            time.sleep(2.5)  # a live update or two, so the screenshot shows live data
            d.save_screenshot(str(shots / f"{name}.png"))
            errors = severe_console(d)
            assert not errors, f"{path}: {errors}"


def test_a_forced_trip_turns_its_tile_red(demo: Demo, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cfg = load_plant_config(demo.config)
    asset = cfg.assets[0].path
    with chromium(tmp_path / "profile") as d:
        log_in(d, demo.url, "demo", demo.password)
        d.get(demo.url)
        sel = f"[data-asset='{asset}'] [data-state]"
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, sel))
        assert d.find_element(By.CSS_SELECTOR, sel).get_attribute("data-state") != "down"
        asyncio.run(trip(demo.opcua, asset, 3600.0))
        WebDriverWait(d, 30, poll_frequency=0.5).until(
            lambda d: d.find_element(By.CSS_SELECTOR, sel).get_attribute("data-state") == "down"
        )
        colour = d.find_element(By.CSS_SELECTOR, f"[data-asset='{asset}']").value_of_css_property(
            "background-color"
        )
        assert colour in ("rgba(248, 81, 73, 1)", "rgb(248, 81, 73)"), colour


async def trip(endpoint: str, asset: str, seconds: float) -> None:
    from asyncua import Client, ua

    from plant_simulator.opcua_server import NAMESPACE_URI

    async with Client(endpoint, timeout=10) as c:
        ns = await c.get_namespace_index(NAMESPACE_URI)
        obj = await c.nodes.objects.get_child([f"{ns}:{p}" for p in asset.split("/")])
        await obj.call_method(f"{ns}:Trip", ua.Variant(seconds, ua.VariantType.Double))


def shows(driver: Any, css: str, value: str, attr: str | None = None) -> bool:
    """Whether an element matching ``css`` now has this text (or attribute ``attr``): pages redraw while
    they load, so a found element can go stale before it is read."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return any(
            (e.get_attribute(attr) if attr else e.text) == value
            for e in driver.find_elements(By.CSS_SELECTOR, css)
        )
    except StaleElementReferenceException:
        return False


def test_the_language_switch_changes_the_labels(demo: Demo, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def until(css: str, value: str, attr: str | None = None) -> None:
        WebDriverWait(d, 30, poll_frequency=0.25).until(
            lambda d: shows(d, css, value, attr), f"{css} never showed {value!r}"
        )

    with chromium(tmp_path / "profile") as d:
        log_in(d, demo.url, "demo", demo.password)
        d.get(demo.url + "system")
        until("#nav-plant", "Plant")
        until("h2", "System")
        d.find_element(By.ID, "lang-switch").click()
        until("#nav-plant", "全厂总览")
        until("h2", "系统")
        until("#lang-switch", "English")
        # plotly's own words follow: the trend chart's zoom button is titled in Chinese, then in English
        zoom = "#line-trends .modebar-btn[data-val='zoom']"
        d.get(demo.url + "line")
        until(zoom, "缩放", "data-title")
        d.find_element(By.ID, "lang-switch").click()
        until("#nav-plant", "Plant")
        until(zoom, "Zoom", "data-title")
        assert not shows(d, zoom, "缩放", "data-title")


def open_request(demo: Demo, asset: str) -> int:
    from mes.db import open_engine
    from mes.maintenance import MaintenanceRequest
    from mes.repository import Repository

    cfg = load_plant_config(demo.config)
    engine = open_engine(f"sqlite:///{demo.cwd / 'var/mes/mes.db'}")
    repo = Repository(engine, cfg.mes)
    req = MaintenanceRequest(
        key=f"pdm:equipment:{asset}:spindle_bearing:{time.time_ns()}",
        asset=asset,
        kind="equipment",
        subject="spindle_bearing",
        opened_ns=time.time_ns(),
        rul_hours=1.0,  # the most urgent: first in the table
        rul_low_hours=0.5,
        rul_high_hours=2.0,
        score=0.9,
        evidence=("spindle_vibration.std",),
    )
    rid, created = repo.open_request(req)
    assert created
    return rid


def request_status(demo: Demo, rid: int) -> tuple[str, str | None]:
    import sqlite3

    with sqlite3.connect(demo.cwd / "var/mes/mes.db") as db:
        row = db.execute(
            "SELECT status, updated_by FROM maintenance_requests WHERE id = ?", (rid,)
        ).fetchone()
    return row[0], row[1]


def test_an_engineer_acknowledges_an_alert_and_a_viewer_cannot(demo: Demo, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cfg = load_plant_config(demo.config)
    rid = open_request(demo, cfg.mes.assets[0].path)
    button = f"[id*='\"id\":{rid}'][id*='mnt-ack']"
    with chromium(tmp_path / "viewer") as d:
        log_in(d, demo.url, "viewer", VIEWER_PASSWORD)
        d.get(demo.url + "maintenance")
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, button))
        ack = d.find_element(By.CSS_SELECTOR, button)
        assert not ack.is_enabled()
        d.execute_script("arguments[0].disabled = false; arguments[0].click();", ack)  # past the page's guard
        time.sleep(3)  # a few update cycles: nothing may change (the server refuses a viewer too:
        assert request_status(demo, rid)[0] == "open"  # test_dashboard_pages_a posts it directly)
    with chromium(tmp_path / "engineer") as d:
        log_in(d, demo.url, "demo", demo.password)
        d.get(demo.url + "maintenance")
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, button))
        ack = d.find_element(By.CSS_SELECTOR, button)
        assert ack.is_enabled()
        ack.click()
        WebDriverWait(d, 20).until(lambda d: request_status(demo, rid)[0] == "acknowledged")
        assert request_status(demo, rid) == ("acknowledged", "demo")
