"""In-memory SQLite databases for the simulation, cloned from a migrated template.

Running Alembic for every simulated journal costs tens of milliseconds; a run
of 100 terminals (and a reinstall now and then) would spend seconds on it.
Instead each kind of database is migrated ONCE per process into a template,
and every new database is a copy of it through SQLite's online backup API
(microseconds). The copy is exactly what the migration produces — same
tables, same version row — so the code under test cannot tell the difference.

Each database is a named shared-cache memory database
(``file:…?mode=memory&cache=shared``) behind an ordinary connection pool, so
that — as with a database file — a read made while a write is open uses a
connection of its own and closing it cannot roll the write back. A *keeper*
connection holds the database alive for as long as the
:class:`MemoryDatabase` object lives: dropping every engine and journal object
over it is what a crash of the process that owns a journal *file* looks like,
and :meth:`MemoryDatabase.engine` opens it again.

``read_uncommitted`` is on because shared-cache SQLite otherwise locks a table
being written against other connections of the same process (a file database
in WAL mode would show the reader the last committed state instead; the
engines under test only read, inside a write, rows that write does not touch).
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from posbatch.host.store import MIGRATIONS as HOST_MIGRATIONS
from posbatch.host.store import VERSION_TABLE as HOST_VERSION_TABLE
from posbatch.storage import upgrade
from posbatch.terminal import MIGRATIONS as JOURNAL_MIGRATIONS
from posbatch.terminal import VERSION_TABLE as JOURNAL_VERSION_TABLE

__all__ = ["HOST", "JOURNAL", "MemoryDatabase"]

HOST: Final = (HOST_MIGRATIONS, HOST_VERSION_TABLE)
JOURNAL: Final = (JOURNAL_MIGRATIONS, JOURNAL_VERSION_TABLE)
# Connections one simulated database may have open at once (a write and a nested read).
POOL_SIZE: Final = 2
POOL_OVERFLOW_MAX: Final = 2

_names = itertools.count(1)
_templates: dict[tuple[str, str], MemoryDatabase] = {}


def _connect(uri: str) -> sqlite3.Connection:
    connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
    connection.execute("PRAGMA read_uncommitted=1")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


class MemoryDatabase:
    """One simulated database file: lives as long as this object, whatever uses it."""

    def __init__(self, kind: tuple[str, str], *, template: bool = False) -> None:
        self.uri = f"file:posbatch-sim-{next(_names)}?mode=memory&cache=shared"
        self._keeper = _connect(self.uri)
        if template:
            engine = self.engine()
            upgrade(engine, kind[0], version_table=kind[1])
            engine.dispose()
            return
        source = _templates.get(kind)
        if source is None:
            source = _templates[kind] = MemoryDatabase(kind, template=True)
        source._keeper.backup(self._keeper)

    def engine(self) -> Engine:
        """A new engine over this database (after a crash: the same data, nothing else)."""
        uri = self.uri
        return sa.create_engine(
            "sqlite://",
            creator=lambda: _connect(uri),
            poolclass=QueuePool,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW_MAX,
        )

    def copy(self) -> MemoryDatabase:
        """A copy of this database as it is now: a person copying the file by hand, a
        journal backup, or that backup put back in place."""
        copied = MemoryDatabase.__new__(MemoryDatabase)
        copied.uri = f"file:posbatch-sim-{next(_names)}?mode=memory&cache=shared"
        copied._keeper = _connect(copied.uri)
        self._keeper.backup(copied._keeper)
        return copied

    def close(self) -> None:
        self._keeper.close()
