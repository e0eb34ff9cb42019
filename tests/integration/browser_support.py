"""Headless Debian Chromium driven by Selenium through the system chromedriver (nothing is downloaded).

``chromium(tmp)`` yields a WebDriver with console logging on and a fresh profile; it quits in teardown and
waits (bounded) for the browser's processes to be gone.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shopfloor.testing.servers import require_servers

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # Debian's wrapper means to add it, but its /dev/shm test misfires
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",  # no lookups out
)


def _have() -> bool:
    return Path(CHROMIUM).exists() and Path(DRIVER).exists()


@contextlib.contextmanager
def chromium(profile: Path, width: int = 1920, height: int = 1080) -> Iterator[Any]:
    if not _have():
        msg = f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER})"
        if require_servers():
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=DRIVER)  # a driver path given: Selenium Manager is never run
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        pid = service.process.pid if service.process else None
        driver.quit()
        _wait_gone(profile)
        del pid
        shutil.rmtree(profile, ignore_errors=True)


def _wait_gone(profile: Path, timeout_s: float = 10.0) -> None:
    """Chromium's crash handler outlives quit() by a second or two: wait until no process uses the profile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", str(profile)], capture_output=True, text=True).stdout.split()
        if not out:
            return
        time.sleep(0.2)
    for pid in out:
        with contextlib.suppress(ProcessLookupError, ValueError):
            import os
            import signal

            os.kill(int(pid), signal.SIGKILL)


def severe_console(driver: Any) -> list[str]:
    """The browser console's errors since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
