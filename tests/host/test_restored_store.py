"""A host store put back on a new machine (SQLite and PostgreSQL): what its data directory
must hold, and a database that is not a host store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from posbatch.cli import app
from posbatch.errors import ConfigError
from posbatch.host import HostStore
from posbatch.host.cli import PAN_KEY_FILE_NAME
from posbatch.host.sealing import KEK_ENV, KEK_FILE_ENV, KeyEncryptionKey
from posbatch.storage import DATABASE_URL_ENV
from testbed import MASTER_KEY_HEX, MERCHANT_ID, TERMINAL_ID, cli_database

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with one terminal; on the PostgreSQL run the store is db_url's schema."""
    cli_database(db_url, monkeypatch, also_unset=(KEK_ENV, KEK_FILE_ENV))
    directory = tmp_path / "data"
    result = _add_terminal(directory, TERMINAL_ID)
    assert result.exit_code == 0, result.output
    return directory


def _add_terminal(data_dir: Path, terminal_id: str) -> Result:
    return runner.invoke(
        app,
        ["host", "add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", terminal_id,
         "--master-key-file", "-", "--data-dir", str(data_dir)],
        input=MASTER_KEY_HEX,
    )  # fmt: skip


def test_a_store_without_its_pan_key_is_refused_not_given_a_new_one(data_dir: Path) -> None:
    """host-pan.key left behind in a restore: refused in one line, and no new key is made
    (a new one would match none of the store's cards: voids and refunds declined 14)."""
    (data_dir / PAN_KEY_FILE_NAME).unlink()
    result = _add_terminal(data_dir, "10000002")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert (result.exit_code, len(lines)) == (2, 1), result.output
    assert f"no PAN key at {data_dir / PAN_KEY_FILE_NAME}" in lines[0]
    assert not (data_dir / PAN_KEY_FILE_NAME).exists()


def test_a_store_with_its_pan_key_put_back_opens(data_dir: Path) -> None:
    """The same store with the key restored beside it trades on (the key is not replaced)."""
    key = (data_dir / PAN_KEY_FILE_NAME).read_bytes()
    (data_dir / PAN_KEY_FILE_NAME).unlink()
    assert _add_terminal(data_dir, "10000002").exit_code == 2
    (data_dir / PAN_KEY_FILE_NAME).write_bytes(key)
    (data_dir / PAN_KEY_FILE_NAME).chmod(0o600)
    result = _add_terminal(data_dir, "10000002")
    assert (result.exit_code, (data_dir / PAN_KEY_FILE_NAME).read_bytes()) == (0, key)


def test_a_store_with_another_stores_pan_key_is_refused(data_dir: Path) -> None:
    """A restore that put back ANOTHER data directory's host-pan.key: refused in one line,
    naming both keys' ids and neither key (every card would have been hashed anew under
    the wrong key: no void or refund of an earlier sale found its sale, no duplicate
    found); the store's own key put back, it opens again."""
    key = (data_dir / PAN_KEY_FILE_NAME).read_bytes()
    other = bytes.fromhex(key.decode().strip())[::-1].hex()
    (data_dir / PAN_KEY_FILE_NAME).write_text(other, encoding="ascii")
    result = _add_terminal(data_dir, "10000002")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert (result.exit_code, len(lines)) == (2, 1), result.output
    assert "is not this host store's" in lines[0]
    assert other not in lines[0] and key.decode().strip() not in lines[0]
    (data_dir / PAN_KEY_FILE_NAME).write_bytes(key)
    assert _add_terminal(data_dir, "10000002").exit_code == 0


def test_a_store_made_before_the_key_id_records_the_key_it_is_opened_with(
    tmp_path: Path,
) -> None:
    """A store of the migration before (no pan_key_id) takes the first key it is opened with
    after the upgrade, and refuses another from then on."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    kek = KeyEncryptionKey.generate()
    HostStore.open(url, pan_key=b"a" * 32, kek=kek).close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE host_key_encryption SET pan_key_id = NULL"))
    engine.dispose()
    HostStore.open(url, pan_key=b"b" * 32, kek=kek).close()
    with pytest.raises(ConfigError, match="is not this host store's"):
        HostStore.open(url, pan_key=b"a" * 32, kek=kek)


def _journal_like(path: Path) -> None:
    """A SQLite file of another kind (a terminal's journal stands in) at ``path``."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE journal_entries (id INTEGER PRIMARY KEY)")
    connection.close()
    path.chmod(0o600)


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = sorted(str(row[0]) for row in rows)
    connection.close()
    return names


@pytest.mark.parametrize(
    "argv",
    [
        ["host", "list-terminals"],
        ["host", "rotate-kek"],
        [
            "host",
            "add-terminal",
            "--merchant-id",
            MERCHANT_ID,
            "--terminal-id",
            TERMINAL_ID,
            "--master-key-file",
            "-",
        ],
    ],
)
def test_a_sqlite_file_of_another_kind_is_refused_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """host.db that is not a host store: one line, exit 2, and not migrated into one."""
    for name in (DATABASE_URL_ENV, KEK_ENV, KEK_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "data" / "host.db"
    _journal_like(database)
    data_dir = str(tmp_path / "data")
    result = runner.invoke(app, [*argv, "--data-dir", data_dir], input=MASTER_KEY_HEX)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert (result.exit_code, len(lines)) == (2, 1), result.output
    assert f"{database} is not a posbatch host store" in lines[0]
    assert _tables(database) == ["journal_entries"]
