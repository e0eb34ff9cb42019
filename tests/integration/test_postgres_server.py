"""The real PostgreSQL the tests start: tables round-trip, fresh databases are independent, and
stop, kill and restart leave no process behind and keep what was committed (until stop)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from shopfloor.testing.servers import PostgresServer

pytestmark = pytest.mark.postgres


def libpq(url: str) -> str:
    """The SQLAlchemy URL the fixtures return, as a URL psycopg takes."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def cluster_processes(marker: str) -> list[int]:
    """PIDs of live processes whose command line names the cluster, found without the server's
    own bookkeeping: psutil if installed, else pgrep."""
    user = "postgres" if os.geteuid() == 0 else getpass.getuser()
    try:
        import psutil
    except ImportError:
        if not shutil.which("pgrep"):
            pytest.skip("neither psutil nor pgrep to look for leftover processes")
        out = subprocess.run(["pgrep", "-u", user, "-f", marker], capture_output=True, text=True, timeout=10)
        assert out.returncode in (0, 1), out.stderr  # 1: nothing matched
        return [int(pid) for pid in out.stdout.split()]
    found = []
    for p in psutil.process_iter(["username", "cmdline", "status"]):
        info = p.info
        alive = info["status"] != psutil.STATUS_ZOMBIE
        if alive and info["username"] == user and marker in " ".join(info["cmdline"] or []):
            found.append(p.pid)
    return found


def rows(url: str, table: str = "t") -> list[tuple[int, str]]:
    with psycopg.connect(libpq(url), connect_timeout=5) as conn:
        return conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall()


def test_the_fixture_starts_and_a_table_reads_back(postgres: PostgresServer, pg_url: str) -> None:
    assert pg_url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/")
    with psycopg.connect(libpq(pg_url), connect_timeout=5) as conn:
        conn.execute("CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL)")
        conn.execute("INSERT INTO t VALUES (1, 'mill-1'), (2, 'cnc-1')")
    assert rows(pg_url) == [(1, "mill-1"), (2, "cnc-1")]
    # the same URL works through SQLAlchemy, as the MES uses it
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 2
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            assert int(version.split(".")[0]) >= 15
    finally:
        engine.dispose()
    assert cluster_processes(postgres.name)  # sanity: the lookup does see a running cluster


def test_two_fresh_databases_are_independent(postgres: PostgresServer, pg_url: str) -> None:
    other = postgres.create_database(f"b_{uuid.uuid4().hex}")
    assert other != pg_url
    for url, value in ((pg_url, "a"), (other, "b")):
        with psycopg.connect(libpq(url), connect_timeout=5) as conn:
            conn.execute("CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL)")
            conn.execute("INSERT INTO t VALUES (1, %s)", (value,))
    assert rows(pg_url) == [(1, "a")]
    assert rows(other) == [(1, "b")]


def test_stop_leaves_no_process_even_with_a_client_connected(
    postgres_private: PostgresServer,
) -> None:
    server = postgres_private
    marker, cluster_dir, postmaster = server.name, server.cluster_dir, server.proc
    assert postmaster is not None and cluster_dir is not None
    client = psycopg.connect(server.dsn(), connect_timeout=5)  # a fast shutdown disconnects it
    try:
        before = cluster_processes(marker)
        assert postmaster.pid in before and len(before) >= 4  # postmaster, workers, our backend
        server.stop()
    finally:
        client.close()
    assert postmaster.poll() is not None
    assert cluster_processes(marker) == []
    assert not cluster_dir.exists()
    assert server.proc is None and server.pids() == []


def test_kill_then_restart_keeps_committed_data(postgres_private: PostgresServer) -> None:
    server = postgres_private
    url = server.create_database("plant")
    with psycopg.connect(libpq(url), connect_timeout=5) as conn:
        conn.execute("CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL)")
        conn.execute("INSERT INTO t VALUES (1, 'committed')")
    pending = psycopg.connect(libpq(url), connect_timeout=5)
    pending.execute("INSERT INTO t VALUES (2, 'never committed')")  # open transaction
    marker, port = server.name, server.port

    before = cluster_processes(marker)
    server.kill()  # SIGKILL, mid-transaction
    assert cluster_processes(marker) == []
    # reaped too, not zombies: the orphaned backends and workers were reparented to us
    assert [pid for pid in before if Path(f"/proc/{pid}").exists()] == []
    with pytest.raises(psycopg.OperationalError):
        pending.execute("SELECT 1")
    pending.close()

    server.start()  # crash recovery on the same data and port
    assert server.port == port
    assert rows(url) == [(1, "committed")]
    with psycopg.connect(libpq(url), connect_timeout=5) as conn:
        conn.execute("INSERT INTO t VALUES (3, 'after the crash')")

    old = server.proc
    server.restart()  # a clean stop and start: the data is kept too
    assert old is not None and old.poll() is not None and server.proc is not old
    assert rows(url) == [(1, "committed"), (3, "after the crash")]

    server.kill()
    server.stop()  # after a kill: nothing to stop, the cluster is removed
    assert cluster_processes(marker) == []
