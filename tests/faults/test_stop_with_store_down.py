"""Stopping `shopfloor acquire` while the historian is unreachable: it says how many points stay in the
spool and leaves without waiting for a store that is not there; a second Ctrl-C leaves at once; the
next start sends every one of those points (here into SQLite, the same spool)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from historian.spool import Spool
from historian.sqlite_store import SQLiteStore
from plant_simulator.config_gen import plant_config
from plant_simulator.plant import default_plant
from plant_simulator.service import SimulatorOptions, SimulatorService
from shopfloor.model import now_ns
from shopfloor.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
ASSET = "qijiang/copper/hot-rolling/mill-1"


def write_config(tmp_path: Path, port: int, url: str) -> Path:
    doc = json.loads(json.dumps(plant_config(default_plant(seed=1, start_ns=now_ns()), modbus_port=port)))
    for src in doc["sources"]:
        src["enabled"] = src["connector"] == "modbus"
        src["tags"] = [t for t in src["tags"] if t["asset"] == ASSET]
    doc["assets"] = [a for a in doc["assets"] if a["path"] == ASSET]
    doc.pop("mes", None)  # the MES maps every asset of the plant; these tests keep a few
    doc["historian"] = {"url": url, "spool": {"dir": str(tmp_path / "spool")}, "timeout_s": 1.0}
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


STARTED: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Every acquisition a test starts is killed by PID in teardown if it is still running."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


async def acquire(config: Path, tmp_path: Path, *extra: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SHOPFLOOR_HISTORIAN_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shopfloor.app.cli", "acquire", "--config", str(config), "--status-every", "1", *extra,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    STARTED.append(proc)
    return proc


async def wait_for_line(
    proc: asyncio.subprocess.Process, pattern: str, seen: list[str], timeout: float = 60
) -> str:
    assert proc.stdout is not None

    async def read() -> str:
        while True:
            raw = await proc.stdout.readline()  # type: ignore[union-attr]
            if not raw:
                raise AssertionError(f"process ended before {pattern!r}:\n" + "".join(seen[-30:]))
            line = raw.decode()
            seen.append(line)
            if re.search(pattern, line):
                return line

    return await asyncio.wait_for(read(), timeout)


async def test_stop_with_the_store_down_says_what_stays_spooled_and_the_next_start_sends_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    sim = SimulatorService(
        default_plant(seed=1, start_ns=now_ns()), SimulatorOptions(speed=10, opcua_port=0, modbus_port=port)
    )
    await sim.start()
    try:
        dead = f"influxdb-v1+http://127.0.0.1:{free_port()}/shopfloor"  # nothing listens there
        config = write_config(tmp_path, port, dead)
        seen: list[str] = []
        proc = await acquire(config, tmp_path)
        await wait_for_line(proc, r"unreachable .*spooling to disk", seen)
        await wait_for_line(proc, r"historian: produced=[1-9]", seen)  # a status line with data spooled
        proc.send_signal(signal.SIGTERM)
        line = await wait_for_line(proc, r"stopped with \d+ points spooled", seen)
        await asyncio.wait_for(proc.wait(), 60)
        out = "".join(seen) + (await proc.stdout.read()).decode()  # type: ignore[union-attr]
        assert proc.returncode == 0, out
        assert "Traceback" not in out
        spooled = int(re.search(r"stopped with (\d+) points spooled", line).group(1))  # type: ignore[union-attr]
        stopped = re.search(r"stopped: produced=(\d+) written=(\d+) pending=(\d+) dropped=(\d+)", out)
        assert stopped, out
        produced, written, pending, dropped = map(int, stopped.groups())
        assert written == 0 and dropped == 0 and pending == produced == spooled  # the invariant, at stop
        first_run_ended = now_ns()  # everything of the first run is stamped before this

        # a second run, this time with the store back (SQLite on the same spool), sends all of it
        sqlite = tmp_path / "h.db"
        write_config(tmp_path, port, f"sqlite:///{sqlite}")
        seen2: list[str] = []
        proc2 = await acquire(config, tmp_path, "--duration", "2")
        await wait_for_line(proc2, r"spool recovered", seen2)
        await asyncio.wait_for(proc2.wait(), 60)
        assert proc2.returncode == 0, "".join(seen2)
    finally:
        await sim.stop()
    store = SQLiteStore(sqlite)
    first_run = len(await store.query_events(0, first_run_ended))
    for key in await store.list_series():
        first_run += len(await store.query_raw(key.asset, key.signal, 0, first_run_ended))
    await store.close()
    assert first_run == spooled  # every point the first run spooled, once, and nothing of its own lost


async def test_a_second_signal_leaves_at_once_and_nothing_is_lost(tmp_path: Path) -> None:
    """The store hangs (a socket that listens and never answers): the orderly stop would wait for the
    in-flight request; a second SIGINT leaves at once, and the spool holds every point produced."""
    port = free_port()
    sim = SimulatorService(
        default_plant(seed=2, start_ns=now_ns()), SimulatorOptions(speed=10, opcua_port=0, modbus_port=port)
    )
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)  # never accepted, never answered
    await sim.start()
    try:
        config = write_config(
            tmp_path, port, f"influxdb-v1+http://127.0.0.1:{hang.getsockname()[1]}/shopfloor"
        )
        doc = yaml.safe_load(config.read_text())
        doc["historian"]["timeout_s"] = 60.0
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        seen: list[str] = []
        proc = await acquire(config, tmp_path)
        await wait_for_line(proc, r"historian: produced=[1-9]", seen)
        proc.send_signal(signal.SIGINT)
        await wait_for_line(proc, r"stopping \(a second Ctrl-C leaves at once\)", seen)
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
        out = "".join(seen) + (await proc.stdout.read()).decode()  # type: ignore[union-attr]
    finally:
        await sim.stop()
        hang.close()
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "second signal: left at once" in out
    left = re.search(r"leaving at once; (\d+) points stay spooled", out)
    stopped = re.search(r"stopped: produced=(\d+) written=(\d+) pending=(\d+)", out)
    assert left and stopped, out
    produced, written, pending = map(int, stopped.groups())
    assert written == 0 and pending == produced == int(left.group(1)) > 0
    # the spool on disk holds every one of them for the next start
    spool = Spool(tmp_path / "spool")
    assert spool.open(readonly=True).points == produced
    spool.close()
