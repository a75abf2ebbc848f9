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

Data files are private: a directory this module creates is mode 0700, a SQLite
file 0600 (SQLite gives its ``-wal`` and ``-shm`` files the mode of the
database), and :func:`check_private` refuses a file or directory that other
users can read (``chmod`` fixes it; the message says how).
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.engine import Engine

from posbatch.errors import ConfigError, StorageError, StoreMissingError

__all__ = [
    "DATABASE_URL_ENV",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "SQLITE_BUSY_TIMEOUT_MS",
    "check_data_dir",
    "check_private",
    "check_private_database",
    "copy_sqlite",
    "create_engine",
    "create_private_database",
    "database_url",
    "describe_database_error",
    "is_memory_url",
    "is_sqlite",
    "make_private_dir",
    "read_private_file",
    "replace_file",
    "require_database",
    "run_env",
    "sqlite_path",
    "upgrade",
    "write_owner_only",
    "write_private_file",
]

DATABASE_URL_ENV = "POSBATCH_DATABASE_URL"
SQLITE_BUSY_TIMEOUT_MS = 10_000
POOL_SIZE_MAX = 10
CONNECT_TIMEOUT_S = 10  # a PostgreSQL that does not answer: give up (one line) after this
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_OTHERS_MASK = 0o077  # group and other users: no bit of these on a private file
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
_MEMORY_DATABASES = (None, "", ":memory:")  # what a SQLite URL names for no file


def database_url(
    data_dir: Path, *, file_name: str, environ: Mapping[str, str] | None = None
) -> str:
    """The URL to use: ``POSBATCH_DATABASE_URL`` if set, else a SQLite file in ``data_dir``.

    Nothing is created here: the engine creates a new SQLite file (privately) when told to.
    """
    env = os.environ if environ is None else environ
    url = env.get(DATABASE_URL_ENV, "").strip()
    if url:
        return url
    return f"sqlite:///{(data_dir / file_name).absolute()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL or an in-memory SQLite database."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in _MEMORY_DATABASES:
        return None
    return Path(str(parsed.database))


def require_database(url: str, *, what: str, hint: str) -> None:
    """ConfigError unless the SQLite file of ``url`` exists (nothing is created).

    For the commands that only read or change what exists: a typo in a data
    directory must say so, not leave a new empty store behind.
    """
    path = sqlite_path(url)
    if path is not None and path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"{path.parent} is not a directory")
    if path is not None and not path.is_file():
        raise StoreMissingError(f"no {what} at {path}: check the directory ({hint})")


def is_memory_url(url: str) -> bool:
    """True for an in-memory SQLite URL (``sqlite://``)."""
    parsed = _parse_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in _MEMORY_DATABASES


def _parse_url(url: str) -> sa.engine.URL:
    """``url`` parsed; ConfigError if it is not one, or not of a database posbatch uses."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"not a database URL: {url!r} (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB)"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql+psycopg"
        )
    return parsed


def describe_database_error(exc: BaseException, url: str) -> str:
    """One line a person can act on for a driver error met at ``url`` (no password shown)."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    reason = lines[0] if lines else type(original).__name__
    try:
        where = sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        where = "the database"
    return f"{where}: {reason}"


# --- private files -------------------------------------------------------------------


def make_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700; ConfigError if it is a file."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    if not current.is_dir():
        raise ConfigError(f"{current} is not a directory")
    try:
        for directory in reversed(missing):
            directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from exc


def check_data_dir(path: Path) -> None:
    """ConfigError when the data directory ``path`` is there but is none posbatch can use: a
    file (``--data-dir /etc/passwd`` said "no terminal in /etc/passwd"), another user's
    directory (see :func:`check_private`), or one this user cannot read. A missing one is
    the caller's to name (what it would hold)."""
    status = _status(path)
    if status is None:
        return
    if not stat.S_ISDIR(status.st_mode):
        raise ConfigError(f"{path} is not a directory: --data-dir names a data directory")
    _check_owner(path, status)
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"cannot read {path}: permission denied")


