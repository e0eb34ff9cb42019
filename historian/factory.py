"""Build the configured store from a HistorianConfig: backend by URL, secrets from env or file.

``open_store`` gives the full store (the writer's); ``open_reader`` the read-only interface, for
dashboards, analytics and reports. ``SHOPFLOOR_HISTORIAN_URL`` overrides the configured URL (handy
for tests and one-off runs).
"""

from __future__ import annotations

import os
from pathlib import Path

from historian.base import Store
from historian.reader import HistorianReader
from shopfloor.config.historian_url import parse_url
from shopfloor.config.schema import HistorianConfig
from shopfloor.secrets import read_secret

URL_ENV = "SHOPFLOOR_HISTORIAN_URL"


def open_store(config: HistorianConfig, base_dir: str | Path | None = None) -> Store:
    """The store object (not yet opened). Relative SQLite paths are taken from ``base_dir``."""
    return _build(config, base_dir, read_only=False)


def open_reader(config: HistorianConfig, base_dir: str | Path | None = None) -> HistorianReader:
    """A reader of the configured store (not yet opened); it never creates a database or a file.

    Wrap it in ``historian.reader.SyncReader`` to call it from threads that are not async.
    """
    return _build(config, base_dir, read_only=True)


def _build(config: HistorianConfig, base_dir: str | Path | None, read_only: bool) -> Store:
    url = parse_url(os.environ.get(URL_ENV) or config.url)
    if url.backend == "sqlite":
        from historian.sqlite_store import SQLiteStore

        path = Path(url.database)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        return SQLiteStore(path, create=not read_only)
    if url.backend == "influxdb-v1":
        from historian.influx_v1 import InfluxV1Store

        password = read_secret(config.password_env, config.password_file, "historian password")
        create = config.create_database and not read_only
        return InfluxV1Store(url, config.username, password, config.timeout_s, create)
    from historian.influx_v2 import InfluxV2Store

    token = read_secret(config.token_env, config.token_file, "historian token")
    return InfluxV2Store(url, token, config.timeout_s)
