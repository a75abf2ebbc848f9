"""The KEK and the data directory from the command line: where the KEK comes from, rotate-kek,
private files (SQLite and PostgreSQL)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from posbatch.cli import app
from posbatch.host.cli import kek, open_store
from posbatch.host.sealing import (
    KEK_ENV,
    KEK_FILE_ENV,
    KEK_FILE_NAME,
    KeyEncryptionKey,
    pending_kek_path,
    stage_rotation,
)
from testbed import MASTER_KEY_HEX, MERCHANT_ID, TERMINAL_ID, cli_database

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with one terminal; on the PostgreSQL run the store is db_url's schema."""
    cli_database(db_url, monkeypatch, also_unset=(KEK_ENV, KEK_FILE_ENV))
    directory = tmp_path / "data"
    result = _host("add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
                   "--master-key-file", "-", "--data-dir", str(directory),
                   input=MASTER_KEY_HEX)  # fmt: skip
    assert result.exit_code == 0, result.output
    return directory


def _host(*arguments: str, input: str | None = None) -> Result:
    return runner.invoke(app, ["host", *arguments], input=input)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_store_makes_its_kek_file_private(data_dir: Path) -> None:
    """The first command that creates the store writes host-kek.key, mode 0600, 64 hex digits."""
    path = data_dir / KEK_FILE_NAME
    assert (_mode(path), len(path.read_text().strip())) == (0o600, 64)


def test_the_data_directory_and_its_files_are_private(data_dir: Path) -> None:
    """Data dir 0700; every file in it 0600 (host.db and its -wal/-shm, key files)."""
    with open_store(data_dir) as store:  # keep the SQLite WAL files open while looking
        store.list_terminals()
        modes = {path.name: _mode(path) for path in data_dir.iterdir()}
    assert _mode(data_dir) == 0o700
    assert modes == dict.fromkeys(modes, 0o600) and KEK_FILE_NAME in modes


@pytest.mark.parametrize("target", ["dir", KEK_FILE_NAME, "host-pan.key"])
def test_a_store_open_to_other_users_is_refused_with_the_fix(data_dir: Path, target: str) -> None:
    """A data dir or key file that others can read: exit 2, one line naming the chmod."""
    path = data_dir if target == "dir" else data_dir / target
    path.chmod(0o755 if target == "dir" else 0o644)
    result = _host("list-terminals", "--data-dir", str(data_dir))
    wanted = "700" if target == "dir" else "600"
    assert result.exit_code == 2
    assert result.output.strip().endswith(f"chmod {wanted} {path}")


def test_the_sqlite_file_open_to_other_users_is_refused(tmp_path: Path) -> None:
    """host.db with mode 0644 (a copy made with a loose umask) is refused."""
    directory = tmp_path / "data"
    _host("add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
          "--data-dir", str(directory))  # fmt: skip
    (directory / "host.db").chmod(0o644)
    result = _host("list-terminals", "--data-dir", str(directory))
    assert (result.exit_code, "chmod 600" in result.output) == (2, True)


def test_a_wrong_kek_in_the_environment_is_one_line(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POSBATCH_HOST_KEK with another KEK: exit 2, one line saying which KEK the store wants."""
    store_kek = kek(data_dir, create=False)
    monkeypatch.setenv(KEK_ENV, "11" * 32)
    result = _host("list-terminals", "--data-dir", str(data_dir))
    assert (result.exit_code, len(result.output.strip().splitlines())) == (2, 1)
    assert f"sealed under KEK {store_kek.kek_id}" in result.output


def test_the_kek_from_a_file_named_in_the_environment(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POSBATCH_HOST_KEK_FILE points at the KEK when the data dir does not hold it."""
    elsewhere = tmp_path / "secrets" / "kek"
    elsewhere.parent.mkdir(mode=0o700)
    (data_dir / KEK_FILE_NAME).rename(elsewhere)
    missing = _host("list-terminals", "--data-dir", str(data_dir))
    monkeypatch.setenv(KEK_FILE_ENV, str(elsewhere))
    found = _host("list-terminals", "--data-dir", str(data_dir))
    assert (missing.exit_code, "no KEK at" in missing.output) == (2, True)
    assert (found.exit_code, TERMINAL_ID in found.output) == (0, True)


def test_a_missing_kek_is_not_made_anew_for_a_sealed_store(data_dir: Path, db_url: str) -> None:
    """A sealed store whose KEK file was lost: refused, and no stray new KEK file is left."""
    (data_dir / KEK_FILE_NAME).unlink()
    result = _host("list-terminals", "--data-dir", str(data_dir))
    assert (result.exit_code, "no KEK at" in result.output) == (2, True)
    assert not (data_dir / KEK_FILE_NAME).exists()


def test_rotate_kek_reseals_and_replaces_the_kek_file(data_dir: Path) -> None:
    """rotate-kek: a new KEK in host-kek.key, the store sealed under it, commands work on."""
    before = kek(data_dir, create=False)
    result = _host("rotate-kek", "--data-dir", str(data_dir))
    after = kek(data_dir, create=False)
    listed = _host("list-terminals", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert before.kek_id != after.kek_id and f"under KEK {after.kek_id}" in result.output
    assert (listed.exit_code, TERMINAL_ID in listed.output) == (0, True)
    assert not pending_kek_path(data_dir / KEK_FILE_NAME).exists()
    assert _mode(data_dir / KEK_FILE_NAME) == 0o600


def test_rotate_kek_to_a_given_file(data_dir: Path, tmp_path: Path) -> None:
    """--new-kek-file: that KEK (made there if absent) becomes the store's KEK."""
    new_file = tmp_path / "new.kek"
    result = _host("rotate-kek", "--data-dir", str(data_dir), "--new-kek-file", str(new_file))
    assert result.exit_code == 0, result.output
    assert (
        kek(data_dir, create=False).kek_id
        == KeyEncryptionKey.from_hex(new_file.read_text(), "new").kek_id
    )


def test_a_crash_between_the_commit_and_the_new_kek_file_is_finished_on_open(
    data_dir: Path,
) -> None:
    """The store committed under the staged KEK, host-kek.key still old: the next command
    finds the staged KEK, puts it in place and works."""
    with open_store(data_dir) as store:
        current = kek(data_dir, create=False)
        new = KeyEncryptionKey.generate()
        stage_rotation(current, new)
        store.rotate_kek(new)  # ... and the process dies before commit_rotation
    result = _host("list-terminals", "--data-dir", str(data_dir))
    assert (result.exit_code, kek(data_dir, create=False).kek_id) == (0, new.kek_id)


def test_a_staged_kek_of_a_rotation_that_never_committed_is_ignored(data_dir: Path) -> None:
    """A crash before the commit leaves host-kek.key in force; the stray .next changes nothing."""
    current = kek(data_dir, create=False)
    stage_rotation(current, KeyEncryptionKey.generate())
    result = _host("list-terminals", "--data-dir", str(data_dir))
    assert (result.exit_code, kek(data_dir, create=False).kek_id) == (0, current.kek_id)


def test_rotate_kek_with_a_kek_from_the_environment_needs_a_new_file(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KEK given in POSBATCH_HOST_KEK cannot be replaced by posbatch: --new-kek-file."""
    value = (data_dir / KEK_FILE_NAME).read_text().strip()
    (data_dir / KEK_FILE_NAME).unlink()
    monkeypatch.setenv(KEK_ENV, value)
    result = _host("rotate-kek", "--data-dir", str(data_dir))
    assert (result.exit_code, "--new-kek-file" in result.output) == (2, True)
