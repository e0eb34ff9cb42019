"""`shopfloor dashboard` survives browsers that hang up mid-response: the command line restores the default
SIGPIPE action only for commands that print and end, never for one that serves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from dashboard_support import write_config

from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.plant import Plant
from shopfloor.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def sigpipe_ignored(pid: int) -> bool:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("SigIgn:"))
    return bool(int(line.split()[1], 16) & (1 << (13 - 1)))  # SIGPIPE is signal 13


def test_hanging_up_mid_response_does_not_kill_the_dashboard(tmp_path: Path) -> None:
    config = write_config(tmp_path, Plant([CncMachiningCentre("works/machining/line-1/cnc-1", "")], seed=1))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "shopfloor.app.cli",
        "dashboard",
        "--config",
        str(config),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(300):  # bounded: until it answers
            try:
                if requests.get(url + "healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        assert sigpipe_ignored(proc.pid)
        for _ in range(30):  # ask for a page and hang up before reading the answer
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
        assert requests.get(url + "healthz", timeout=5).status_code == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
    out = subprocess.run(
        [sys.executable, "-c", "import signal, sys; from shopfloor.app.cli import main; "
         "main(['config', 'schema']); print(signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL, file=sys.stderr)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert out.stderr.strip().endswith("True")  # a printing command still ends quietly in a pipe
