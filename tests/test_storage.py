"""Engines and per-component Alembic migrations (posbatch.storage), on SQLite and PostgreSQL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from posbatch.errors import ConfigError, StorageError
from posbatch.storage import (
    DATABASE_URL_ENV,
    SQLITE_BUSY_TIMEOUT_MS,
    check_private,
    create_engine,
    database_url,
    is_sqlite,
    make_private_dir,
    upgrade,
    write_private_file,
)

ENV_PY = "from posbatch.storage import run_env\n\nrun_env()\n"
REVISION = '''"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    {body}


def downgrade() -> None:
    pass
'''


def _script_dir(tmp_path: Path, *revisions: tuple[str, str]) -> str:
    """A throwaway Alembic script directory whose revisions run ``body`` one after another."""
    root = tmp_path / "migrations"
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text(ENV_PY)
    down: str | None = None
    for revision, body in revisions:
        (root / "versions" / f"{revision}.py").write_text(
            REVISION.format(message=revision, revision=revision, down_revision=down, body=body)
        )
        down = revision
    return str(root)


CREATE_THINGS = 'op.create_table("things", sa.Column("id", sa.Integer, primary_key=True))'


def test_sqlite_engine_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    """Every SQLite connection gets WAL, synchronous=FULL, foreign keys and a busy timeout."""
    engine = create_engine(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'x.db'}")
    with engine.connect() as connection:
        pragmas = tuple(
            connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        )
    engine.dispose()
    assert ("wal", 2, 1, SQLITE_BUSY_TIMEOUT_MS) == pragmas  # synchronous 2 = FULL


def test_engine_connects_on_both_databases(db_url: str) -> None:
    """create_engine works for the SQLite and PostgreSQL URLs of the house."""
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert 1 == connection.execute(sa.text("select 1")).scalar()
    assert is_sqlite(engine) == db_url.startswith("sqlite")
    engine.dispose()


def test_upgrade_applies_and_records_the_head(db_url: str, tmp_path: Path) -> None:
    """upgrade runs the migrations and records the head in the component's own version table."""
    engine = create_engine(db_url)
    script = _script_dir(
        tmp_path,
        ("r0001", CREATE_THINGS),
        ("r0002", 'op.add_column("things", sa.Column("name", sa.String(20)))'),
    )
    upgrade(engine, script, version_table="things_alembic_version")
    with engine.connect() as connection:
        version = connection.execute(
            sa.text("select version_num from things_alembic_version")
        ).scalar_one()
        columns = {column["name"] for column in sa.inspect(connection).get_columns("things")}
    engine.dispose()
    assert ("r0002", {"id", "name"}) == (version, columns)


def test_upgrade_twice_changes_nothing(db_url: str, tmp_path: Path) -> None:
    """A second upgrade at head is a no-op (components upgrade at every start)."""
    engine = create_engine(db_url)
    script = _script_dir(tmp_path, ("r0001", CREATE_THINGS))
    upgrade(engine, script, version_table="v_one")
    upgrade(engine, script, version_table="v_one")
    with engine.connect() as connection:
        versions = connection.execute(sa.text("select version_num from v_one")).scalars().all()
    engine.dispose()
    assert ["r0001"] == versions


def test_components_keep_separate_version_tables(db_url: str, tmp_path: Path) -> None:
    """Two components in one database each record their own head."""
    engine = create_engine(db_url)
    upgrade(
        engine, _script_dir(tmp_path / "a", ("a0001", CREATE_THINGS)), version_table="a_version"
    )
    upgrade(
        engine,
        _script_dir(
            tmp_path / "b",
            ("b0001", 'op.create_table("others", sa.Column("id", sa.Integer, primary_key=True))'),
        ),
        version_table="b_version",
    )
    with engine.connect() as connection:
        heads = [
            connection.execute(sa.text(f"select version_num from {table}")).scalar_one()
            for table in ("a_version", "b_version")
        ]
    engine.dispose()
    assert ["a0001", "b0001"] == heads


def test_failing_migration_is_a_storage_error(db_url: str, tmp_path: Path) -> None:
    """A migration that fails raises StorageError naming the script location."""
    engine = create_engine(db_url)
    script = _script_dir(tmp_path, ("r0001", 'op.execute("this is not sql")'))
    with pytest.raises(StorageError, match=f"migration of {script} failed"):
        upgrade(engine, script, version_table="v_bad")
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "not a url",
            "not a database URL: 'not a url' (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB)",
        ),
        ("mysql://user@host/db", "unsupported database 'mysql': use sqlite or postgresql+psycopg"),
    ],
)
def test_bad_url_is_a_config_error(url: str, message: str) -> None:
    """A URL we cannot use is a ConfigError that says why."""
    with pytest.raises(ConfigError) as error:
        create_engine(url)
    assert message == str(error.value)


def test_database_url_prefers_the_environment(tmp_path: Path) -> None:
    """POSBATCH_DATABASE_URL wins over the SQLite default."""
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert url == database_url(tmp_path, file_name="host.db", environ={DATABASE_URL_ENV: url})


def test_database_url_defaults_to_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    """Without the variable the URL is a SQLite file in the data directory; nothing is created
    (a command that only reads must not leave an empty store behind a typo)."""
    data_dir = tmp_path / "data"
    url = database_url(data_dir, file_name="host.db", environ={})
    assert f"sqlite:///{(data_dir / 'host.db').resolve()}" == url
    assert not data_dir.exists()


def test_a_new_sqlite_file_and_its_directories_are_private(tmp_path: Path) -> None:
    """create_engine makes missing directories 0700 and the database (and its WAL) 0600."""
    path = tmp_path / "a" / "b" / "x.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()
        }  # -wal and -shm exist while the connection is open
        directories = [stat.S_IMODE(d.stat().st_mode) for d in (path.parent, path.parent.parent)]
    engine.dispose()
    assert directories == [0o700, 0o700]
    assert modes == {"x.db": 0o600, "x.db-wal": 0o600, "x.db-shm": 0o600}


def test_a_file_open_to_other_users_is_refused_with_the_chmod(tmp_path: Path) -> None:
    """check_private names the file, its mode and the chmod that fixes it."""
    path = tmp_path / "secret"
    path.write_text("x")
    path.chmod(0o640)
    with pytest.raises(ConfigError) as error:
        check_private(path)
    assert str(error.value) == (
        f"{path} is open to other users (mode 640); posbatch refuses it: chmod 600 {path}"
    )


def test_a_private_file_is_written_once_when_exclusive(tmp_path: Path) -> None:
    """exclusive=True never replaces a file another process made first."""
    path = tmp_path / "d" / "key"
    first = write_private_file(path, "one", exclusive=True)
    second = write_private_file(path, "two", exclusive=True)
    assert (first, second, path.read_text(), stat.S_IMODE(path.stat().st_mode)) == (
        True,
        False,
        "one",
        0o600,
    )
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no temporary file left


def test_a_data_dir_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    """--data-dir pointing at a file: ConfigError, not a traceback."""
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        make_private_dir(tmp_path / "afile" / "data")
