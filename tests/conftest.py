"""Shared fixtures: real servers on loopback (skipped, or failed under SHOPFLOOR_REQUIRE_SERVERS=1).

Every server a test starts is stopped by PID in teardown.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopfloor.testing.servers import (
    InfluxDB1Server,
    PostgresServer,
    ServerUnavailable,
    VictoriaMetricsServer,
    require_servers,
)

_db_counter = itertools.count()


def _start(cls: type, workdir: Path):  # type: ignore[no-untyped-def]
    try:
        cls.find()
    except ServerUnavailable as exc:
        if require_servers():
            pytest.fail(f"SHOPFLOOR_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(str(exc))
    server = cls(workdir)
    server.start()
    return server


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
    """One influxd for the session; tests use their own database (see ``influx_db``)."""
    server = _start(InfluxDB1Server, tmp_path_factory.mktemp("influxd"))
    yield server
    server.stop()


@pytest.fixture
def influxd_private(tmp_path: Path) -> Iterator[InfluxDB1Server]:
    """An influxd of this test's own, for tests that kill or pause it."""
    server = _start(InfluxDB1Server, tmp_path / "influxd")
    yield server
    server.stop()


@pytest.fixture
def influx_db(influxd: InfluxDB1Server) -> str:
    """A fresh database name on the session influxd."""
    name = f"t{next(_db_counter)}"
    influxd.create_database(name)
    return name


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    server = _start(VictoriaMetricsServer, tmp_path_factory.mktemp("victoria"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL for the session; tests use their own database (see ``pg_url``)."""
    server = _start(PostgresServer, tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """The SQLAlchemy URL of a fresh database on the session PostgreSQL."""
    return postgres.create_database(f"t{next(_db_counter)}")


@pytest.fixture
def postgres_private(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, for tests that kill or restart it."""
    server = _start(PostgresServer, tmp_path / "postgres")
    yield server
    server.stop()
