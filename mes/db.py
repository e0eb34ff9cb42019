"""Opening the MES database (SQLite by default, PostgreSQL at scale) and migrating it with Alembic.

The password comes from an env var or a file, never the URL; SQLite runs in WAL mode with a busy timeout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from shopfloor.config.mes import MesConfig

MIGRATIONS = Path(__file__).with_name("migrations")


class MesDatabaseError(RuntimeError):
    """The MES database cannot be opened or is at a schema this version does not know."""


def _password(cfg: MesConfig) -> str | None:
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise MesDatabaseError(f"mes.password_env: environment variable {cfg.password_env} is not set")
        return value
    if cfg.password_file:
        try:
            return cfg.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MesDatabaseError(
                f"mes.password_file: cannot read {cfg.password_file}: {exc.strerror}"
            ) from exc
    return None


def open_engine(cfg: MesConfig | str, **kwargs: Any) -> Engine:
    """An engine for ``cfg.database`` (or a URL); creates the SQLite file's folder if needed."""
    if isinstance(cfg, str):
        cfg = MesConfig(database=cfg)
    url = make_url(cfg.database)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    pw = _password(cfg)
    if pw is not None:
        url = url.set(password=pw)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def describe(engine: Engine) -> str:
    """The database URL with any password hidden."""
    return engine.url.render_as_string(hide_password=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", describe(engine).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config(create_engine("sqlite://"))).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the schema to ``revision``; returns (revision before, revision after)."""
    before = current_revision(engine)
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions()}
    if before is not None and before not in known:
        raise MesDatabaseError(
            f"the MES database is at schema revision {before}, which this version of Shopfloor does not "
            "know (it was migrated by a newer version): upgrade Shopfloor or point mes.database elsewhere"
        )
    cfg = alembic_config(engine)
    plugins = logging.getLogger("alembic.runtime.plugins")
    if plugins.level == logging.NOTSET:  # alembic 1.18+ lists its plugins at INFO on every upgrade
        plugins.setLevel(logging.WARNING)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return before, current_revision(engine) or ""
