"""Migrations to head, run once per test process and replayed after that.

Every storage test runs on a fresh database — a SQLite file, a PostgreSQL schema — and
the store it opens migrates it to head through :func:`posbatch.storage.upgrade`: Alembic
stepping through every revision, ≈ 0.4 s for the host's on PostgreSQL against ≈ 0.07 s for
the very same statements sent again, and ≈ 0.04–0.1 s on SQLite against a few ms. Over
the suite's 2,000-odd store openings that was its largest single cost (measured over
tests/host, tests/terminal and tests/doctor: 1,348 SQLite migrations, 129 s; 222
PostgreSQL ones, 94 s even when replayed).

So, in the tests only: the first two times a process migrates a component (its
migrations' location and version table) on a database of one dialect holding a given set
of tables, the real migration runs and every statement it sends — DDL, the version
table's rows, Alembic's own reads — is recorded as sent to the driver (SQL text and
parameters). When the two recordings are the same, every later migration of that
component to head on a database of that dialect in the same state sends those statements
again, in order, on the connection and in the transaction
:func:`~posbatch.storage.upgrade` opened. When they differ — a migration that writes a
random id or the time, as the catalog's gives each store its identity — Alembic migrates
every time. Anything else — a database where
the component already has its version table, another target than head — runs Alembic as
always.

What keeps this honest:

- ``tests/test_migration_replay.py`` migrates each component both ways and compares the
  two schemas (columns, types, defaults, constraints, indexes, the version row);
- the first migration of each component in every test process is the real one, and every
  test that migrates from an older revision, downgrades, or runs a CLI in a subprocess
  runs Alembic itself;
- a statement the real migration sent that depends on what the schema held (a data
  migration over existing rows) cannot differ between two schemas with the same tables
  and no rows: the recording is keyed by those tables, and taken only when the
  component's version table is absent;
- what a migration is given besides its connection: the host's KEK alone, which on an
  empty schema only makes the migration record the KEK's id — recorded and replayed
  without it, the store records its KEK's id as it opens (``HostStore.open``), as it does
  for a store migrated without one. Any other attribute: Alembic runs.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config
from sqlalchemy.engine import Connection

from posbatch.host.store import KEK_ATTRIBUTE

__all__ = ["MigrationReplay"]

# The tables a schema holds, by dialect (the replay's key, with the component).
_TABLES_SQL = {
    "postgresql": (
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ),
    "sqlite": (
        "SELECT name FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite^_%' ESCAPE '^'"
    ),
}

Recorded = list[tuple[str, Any, bool]]  # SQL text, driver parameters, executemany
_Key = tuple[str, str, str, tuple[str, ...]]  # dialect, migrations, version table, tables
# Real runs compared before a component's recording is replayed: a statement that differs
# between two runs (a random id, the time) would be the same in every replayed database.
RUNS_COMPARED = 2


class MigrationReplay:
    """Stands in for ``alembic.command`` inside :mod:`posbatch.storage` (see the module)."""

    def __init__(self) -> None:
        self.enabled = True
        self.replayed = 0  # migrations replayed rather than run: the tests read it
        # The real runs recorded so far (the first two), and once two were compared: the
        # recording to replay, or None when they differed (a migration that writes a random
        # id or the time: Alembic runs every time).
        self._runs: dict[_Key, list[Recorded]] = {}
        self._replayable: dict[_Key, Recorded | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(alembic_command, name)  # every other command, as Alembic has it

    def upgrade(self, config: Config, revision: str, *args: Any, **kwargs: Any) -> None:
        connection = config.attributes.get("connection")
        if (
            not self.enabled
            or args
            or kwargs
            or revision != "head"
            or not isinstance(connection, Connection)
            or connection.dialect.name not in _TABLES_SQL
        ):
            alembic_command.upgrade(config, revision, *args, **kwargs)
            return
        extra = set(config.attributes) - {"connection", "version_table"}
        if extra - {KEK_ATTRIBUTE}:  # an attribute this replay does not know: Alembic
            alembic_command.upgrade(config, revision)
            return
        version_table = str(config.attributes["version_table"])
        tables = tuple(
            sorted(
                str(name)
                for name in connection.exec_driver_sql(
                    _TABLES_SQL[connection.dialect.name]
                ).scalars()
            )
        )
        if version_table in tables:  # this component was migrated here before: Alembic decides
            alembic_command.upgrade(config, revision)
            return
        # On an empty schema the host's KEK only makes its migration record the KEK's id;
        # without it the store records it as it opens (HostStore.open, _claim_kek). The
        # replay migrates without it, so that one recording serves every KEK.
        config.attributes.pop(KEK_ATTRIBUTE, None)
        key = (
            connection.dialect.name,
            str(config.get_main_option("script_location")),
            version_table,
            tables,
        )
        if key in self._replayable and self._replayable[key] is None:
            alembic_command.upgrade(config, revision)
            return
        recorded = self._replayable.get(key)
        if recorded is not None:
            cursor = connection.connection.cursor()
            try:
                for statement, parameters, many in recorded:
                    if many:
                        cursor.executemany(statement, parameters)
                    else:
                        cursor.execute(statement, parameters)
            finally:
                cursor.close()
            self.replayed += 1
            return
        statements: Recorded = []

        def record(
            _connection: Connection,
            _cursor: Any,
            statement: str,
            parameters: Any,
            _context: Any,
            executemany: bool,
        ) -> None:
            statements.append((statement, parameters, executemany))

        sa.event.listen(connection, "before_cursor_execute", record)
        try:
            alembic_command.upgrade(config, revision)
        finally:
            sa.event.remove(connection, "before_cursor_execute", record)
        runs = self._runs.setdefault(key, [])
        runs.append(statements)
        if len(runs) == RUNS_COMPARED:
            self._replayable[key] = runs[0] if all(run == runs[0] for run in runs) else None
            del self._runs[key]
