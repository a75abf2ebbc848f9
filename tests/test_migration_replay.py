"""The tests' replay of migrations (tests/migration_replay.py) builds exactly the
database Alembic builds: for every component, on SQLite and on PostgreSQL, a database
migrated by Alembic and one migrated by the replay are compared object by object."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from migration_replay import RUNS_COMPARED, MigrationReplay
from posbatch.catalog import CatalogStore
from posbatch.host.store import HostStore
from posbatch.terminal import Journal
from testbed import postgres_url_or_skip

_COLUMNS = """
SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length,
       numeric_precision, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = current_schema()
"""
_CONSTRAINTS = """
SELECT rel.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid
WHERE rel.relnamespace = current_schema()::regnamespace
"""
_INDEXES = (
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
)


def _open_host(url: str) -> sa.Engine:
    return HostStore.open(url).engine


def _open_journal(url: str) -> sa.Engine:
    return Journal.open(url).engine


def _open_catalog(url: str) -> sa.Engine:
    return CatalogStore.open(url).engine


COMPONENTS = {"host": _open_host, "journal": _open_journal, "catalog": _open_catalog}


_SQLITE_OBJECTS = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
)
_VERSION_TABLES = {
    "postgresql": "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = current_schema() AND table_name LIKE '%%alembic_version'",
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' "
    "AND name LIKE '%alembic_version'",
}


def _described(engine: sa.Engine, url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every object of the database at ``url`` and its version rows, comparable across
    databases (PostgreSQL's schema name taken out of index definitions)."""
    dialect = engine.dialect.name
    with engine.connect() as connection:
        if dialect == "postgresql":
            schema = url.rpartition("%3D")[2]
            described = {
                name: sorted(tuple(row) for row in connection.exec_driver_sql(sql))
                for name, sql in (("columns", _COLUMNS), ("constraints", _CONSTRAINTS))
            }
            described["indexes"] = sorted(
                (table, name, definition.replace(f"{schema}.", ""))
                for table, name, definition in connection.exec_driver_sql(_INDEXES)
            )
        else:
            described = {
                "objects": sorted(tuple(row) for row in connection.exec_driver_sql(_SQLITE_OBJECTS))
            }
        versions = [table for (table,) in connection.exec_driver_sql(_VERSION_TABLES[dialect])]
        described["versions"] = sorted(
            (table, *row)
            for table in versions
            for row in connection.exec_driver_sql(f"SELECT * FROM {table}")
        )
    engine.dispose()
    return described


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Fresh empty databases of one dialect: SQLite files, or PostgreSQL schemas (a URL
    whose search_path is the schema) dropped at the end."""
    if request.param == "sqlite":
        files = iter(range(1_000))
        yield lambda: f"sqlite:///{tmp_path / f'fresh-{next(files)}.db'}"
        return
    base = postgres_url_or_skip()
    admin = sa.create_engine(base)
    made: list[str] = []

    def new() -> str:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        separator = "&" if "?" in base else "?"
        return f"{base}{separator}options=-csearch_path%3D{schema}"

    yield new
    with admin.begin() as connection:
        for schema in made:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


# Whether a component's migration to head is replayed: the catalog's gives each store a
# random identity (c0002: the store id its changes documents carry), so two of its real
# runs never agree and Alembic migrates every catalog store.
REPLAYED = {"host": True, "journal": True, "catalog": False}


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_a_replayed_migration_builds_the_schema_alembic_builds(
    component: str, migration_replay: MigrationReplay, new_database_url: Callable[[], str]
) -> None:
    opener = COMPONENTS[component]
    was = migration_replay.enabled
    try:
        migration_replay.enabled = False
        url = new_database_url()
        by_alembic = _described(opener(url), url)
        migration_replay.enabled = True
        after = []
        replayed_before = migration_replay.replayed
        # the first of a process are recorded and compared; any after them are replayed
        for _ in range(RUNS_COMPARED + 1):
            url = new_database_url()
            after.append(_described(opener(url), url))
    finally:
        migration_replay.enabled = was
    assert (migration_replay.replayed > replayed_before) == REPLAYED[component]
    assert len(by_alembic["versions"]) == 1  # the comparison compares something
    assert sum(len(rows) for rows in by_alembic.values()) > 5
    assert all(described == by_alembic for described in after)


def test_every_catalog_store_has_its_own_identity(new_database_url: Callable[[], str]) -> None:
    """What a replay of the catalog's migration would break (each store a random id)."""
    ids = set()
    for _ in range(RUNS_COMPARED + 2):
        store = CatalogStore.open(new_database_url())
        ids.add(store.store_id())
        store.engine.dispose()
    assert len(ids) == RUNS_COMPARED + 2


def test_the_replay_leaves_a_partial_migration_to_alembic(
    migration_replay: MigrationReplay, tmp_path: Path
) -> None:
    """A store migrated before (its version table there) is Alembic's to migrate again."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    HostStore.open(url).engine.dispose()
    replayed_before = migration_replay.replayed
    HostStore.open(url).engine.dispose()
    assert migration_replay.replayed == replayed_before