def _status(path: Path) -> os.stat_result | None:
    """``path``'s status; None when there is nothing there, ConfigError when it cannot be read."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _check_owner(path: Path, status: os.stat_result) -> None:
    if status.st_uid != os.geteuid():
        owner = _user_name(status.st_uid)
        raise ConfigError(
            f"{path} belongs to another user ({owner}): posbatch uses only its own user's "
            f"files; run it as {owner}"
        )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_private(path: Path) -> None:
    """ConfigError when ``path`` (a file or directory, if it exists) is open to other users,
    or is another user's: posbatch would leave files of its own user in it (SQLite's -wal and
    -shm beside a journal), which that user could then not open; root too is refused."""
    status = _status(path)
    if status is None:
        return
    _check_owner(path, status)
    mode = stat.S_IMODE(status.st_mode)
    if mode & _OTHERS_MASK:
        wanted = PRIVATE_DIR_MODE if stat.S_ISDIR(status.st_mode) else PRIVATE_FILE_MODE
        raise ConfigError(
            f"{path} is open to other users (mode {mode:03o}); posbatch refuses it: "
            f"chmod {wanted:o} {path}"
        )


def check_private_database(path: Path) -> None:
    """:func:`check_private` for a SQLite file and its -wal/-shm/-journal companions."""
    for candidate in (path, *(path.with_name(path.name + end) for end in _SQLITE_COMPANIONS)):
        check_private(candidate)


def write_owner_only(
    path: Path, text: str, *, encoding: str = "utf-8", newline: str | None = None
) -> None:
    """Write ``text`` to ``path``, an export the user named (a support bundle, a statement,
    a clearing file), readable by its owner only (0600, also when it was there before);
    the directory is the user's and is left as it is. OSError when it cannot be written.

    Only a regular file is made 0600: a device or a pipe named as the export (``--csv
    /dev/stdout``, ``/dev/null``) is written to as it is — its mode is the system's, and
    a command run as root made /dev/null unusable for every other user."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.fchmod(descriptor, PRIVATE_FILE_MODE)
    except OSError:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "w", encoding=encoding, newline=newline) as handle:
        handle.write(text)


def write_private_file(path: Path, text: str, *, exclusive: bool) -> bool:
    """Write ``text`` to ``path`` (mode 0600) atomically and durably.

    ``exclusive``: never replace an existing file (False is returned when one was
    there: another process made it first, and its content stands).
    """
    make_private_dir(path.parent)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:  # mkstemp: mode 0600
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
        else:
            os.replace(temporary, path)
            temporary = ""
        _fsync_dir(path.parent)
        return True
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        if temporary:
            Path(temporary).unlink(missing_ok=True)


def replace_file(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` atomically and durably (same directory)."""
    try:
        os.replace(source, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise StorageError(f"cannot replace {target}: {exc.strerror}") from exc


def read_private_file(path: Path, *, missing: str) -> str:
    """The text of a private file; ConfigError(``missing``) if absent, or if others can read it."""
    if not path.exists():
        raise ConfigError(missing)
    check_private(path)
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def create_private_database(path: Path) -> None:
    """Make the SQLite file ``path`` exist with mode 0600 before SQLite opens it."""
    make_private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a database file") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from exc


def copy_sqlite(source: sqlite3.Connection, destination: Path) -> None:
    """A consistent copy of the open SQLite database ``source`` into ``destination``
    (SQLite's online backup: readers and the writer of ``source`` may go on)."""
    target = sqlite3.connect(destination)
    try:
        source.backup(target)
    finally:
        target.close()


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


def create_engine(url: str, *, echo: bool = False, lock_timeout_ms: int | None = None) -> Engine:
    """An engine for ``url`` with the durability settings of the house.

    A SQLite file that does not exist yet is created with mode 0600 (its missing
    directories 0700) before SQLite opens it. ``lock_timeout_ms`` (PostgreSQL only):
    every session's ``lock_timeout``, so a statement that waits longer than that for a
    row or table lock another session holds fails instead of waiting on (SQLite's own
    bound is its busy timeout).
    """
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None and not path.exists():
            create_private_database(path)
        engine = sa.create_engine(url, echo=echo)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    try:
        engine = sa.create_engine(
            url,
            echo=echo,
            pool_size=POOL_SIZE_MAX,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )
    except (sa.exc.ArgumentError, ImportError) as exc:  # a driver that is not installed
        raise ConfigError(f"cannot use {describe_database_error(exc, url)}") from exc
    if lock_timeout_ms is not None:
        if lock_timeout_ms < 1:
            raise ConfigError(f"lock_timeout_ms must be at least 1, not {lock_timeout_ms}")
        sa.event.listen(engine, "connect", _postgres_lock_timeout(lock_timeout_ms))
    return engine


def _postgres_lock_timeout(lock_timeout_ms: int) -> Any:
    """A "connect" listener that sets the session's ``lock_timeout`` (in its own transaction:
    SQLAlchemy has not begun one yet, and a setting made with SET outlives its commit)."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        dbapi_connection.commit()

    return on_connect


def upgrade(
    engine: Engine,
    script_location: str,
    *,
    version_table: str,
    attributes: Mapping[str, object] | None = None,
) -> None:
    """Bring the component whose migrations live at ``script_location`` to its head.

    Runs inside one transaction per component (PostgreSQL has transactional
    DDL; on SQLite each migration is its own transaction), with the
    component's own version table. ``attributes`` reach the migrations as
    ``context.config.attributes`` (the host passes its KEK so that a migration
    can seal keys).
    """
    config = Config()
    config.set_main_option("script_location", script_location)
    config.attributes.update(attributes or {})
    config.attributes["version_table"] = version_table
    url = engine.url.render_as_string(hide_password=False)
    try:
        connection = engine.connect()
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot open the database {describe_database_error(exc, url)}") from exc
    try:
        with connection, connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"migration of {script_location} failed: {describe_database_error(exc, url)}"
        ) from exc


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
