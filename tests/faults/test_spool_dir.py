"""A spool directory that cannot be used ends `shopfloor acquire` with one line that names the
directory, the cause and the fix (exit 2), never a traceback: a read-only file system (a tmpfs mounted
read-only, needs root) and a spool already in use by a running acquisition."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shopfloor.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
site: q
assets:
  - path: q/a/l/m
    signals: [{{name: x}}]
sources:
  - name: plc
    connector: modbus
    settings: {{host: 127.0.0.1, port: {port}, timeout_s: 0.2}}
    tags: [{{asset: q/a/l/m, signal: x, table: holding, address: 1, type: uint16}}]
historian:
  url: sqlite:///{tmp}/h.db
  spool: {{dir: "{spool}"}}
"""


@pytest.fixture
def read_only_dir(tmpfs: Callable[[str], Path]) -> Path:
    return tmpfs("size=64k,ro")


def acquire(tmp_path: Path, spool: Path, name: str = "plant.yaml") -> subprocess.Popen[str]:
    config = tmp_path / name
    config.write_text(CONFIG.format(port=free_port(), tmp=tmp_path, spool=spool))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SHOPFLOOR_HISTORIAN_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "shopfloor.app.cli", "acquire", "--config", str(config)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_read_only_spool_directory_is_one_line_and_exit_2(tmp_path: Path, read_only_dir: Path) -> None:
    proc = acquire(tmp_path, read_only_dir / "spool")
    _, err = proc.communicate(timeout=60)
    lines = [x for x in err.splitlines() if x.strip()]
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    (line,) = [x for x in lines if "spool directory" in x]
    assert str(read_only_dir / "spool") in line and "Read-only file system" in line
    assert "set historian.spool.dir" in line


def test_a_second_acquisition_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = acquire(tmp_path, spool, "one.yaml")
    try:
        for _ in range(200):  # until the first one holds the lock
            if (spool / "lock").exists() and (spool / "lock").read_text().strip() == str(first.pid):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the first acquisition never locked its spool")
        second = acquire(tmp_path, spool, "two.yaml")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert "Traceback" not in err
        assert f"is in use by another Shopfloor process (pid {first.pid})" in err
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert first.returncode == 0
