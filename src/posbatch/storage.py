"""Engines and migrations shared by every store (host, catalog, terminal journal).

One rule for all of them: SQLite is the embedded default and runs in WAL mode
with ``synchronous=FULL`` (a commit is on disk when it returns), foreign keys on
and a busy timeout; PostgreSQL is chosen by URL
(``postgresql+psycopg://user@host:5432/db``).

Each component keeps its own Alembic script directory and its own version
table, so components migrate independently and can share one database::

    engine = create_engine("sqlite:///posbatch-data/host.db")
    upgrade(engine, "posbatch.host:migrations", version_table="host_alembic_version")

A component's ``migrations/env.py`` is two lines: it calls :func:`run_env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.engine import Engine

from posbatch.errors import ConfigError, StorageError

__all__ = [
    "DATABASE_URL_ENV",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine",
    "database_url",
    "is_sqlite",
    "run_env",
    "upgrade",
]

DATABASE_URL_ENV = "POSBATCH_DATABASE_URL"
SQLITE_BUSY_TIMEOUT_MS = 10_000
POOL_SIZE_MAX = 10


def database_url(
    data_dir: Path, *, file_name: str, environ: Mapping[str, str] | None = None
) -> str:
    """The URL to use: ``POSBATCH_DATABASE_URL`` if set, else a SQLite file in ``data_dir``."""
    env = os.environ if environ is None else environ
    url = env.get(DATABASE_URL_ENV, "").strip()
    if url:
        return url
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / file_name).resolve()}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit off at the driver level is what SQLAlchemy expects; the
    # pragmas below must run outside a transaction.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def create_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url`` with the durability settings of the house."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, echo=echo)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(
            url, echo=echo, pool_size=POOL_SIZE_MAX, max_overflow=0, pool_pre_ping=True
        )
    raise ConfigError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql+psycopg"
    )


def upgrade(engine: Engine, script_location: str, *, version_table: str) -> None:
    """Bring the component whose migrations live at ``script_location`` to its head.

    Runs inside one transaction per component (PostgreSQL has transactional
    DDL; on SQLite each migration is its own transaction), with the
    component's own version table.
    """
    config = Config()
    config.set_main_option("script_location", script_location)
    config.attributes["version_table"] = version_table
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"migration of {script_location} failed: {exc}") from exc


def run_env(target_metadata: sa.MetaData | None = None) -> None:
    """Body of every component's ``migrations/env.py`` (online mode only)."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise ConfigError("posbatch migrations run through posbatch.storage.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
