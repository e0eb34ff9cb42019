"""Start and stop real servers (influxd 1.x, VictoriaMetrics, PostgreSQL, Mosquitto) on free loopback ports.

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
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

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

    def popen_kwargs(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments for the server process (user, cwd, ...)."""
        return {"cwd": self.workdir}

    def start(self, timeout_s: float = 30.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        cmd = self.command()
        if self.cpus and shutil.which("taskset"):
            cmd = ["taskset", "-c", self.cpus, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **self.popen_kwargs())
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


class MosquittoServer(_Server):
    """Debian's Mosquitto 2.x broker on 127.0.0.1 with a config of its own (anonymous clients: tests only).

    ``persistence=True`` keeps sessions and queued messages in ``workdir`` (saved every second and at a
    clean stop), so a client with a persistent session gets what was published while it was away,
    across a broker ``kill()`` and ``restart()`` too (what arrived in the last second before a kill
    excepted). No bound on queued or in-flight messages, so the broker itself drops nothing. ``extra``
    is appended to the config (``password_file``, ``acl_file``, a TLS listener, ...).
    """

    binary = "mosquitto"
    package = "mosquitto"

    def __init__(
        self, workdir: str | Path, cpus: str | None = None, *, persistence: bool = False, extra: str = ""
    ) -> None:
        super().__init__(workdir, cpus)
        self.persistence = persistence
        self.extra = extra

    @classmethod
    def find(cls) -> str:
        path = shutil.which(cls.binary) or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
        )
        if not path:
            raise ServerUnavailable(f"mosquitto not found (Debian package: apt-get install -y {cls.package})")
        return path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        import pwd  # POSIX only, like the servers themselves

        cfg = self.workdir / "mosquitto.conf"
        lines = [
            # as root, mosquitto would switch to the mosquitto user, who cannot read our temp dirs
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.persistence:
            (self.workdir / "data").mkdir(exist_ok=True)
            lines += [
                "persistence true",
                f"persistence_location {self.workdir / 'data'}/",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        cfg.write_text("\n".join(lines) + "\n" + self.extra + "\n")
        return [self.find(), "-c", str(cfg)]

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def restart(self, timeout_s: float = 30.0) -> None:
        """Start again on the same port (and, with persistence, the same sessions); kills it first if alive."""
        self.kill()
        self.proc = None
        self.start(timeout_s)

    def pause(self) -> None:
        """SIGSTOP: the broker holds its connections but answers nothing (a hung broker)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # a stopped process would not act on SIGTERM
        super().stop()


PG_ROOT = Path("/usr/lib/postgresql")  # Debian: /usr/lib/postgresql/<major>/bin
PG_PREFERRED = "15"
PG_USER = "postgres"  # the database superuser (initdb -U) and, when we are root, the OS user


_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37  # linux/prctl.h


def _child_subreaper(on: bool | None = None) -> bool | None:
    """Get (``on=None``) or set whether orphans of our descendants are reparented to this process
    instead of PID 1, so that we can reap them; None where prctl is not available (not Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if on is None:
            flag = ctypes.c_int(0)
            if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
                return None
            return bool(flag.value)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0 or None
    except (OSError, AttributeError):
        return None


def _version_key(path: Path) -> tuple[int, ...]:
    major = path.parent.parent.name  # .../<major>/bin/postgres
    return tuple(int(part) for part in major.split(".") if part.isdigit())


class PostgresServer(_Server):
    """Debian's PostgreSQL in a throwaway cluster: trust auth on 127.0.0.1 only, fsync off (tests only).

    The cluster lives in a ``tempfile.mkdtemp()`` directory under /tmp (pytest's tmp dirs are 0700
    root, which the ``postgres`` user cannot traverse); the log stays in ``workdir``. The postmaster is
    our own child (``Popen(user="postgres")``, no runuser or pg_ctl in between), so its PID is
    ``proc.pid``. ``kill()`` and ``restart()`` keep the data; ``stop()`` removes the cluster.
    """

    binary = "postgres"
    package = "postgresql"
    _postmasters: ClassVar[set[int]] = set()  # PIDs that Popen objects own: never reaped by us

    def __init__(self, workdir: str | Path, cpus: str | None = None) -> None:
        super().__init__(workdir, cpus)
        self.cluster_dir: Path | None = None
        self._postgres = self.find()
        self._run_as = self._os_user()

    @classmethod
    def find(cls) -> str:
        preferred = PG_ROOT / PG_PREFERRED / "bin" / cls.binary
        candidates = [preferred, *sorted(PG_ROOT.glob(f"*/bin/{cls.binary}"), key=_version_key)[::-1]]
        on_path = shutil.which(cls.binary)  # a non-Debian layout with initdb beside postgres
        if on_path:
            candidates.append(Path(on_path))
        for path in candidates:
            if path.is_file() and (path.parent / "initdb").is_file():
                cls._os_user()
                return str(path)
        raise ServerUnavailable(
            f"PostgreSQL not found in {PG_ROOT}/*/bin (Debian package: apt-get install -y {cls.package})"
        )

    @staticmethod
    def _os_user() -> dict[str, Any]:
        """Popen arguments that drop root to the ``postgres`` user (PostgreSQL refuses to run as root)."""
        if os.geteuid() != 0:
            return {}
        import pwd

        try:
            pw = pwd.getpwnam(PG_USER)
        except KeyError:
            raise ServerUnavailable(
                f"running as root but there is no {PG_USER!r} user to run PostgreSQL as "
                f"(Debian package: apt-get install -y {PostgresServer.package})"
            ) from None
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @property
    def data_dir(self) -> Path:
        if self.cluster_dir is None:
            raise RuntimeError("no cluster yet: call start() first")
        return self.cluster_dir / "data"

    @property
    def name(self) -> str:
        """The cluster's unique name: in the postmaster's command line and every child's title."""
        return self.data_dir.parent.name

    def dsn(self, db: str = "postgres") -> str:
        """A libpq URL (for ``psycopg.connect``)."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{db}"

    def url(self, db: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{db}"

    def _ensure_cluster(self) -> None:
        if self.cluster_dir is not None and (self.data_dir / "PG_VERSION").exists():
            return
        tmp = "/tmp" if Path("/tmp").is_dir() else None
        self.cluster_dir = Path(tempfile.mkdtemp(prefix="shopfloor-pg-", dir=tmp))
        if self._run_as:
            os.chown(self.cluster_dir, self._run_as["user"], self._run_as["group"])
        initdb = str(Path(self._postgres).parent / "initdb")
        cmd = [initdb, "-D", str(self.data_dir), "-A", "trust", "-U", PG_USER]
        cmd += ["--no-sync", "-E", "UTF8", "--locale=C"]
        with open(self.log_path, "ab") as log:
            try:
                done = subprocess.run(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cluster_dir,
                    timeout=120,
                    check=False,
                    **self._run_as,
                )
            except subprocess.TimeoutExpired:
                done = None
        if done is None or done.returncode != 0:
            self._remove_cluster()
            raise ServerUnavailable(f"initdb failed: {self.log_tail()}")

    def command(self) -> list[str]:
        assert self.cluster_dir is not None
        return [
            self._postgres,
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.cluster_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",  # committed data still survives kill(): the WAL is in the OS page cache
            "-c",
            f"cluster_name={self.name}",
        ]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"cwd": self.cluster_dir, **self._run_as}

    def ready(self) -> bool:
        import psycopg

        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            pass
        try:
            psycopg.connect(self.dsn(), connect_timeout=2).close()
        except psycopg.OperationalError:  # "the database system is starting up", ...
            return False
        return True

    def start(self, timeout_s: float = 60.0) -> None:
        self._ensure_cluster()
        try:
            super().start(timeout_s)
        finally:
            if self.proc:
                PostgresServer._postmasters.add(self.proc.pid)

    def pids(self) -> list[int]:
        """Live processes of this cluster: the postmaster and its children (found by the cluster
        name in their command lines, so orphans of a killed postmaster are found too)."""
        if self.cluster_dir is None:
            return []
        marker = self.name.encode()
        uid = self._run_as.get("user", os.geteuid())
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid and marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))  # a zombie has an empty cmdline: not counted
        return found

    def _zombie_children(self) -> list[int]:
        """Our children that are dead PostgreSQL processes (orphans reparented to us), except the
        postmasters that ``Popen`` objects own."""
        uid = self._run_as.get("user", os.geteuid())
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in PostgresServer._postmasters:
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
                state, ppid = rest.split()[:2]
                ours = state == "Z" and int(ppid) == os.getpid() and comm == self.binary
                if ours and entry.stat().st_uid == uid:
                    found.append(int(entry.name))
        return found

    def _kill_leftovers(self, seen: set[int] | None = None, timeout_s: float = 10.0) -> None:
        """SIGKILL every live process of the cluster until none is left, and reap those that were
        reparented to us (see ``kill()``)."""
        seen = set() if seen is None else seen
        deadline = time.monotonic() + timeout_s
        while True:
            live = self.pids()
            seen.update(live)
            for pid in live:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid in [*seen, *self._zombie_children()]:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        seen.discard(pid)
                except ChildProcessError:  # not ours (PID 1 reaps it) or reaped already
                    seen.discard(pid)
            if not live and not seen:
                return
            if time.monotonic() > deadline:
                if live:
                    raise RuntimeError(f"PostgreSQL processes {live} survived SIGKILL")
                return  # killed, only not reaped yet
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend and worker, as a crash would; the data stays
        (``start()`` runs crash recovery on it).

        The children call setsid(), so no process group reaches them: they are found by the cluster
        name. While killing, this process is a child subreaper, so the orphans are reparented to it
        and reaped here: no zombie is left for PID 1 (which in a container may never reap it)."""
        was_subreaper = _child_subreaper()
        if was_subreaper is False:
            _child_subreaper(True)
        try:
            seen = set(self.pids())
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)  # its children are ours now
            seen.discard(self.proc.pid if self.proc else -1)
            self._kill_leftovers(seen)
        finally:
            if was_subreaper is False:
                _child_subreaper(False)
            if self.proc:
                PostgresServer._postmasters.discard(self.proc.pid)

    def _shutdown(self, timeout_s: float = 15.0) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, then a clean checkpoint); SIGKILL after
        ``timeout_s``. SIGTERM would be a smart shutdown, waiting for every client to leave."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._kill_leftovers()
        if self.proc:
            PostgresServer._postmasters.discard(self.proc.pid)
        self.proc = None

    def restart(self, timeout_s: float = 60.0) -> None:
        """Stop cleanly and start again on the same port and data."""
        self._shutdown()
        self.start(timeout_s)

    def stop(self) -> None:
        """Shut down and remove the cluster (use ``restart()`` to keep the data)."""
        self._shutdown()
        self._remove_cluster()

    def _remove_cluster(self) -> None:
        if self.cluster_dir is None:
            return
        pid_file = self.cluster_dir / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, IndexError, ValueError, subprocess.SubprocessError):
            # left by kill(): free the small System V segment it names ("key id" on line 7),
            # if it is still that segment (same key and id) and nothing is attached to it
            key_id = pid_file.read_text().splitlines()[6].split()[:2]
            for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
                key, shm_id, *_, nattch = line.split()[:7]
                if [key, shm_id] == key_id and nattch == "0" and shutil.which("ipcrm"):
                    subprocess.run(["ipcrm", "-m", shm_id], capture_output=True, timeout=10)
        shutil.rmtree(self.cluster_dir, ignore_errors=True)
        self.cluster_dir = None

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)
