"""Start and stop real servers (influxd 1.x, VictoriaMetrics) on free loopback ports.

Each server runs from a temporary directory, is stopped by PID, and can be killed and restarted
on the same port and data for fault tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REQUIRE_ENV = "SHOPFLOOR_REQUIRE_SERVERS"


class ServerUnavailable(RuntimeError):
    """The server binary is missing or did not come up."""


def require_servers() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false", "no")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, data: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class _Server:
    binary = ""
    package = ""

    def __init__(self, workdir: str | Path, cpus: str | None = None) -> None:
        self.cpus = cpus  # e.g. "1": pin the server to these CPUs (taskset), for benchmarks
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.binary}.log"

    @classmethod
    def find(cls) -> str:
        path = shutil.which(cls.binary) or (
            f"/usr/bin/{cls.binary}" if Path(f"/usr/bin/{cls.binary}").exists() else None
        )
        if not path:
            raise ServerUnavailable(
                f"{cls.binary} not found (Debian package: apt-get install -y {cls.package})"
            )
        return path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 30.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        cmd = self.command()
        if self.cpus and shutil.which("taskset"):
            cmd = ["taskset", "-c", self.cpus, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerUnavailable(
                    f"{self.binary} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                if self.ready():
                    return
            time.sleep(0.05)
        self.stop()
        raise ServerUnavailable(f"{self.binary} not ready after {timeout_s}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean shutdown."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InfluxDB1Server(_Server):
    """Debian's influxd 1.x with its own config, data and WAL under ``workdir``."""

    binary = "influxd"
    package = "influxdb"

    def command(self) -> list[str]:
        cfg = self.workdir / "influxdb.conf"
        d = self.workdir
        cfg.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "10s"
[coordinator]
  max-select-point = 0
  max-select-series = 0
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-row-limit = 0
  max-body-size = 0
[continuous_queries]
  enabled = false
[monitor]
  store-enabled = false
[logging]
  level = "warn"
"""
        )
        return [self.find(), "-config", str(cfg)]

    def ready(self) -> bool:
        return http("GET", self.base_url + "/ping", timeout=1)[0] == 204

    def query(self, q: str, db: str | None = None) -> bytes:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        status, body = http("POST", self.base_url + "/query?" + urllib.parse.urlencode(params))
        if status != 200:
            raise RuntimeError(f"query failed: HTTP {status} {body[:300]!r}")
        return body

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')


class VictoriaMetricsServer(_Server):
    """Debian's victoria-metrics; it accepts the InfluxDB v2 write API at /api/v2/write."""

    binary = "victoria-metrics"
    package = "victoria-metrics"

    def command(self) -> list[str]:
        return [
            self.find(),
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-loggerLevel=ERROR",
            "-search.disableCache",
        ]

    def ready(self) -> bool:
        return http("GET", self.base_url + "/health", timeout=1)[0] == 200

    def export(self, match: str) -> bytes:
        """Raw series as JSON lines from /api/v1/export (after forcing a flush)."""
        http("GET", self.base_url + "/internal/force_flush")
        q = urllib.parse.urlencode({"match[]": match})
        status, body = http("POST", self.base_url + "/api/v1/export?" + q, timeout=30)
        if status != 200:
            raise RuntimeError(f"export failed: HTTP {status} {body[:300]!r}")
        return body
