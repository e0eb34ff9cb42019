"""Hung peers (fault rows 7 and 9): the simulator process is frozen with SIGSTOP, its sockets left open.
Each connector must report the source unavailable, emit nothing Good, back off, and resume with a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from shopfloor.config import parse_plant_config
from shopfloor.config.sources import validate_sources
from shopfloor.config.yaml_source import parse_yaml
from shopfloor.connector import Connector, SourceContext
from shopfloor.model import EventKind, Quality, Signal
from shopfloor.testing.connector_contract import RecordingSink
from shopfloor.testing.servers import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "qijiang-plant.yaml"
ASSETS = ("qijiang/machining/gearbox-line/cnc-1", "qijiang/copper/hot-rolling/mill-1")
WAIT_S = 30.0  # bound of every wait below (a bound, never an asserted duration)
HOLD_S = 8.0  # how long the plant stays frozen after the loss was detected
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 4.0


@dataclass
class FrozenPlant:
    """The simulator in its own process, so that it can be frozen (SIGSTOP) and thawed (SIGCONT)."""

    proc: subprocess.Popen[bytes]
    opcua_port: int
    modbus_port: int
    log_path: Path

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[FrozenPlant]:
    opcua_port, modbus_port = free_port(), free_port()
    log_path = tmp_path / "simulator.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "plant_simulator", "--opcua-port", str(opcua_port)]
    cmd += ["--modbus-port", str(modbus_port), "--speed", "10"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    fp = FrozenPlant(proc, opcua_port, modbus_port, log_path)
    try:
        deadline = time.monotonic() + 60
        while not (_port_open(opcua_port) and _port_open(modbus_port)):
            if proc.poll() is not None:
                pytest.fail(f"simulator exited with {proc.returncode}: {fp.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"simulator did not open its ports: {fp.log_tail()}")
            time.sleep(0.1)
        yield fp
    finally:  # by PID, always thawed first: a stopped process ignores SIGTERM until continued
        with contextlib.suppress(ProcessLookupError):
            fp.thaw()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def build(tmp_path: Path, connector: str, settings: dict[str, Any]) -> Connector[Any, Any]:
    """One source of ``connector`` from the generated example, for ASSETS only, as the contract builds it."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["assets"] = [a for a in doc["assets"] if a["path"] in ASSETS]
    doc.pop("mes", None)  # the MES maps every asset of the plant; these tests keep a few
    (src,) = [s for s in doc["sources"] if s["connector"] == connector]
    src["enabled"] = True
    src["settings"] = {**src["settings"], **settings}
    src["tags"] = [t for t in src["tags"] if t["asset"] in ASSETS]
    doc["sources"] = [src]
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    cfg = parse_plant_config(text, "hung.yaml")
    ((name, (cls, s, tags)),) = validate_sources(cfg, parse_yaml(text, "hung.yaml")).items()
    signals = {(a.path, g.name): Signal(g.name, g.unit, g.type) for a in cfg.assets for g in a.signals}
    return cls(SourceContext(name=name, settings=s, tags=tags, signals=signals, state_dir=tmp_path / "state"))


def max_attempts(window_s: float, initial_s: float, cap_s: float, shortest: float) -> int:
    """Most connect attempts the backoff schedule allows in ``window_s``.

    Every retry waits at least ``shortest`` times the current delay, which doubles up to ``cap_s``;
    counting from the initial delay (the fastest case) plus one attempt at the very start.
    """
    attempts, t, d = 1, 0.0, initial_s
    while True:
        t += shortest * d
        if t > window_s:
            return attempts
        attempts += 1
        d = min(2 * d, cap_s)


