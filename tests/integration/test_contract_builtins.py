"""The built-in connectors pass the same contract suite integrators run against theirs.

The virtual plant runs in its own process (the contract's device hook is synchronous).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from shopfloor.testing.connector_contract import ConnectorContract
from shopfloor.testing.servers import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples/qijiang-plant.yaml"
ASSETS = ("qijiang/machining/gearbox-line/cnc-1", "qijiang/copper/hot-rolling/mill-1")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class SimulatorDevice:
    """Starts ``python -m plant_simulator`` on free ports; the config text points the source at it."""

    connector: ClassVar[str] = ""
    proc: subprocess.Popen[bytes] | None = None

    def source_text(self, opcua_port: int, modbus_port: int) -> str:
        doc = yaml.safe_load(EXAMPLE.read_text())
        doc["assets"] = [a for a in doc["assets"] if a["path"] in ASSETS]
        doc.pop("mes", None)  # the MES maps every asset of the plant; these tests keep a few
        (src,) = [s for s in doc["sources"] if s["connector"] == self.connector]
        src["enabled"] = True
        src["tags"] = [t for t in src["tags"] if t["asset"] in ASSETS]
        if self.connector == "opcua":
            src["settings"]["endpoint"] = src["settings"]["endpoint"].replace(":4840/", f":{opcua_port}/")
        else:
            src["settings"]["port"] = modbus_port
        doc["sources"] = [src]
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)

    def setup_device(self, tmp_path: Path) -> None:
        opcua_port, modbus_port = free_port(), free_port()
        type(self).source_yaml = self.source_text(opcua_port, modbus_port)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "plant_simulator", "--opcua-port", str(opcua_port),
               "--modbus-port", str(modbus_port), "--speed", "10",
               "--state-dir", str(tmp_path / "sim-state")]  # fmt: skip
        log = open(tmp_path / "simulator.log", "wb")  # noqa: SIM115 - closed in teardown
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._log = log
        deadline = time.monotonic() + 60
        while not (_port_open(opcua_port) and _port_open(modbus_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.teardown_device()
                pytest.fail(f"simulator did not start: {(tmp_path / 'simulator.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def teardown_device(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class TestModbusContract(SimulatorDevice, ConnectorContract):
    connector = "modbus"
    connector_name = "modbus"
    source_yaml = ""
    bad_settings: ClassVar = [({"port": 70000}, "port"), ({"timeout": 3}, "timeout")]

    def test_bad_settings_give_located_errors(self, tmp_path: Path) -> None:
        type(self).source_yaml = self.source_text(4840, 5020)  # no device needed to check config
        super().test_bad_settings_give_located_errors(tmp_path)


class TestOpcUaContract(SimulatorDevice, ConnectorContract):
    connector = "opcua"
    connector_name = "opcua"
    source_yaml = ""
    bad_settings: ClassVar = [
        ({"security_mode": "Encrypt"}, "security_mode"),
        ({"password": "x"}, "password"),
    ]

    def test_bad_settings_give_located_errors(self, tmp_path: Path) -> None:
        type(self).source_yaml = self.source_text(4840, 5020)
        super().test_bad_settings_give_located_errors(tmp_path)
