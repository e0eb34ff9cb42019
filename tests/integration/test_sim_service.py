"""The simulator as a service and a command: restarts continue the simulated time, no placeholder
value is ever served, a taken port is one line, and asyncua stays quiet unless asked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import Client, ua

from plant_simulator.clock import NS, parse_start
from plant_simulator.opcua_server import NAMESPACE_URI, node_id_string
from plant_simulator.service import SimulatorOptions, SimulatorService, plant_for, resume_start_ns
from plant_simulator.state import read_state
from shopfloor.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CNC = "qijiang/machining/gearbox-line/cnc-1"


def options(state_dir: Path | None, **kw: object) -> SimulatorOptions:
    base: dict[str, object] = {
        "speed": 1000.0,
        "opcua_port": free_port(),
        "modbus_port": 0,
        "tick_s": 0.05,
        "state_dir": state_dir,
    }
    return SimulatorOptions(**(base | kw))  # type: ignore[arg-type]


async def read_stamps(port: int, signals: list[tuple[str, str]]) -> list[ua.DataValue]:
    async with Client(f"opc.tcp://127.0.0.1:{port}/shopfloor/simulator", timeout=10) as c:
        ns = await c.get_namespace_index(NAMESPACE_URI)
        nodes = [c.get_node(ua.NodeId(node_id_string(a, s), ns)) for a, s in signals]
        return list(await c.read_attributes(nodes))


def ns_of(dv: ua.DataValue) -> int:
    assert dv.SourceTimestamp is not None
    return int(dv.SourceTimestamp.replace(tzinfo=UTC).timestamp()) * NS


async def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
async def started() -> AsyncIterator[list[SimulatorService]]:
    """Services a test starts; every one is stopped afterwards."""
    services: list[SimulatorService] = []
    yield services
    for s in services:
        await s.stop()


# -- item: a restart never serves a timestamp it served before -------------------------------------
async def test_a_restart_resumes_after_the_last_served_time(
    tmp_path: Path, started: list[SimulatorService]
) -> None:
    state = tmp_path / "state"
    first = SimulatorService(plant_for(None, 0, resume_start_ns(state, time.time_ns())), options(state))
    started.append(first)
    await first.start()
    port = first.options.opcua_port
    await wait_for(lambda: first.publisher is not None and first.publisher.last_step >= 200)
    (dv,) = await read_stamps(port, [(CNC, "spindle_load")])
    await first.stop()
    served = first.publisher.last_ts_ns
    assert ns_of(dv) <= served
    saved = read_state(state)
    assert saved is not None and saved.clean_stop and saved.served_until_ns == served

    # at 1000x the first run ran far ahead of the wall clock: "now" would serve its timestamps again
    assert served > time.time_ns() + 60 * NS
    second = SimulatorService(plant_for(None, 0, resume_start_ns(state, time.time_ns())), options(state))
    started.append(second)
    await second.start()
    assert second.plant.start_ns == served + NS  # the step after the last one served
    (again,) = await read_stamps(second.options.opcua_port, [(CNC, "spindle_load")])
    assert ns_of(again) > served


async def test_after_a_crash_the_next_run_still_starts_after_everything_served(
    tmp_path: Path, started: list[SimulatorService]
) -> None:
    state = tmp_path / "state"
    svc = SimulatorService(plant_for(None, 0, resume_start_ns(state, time.time_ns())), options(state))
    started.append(svc)
    await svc.start()
    await wait_for(lambda: svc.publisher is not None and svc.publisher.last_step >= 300)
    # a crash: the process dies between two state writes, without the clean stop
    assert svc._task is not None
    svc._task.cancel()
    await asyncio.sleep(0.1)
    served = svc.publisher.last_ts_ns
    saved = read_state(state)
    assert saved is not None and not saved.clean_stop
    assert saved.served_until_ns >= served  # reserved before it was served
    assert resume_start_ns(state, time.time_ns()) > served


async def test_an_explicit_start_before_the_served_time_is_used_with_a_warning(
    tmp_path: Path, started: list[SimulatorService], caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    first = SimulatorService(plant_for(None, 0, parse_start("2030-01-01T00:00:00Z")), options(state))
    started.append(first)
    await first.start()
    await wait_for(lambda: first.publisher is not None and first.publisher.last_step >= 100)
    await first.stop()
    high = read_state(state).served_until_ns  # type: ignore[union-attr]
    explicit = parse_start("2029-01-01T00:00:00Z")
    second = SimulatorService(plant_for(None, 0, explicit), options(state))
    started.append(second)
    await second.start()
    await second.stop()
    assert second.plant.start_ns == explicit  # an explicit --start wins
    assert "at or before" in caplog.text and "overwritten" in caplog.text
    # ... but the high-water mark is kept: a later resumed run still starts after the first run
    assert read_state(state).served_until_ns == high  # type: ignore[union-attr]
    assert resume_start_ns(state, explicit) == high + NS


# -- item: no placeholder value at start ----------------------------------------------------------
async def test_the_first_values_a_client_reads_are_the_models_at_simulated_time(
    started: list[SimulatorService],
) -> None:
    start = parse_start("2020-06-01T00:00:00Z")  # far from the wall clock, to tell the two apart
    plant = plant_for(None, 0, start)
    svc = SimulatorService(plant, options(None, speed=1.0, tick_s=0.5))
    started.append(svc)
    await svc.start()
    signals = [(a, s.name) for a in plant.assets for s in plant.signals(a)]
    values = await read_stamps(svc.options.opcua_port, signals)  # straight after start
    assert len(values) == len(signals) == 231
    for (asset, name), dv in zip(signals, values, strict=True):
        assert dv.StatusCode.value != ua.StatusCodes.BadWaitingForInitialData, (asset, name)
        assert 0 <= (ns_of(dv) - start) // NS < 60, (asset, name, dv.SourceTimestamp)
        if dv.StatusCode.is_good():
            i = plant.signal_index(asset, name)
            model = float(plant.block(0).values[asset][i, (ns_of(dv) - start) // NS])
            assert float(dv.Value.Value) == pytest.approx(model if model == model else 0.0, abs=1), name


# -- item: a taken port is one line, and asyncua is quiet ------------------------------------------
def simulate(*argv: str) -> list[str]:
    return [sys.executable, "-m", "shopfloor.app.cli", "simulate", *argv]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}


@pytest.mark.parametrize("flag", ["--opcua-port", "--modbus-port"])
def test_a_taken_port_is_one_line_naming_it_and_exit_2(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--modbus-port" if flag == "--opcua-port" else "--opcua-port"
        out = subprocess.run(
            simulate(flag, str(port), other, "0", "--state-dir", str(tmp_path)),
            env=env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0] and flag in lines[0]


def serve_briefly(tmp_path: Path, *extra: str, stop: signal.Signals = signal.SIGINT) -> str:
    """Start ``shopfloor simulate`` (OPC UA only), wait until it serves, stop it; its stderr."""
    cmd = simulate(
        "--opcua-port", str(free_port()), "--modbus-port", "0", "--state-dir", str(tmp_path), *extra
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, env=env(), cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "simulating 14 assets" in line:
                break
        proc.send_signal(stop)
        try:
            _, rest = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # say where it hangs: faulthandler dumps every thread on SIGABRT
            proc.send_signal(signal.SIGABRT)
            _, rest = proc.communicate(timeout=30)
            raise AssertionError(f"no exit within 120 s of {stop.name}:\n{''.join(lines)}{rest}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = "".join(lines) + rest
    assert "simulating 14 assets" in text, text[-3000:]
    return text


def test_asyncua_info_lines_only_with_verbose(tmp_path: Path) -> None:
    def asyncua_info(text: str) -> int:
        return sum(1 for ln in text.splitlines() if " INFO " in ln and "asyncua" in ln)

    quiet = serve_briefly(tmp_path / "quiet")
    assert asyncua_info(quiet) == 0, quiet[:2000]
    saved = json.loads((tmp_path / "quiet" / "state.json").read_text())
    assert saved["clean_stop"]  # Ctrl-C stops cleanly and records the served time
    verbose = serve_briefly(tmp_path / "verbose", "--verbose", stop=signal.SIGTERM)
    assert asyncua_info(verbose) > 100
    assert datetime.fromtimestamp(saved["served_until_ns"] / 1e9, UTC).year >= 2020
    # SIGTERM (systemd, docker stop) is a clean stop too
    assert json.loads((tmp_path / "verbose" / "state.json").read_text())["clean_stop"]