async def until(pred: Callable[[], bool], what: str, timeout: float = WAIT_S) -> float:
    """Wait for ``pred`` (bounded); returns the wall seconds it took, for printing only."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def good_after(sink: RecordingSink, t: float) -> int:
    return sum(int((b.quality == Quality.GOOD).sum()) for at, b in sink.batches if at >= t)


def good_between(sink: RecordingSink, t0: float, t1: float) -> int:
    return sum(int((b.quality == Quality.GOOD).sum()) for at, b in sink.batches if t0 <= at <= t1)


def last_quality_before(sink: RecordingSink, t: float) -> dict[tuple[str, str], int]:
    """(asset, signal) -> quality of the last sample emitted before ``t`` (emission order)."""
    out: dict[tuple[str, str], int] = {}
    for at, b in sink.batches:
        if at > t:
            break
        for k, q in zip(b.series.tolist(), b.quality.tolist(), strict=True):
            key = b.keys[k]
            out[(key.asset, key.signal)] = int(q)
    return out


async def freeze_and_thaw(
    plant: FrozenPlant, conn: Connector[Any, Any], sink: RecordingSink, attempts: Callable[[], int]
) -> dict[str, Any]:
    """Freeze until the loss is detected and HOLD_S more, then thaw; the figures of one run."""
    await until(lambda: good_after(sink, 0) > 0 and conn.health().connected, "first good data")
    gaps_before = conn.health().gaps
    attempts_before = attempts()
    cpu0 = time.process_time()
    t_freeze = time.monotonic()
    plant.freeze()
    detect_s = await until(lambda: not conn.health().connected, "the frozen peer to be reported")
    t_detect = time.monotonic()
    flaps = 0
    while time.monotonic() - t_detect < HOLD_S:  # it must stay unavailable while frozen
        flaps += int(conn.health().connected)
        await asyncio.sleep(0.05)
    t_thaw = time.monotonic()
    frozen_s = t_thaw - t_freeze
    cpu_pct = 100 * (time.process_time() - cpu0) / frozen_s
    n_attempts = attempts() - attempts_before
    plant.thaw()
    first_good_s = await until(lambda: good_after(sink, t_thaw) > 0, "good data after the thaw")
    await until(lambda: conn.health().gaps > gaps_before, "a recorded gap")
    await until(lambda: conn.health().connected, "connected after the thaw")
    gap_events = [e for at, e in sink.events if e.kind is EventKind.GAP and at >= t_detect]
    assert flaps == 0, "reported connected while the peer was frozen"
    assert good_between(sink, t_detect, t_thaw) == 0, "a Good value was emitted while the peer was frozen"
    assert gap_events and {e.asset for e in gap_events} == set(ASSETS)
    reason = str(gap_events[0].data.get("reason") or gap_events[0].message)
    for e in gap_events:
        assert e.data.get("source") == conn.ctx.name
    return {
        "detect_s": detect_s,
        "frozen_s": frozen_s,
        "attempts": n_attempts,
        "cpu_pct": cpu_pct,
        "first_good_s": first_good_s,
        "gaps": conn.health().gaps - gaps_before,
        "reason": reason,
        "t_freeze": t_freeze,
        "t_detect": t_detect,
        "t_thaw": t_thaw,
    }


async def test_modbus_hung_plc_goes_bad_backs_off_and_resumes(plant: FrozenPlant, tmp_path: Path) -> None:
    conn = build(
        tmp_path,
        "modbus",
        {
            "port": plant.modbus_port,
            "timeout_s": 1.0,
            "retries": 1,
            "reconnect_initial_s": RECONNECT_INITIAL_S,
            "reconnect_max_s": RECONNECT_MAX_S,
        },
    )
    sink = RecordingSink()
    await conn.start(sink)
    try:
        fig = await freeze_and_thaw(plant, conn, sink, lambda: conn.connect_attempts)  # type: ignore[attr-defined]
    finally:
        await conn.stop()
    h = conn.health()
    bound = max_attempts(fig["frozen_s"], RECONNECT_INITIAL_S, RECONNECT_MAX_S, 0.5)
    print(
        f"\n[hung modbus] detection {fig['detect_s']:.1f} s; frozen {fig['frozen_s']:.1f} s; "
        f"reconnect attempts while frozen {fig['attempts']:.0f} (schedule allows <= {bound}); "
        f"test-process CPU while frozen {fig['cpu_pct']:.1f} %; first good sample {fig['first_good_s']:.1f} s "
        f"after SIGCONT; gap recorded: {'Y' if fig['gaps'] else 'N'}; errors {h.errors}"
    )
    assert fig["attempts"] <= bound
    # every tag went Bad while frozen: nobody can mistake the last value for a live one
    last = last_quality_before(sink, fig["t_thaw"])
    assert len(last) == len(conn.ctx.tags)
    assert set(last.values()) == {int(Quality.BAD)}, last
    outage = [  # the loss is marked once with every tag Bad and NaN
        b
        for at, b in sink.batches
        if fig["t_freeze"] <= at <= fig["t_thaw"]
        and len(np.unique(b.series)) == len(conn.ctx.tags)
        and bool((b.quality == Quality.BAD).all() and np.isnan(b.value).all())
    ]
    assert outage


async def test_opcua_hung_server_detected_by_watchdog_and_resumes(plant: FrozenPlant, tmp_path: Path) -> None:
    settings = {
        "endpoint": f"opc.tcp://127.0.0.1:{plant.opcua_port}/shopfloor/simulator",
        "reconnect_initial_s": RECONNECT_INITIAL_S,
        "reconnect_max_s": RECONNECT_MAX_S,
        "connect_timeout_s": 3.0,
        "watchdog_interval_s": 1.0,
    }
    conn = build(tmp_path, "opcua", settings)
    sink = RecordingSink()
    await conn.start(sink)
    try:
        fig = await freeze_and_thaw(plant, conn, sink, lambda: conn.supervisor.attempts)  # type: ignore[attr-defined]
        sessions = conn.supervisor.sessions  # type: ignore[attr-defined]
        subs = conn.supervisor.session.subscriptions  # type: ignore[attr-defined]
        keepalive_s = {ms: subs.revised[ms] * n / 1000 for ms, n in subs.keepalive_counts.items()}
    finally:
        await conn.stop()
    h = conn.health()
    bound = max_attempts(fig["frozen_s"], RECONNECT_INITIAL_S, RECONNECT_MAX_S, 0.8)
    print(
        f"\n[hung opcua] detection {fig['detect_s']:.1f} s (ServerState watchdog every "
        f"{settings['watchdog_interval_s']:g} s; publishing interval x keep-alive count = "
        f"{', '.join(f'{v:g} s' for v in keepalive_s.values())}); reason: {fig['reason']!r}; "
        f"frozen {fig['frozen_s']:.1f} s; "
        f"reconnect attempts while frozen {fig['attempts']:.0f} (schedule allows <= {bound}); "
        f"test-process CPU while frozen {fig['cpu_pct']:.1f} %; first good sample {fig['first_good_s']:.1f} s "
        f"after SIGCONT; sessions {sessions}; gap recorded: {'Y' if fig['gaps'] else 'N'}"
    )
    assert fig["attempts"] <= bound
    assert sessions >= 2 and h.gaps >= 1
    # the watchdog (a ServerState read that got no answer) or the keep-alive check fired, not a socket error
    assert "connection lost" in fig["reason"] or "keep-alive missed" in fig["reason"], fig["reason"]
