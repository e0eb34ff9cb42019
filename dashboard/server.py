"""Serving the dashboard: waitress (a production WSGI server) on the configured address, as a runner service.

It reads the historian through a read-only reader and the MES through its repository; it writes only
what a user does on purpose (acknowledging an alert), through the MES.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from dashboard import auth
from dashboard.app import create_app
from dashboard.context import Context
from dashboard.data import PlantData
from historian.factory import open_reader
from historian.reader import SyncReader
from mes.db import migrate, open_engine
from mes.repository import Repository
from shopfloor.config.schema import PlantConfig

log = logging.getLogger(__name__)


class DashboardService:
    """``shopfloor dashboard``: the app behind waitress in a thread; ``port`` 0 picks a free one."""

    name = "dashboard"

    def __init__(self, cfg: PlantConfig, *, host: str | None = None, port: int | None = None) -> None:
        self.cfg = cfg
        self.host = host or cfg.dashboard.host
        self.port = cfg.dashboard.port if port is None else port
        self.reader: SyncReader | None = None
        self.server: Any = None
        self._thread: threading.Thread | None = None
        self.app: Any = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def build(self) -> Any:
        """The Dash app for this config (opens the reader and the MES database)."""
        self.reader = SyncReader(open_reader(self.cfg.historian), timeout_s=10.0)
        engine = open_engine(self.cfg.mes)
        migrate(engine)
        repo = Repository(engine, self.cfg.mes)
        users = auth.Users(self.cfg.dashboard.users_file)
        key = auth.session_key(self.cfg.dashboard.secret_key_file)
        ctx = Context(PlantData(self.cfg, self.reader, repo), users, self.cfg)
        self.app = create_app(ctx, key=key)
        if not users.names():
            log.warning(
                "dashboard: no users in %s: nobody can log in (add one: shopfloor dashboard user add NAME)",
                self.cfg.dashboard.users_file,
            )
        return self.app

    async def start(self) -> None:
        from waitress.server import create_server

        app = await asyncio.to_thread(self.build)
        self.server = create_server(
            app.server,
            host=self.host,
            port=self.port,
            threads=self.cfg.dashboard.threads,
            ident="shopfloor",
            channel_timeout=30,
            clear_untrusted_proxy_headers=True,
        )
        self.port = int(self.server.effective_port)
        self._thread = threading.Thread(target=self._serve, name="dashboard-http", daemon=True)
        self._thread.start()
        log.info("dashboard on %s", self.url)

    def _serve(self) -> None:
        try:
            self.server.run()
        except Exception:  # a crash of the HTTP loop is logged; the runner's status shows it stopped
            log.exception("dashboard server stopped")

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)

    def stop_sync(self, timeout_s: float = 5.0) -> None:
        """Close every connection (keep-alive browsers included) and the worker threads."""
        srv = self.server
        if srv is not None:
            from waitress import wasyncore

            # close() alone leaves keep-alive channels registered and run() never returns
            srv.trigger.pull_trigger(lambda: wasyncore.close_all(srv._map))
            if self._thread is not None:
                self._thread.join(timeout_s)
            srv.task_dispatcher.shutdown(timeout=timeout_s)
            self.server = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def status(self) -> str | None:
        alive = self._thread is not None and self._thread.is_alive()
        return f"dashboard: {'serving ' + self.url if alive else 'stopped'}"
