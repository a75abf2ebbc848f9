"""``posbatch host …`` commands: thin shells that print what the store holds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from posbatch.batch.host_effects import AddException
from posbatch.cli import app as root_app
from posbatch.host.cli import app, open_store
from testbed import MASTER_KEY_HEX, MERCHANT_ID, TERMINAL_ID, cli_database

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A data dir; on the PostgreSQL run the store is the fresh schema of db_url."""
    cli_database(db_url, monkeypatch)
    return str(tmp_path / "data")


def test_add_terminal_generates_and_prints_a_key(data_dir: str) -> None:
    """Without --master-key-file a key is generated and printed as 32 hex digits."""
    result = runner.invoke(
        app,
        [
            "add-terminal",
            "--merchant-id",
            MERCHANT_ID,
            "--terminal-id",
            TERMINAL_ID,
            "--data-dir",
            data_dir,
        ],
    )
    key_line = result.output.splitlines()[-1]
    assert (result.exit_code, key_line[:12], len(key_line.split()[-1])) == (0, "master key: ", 32)


def test_list_terminals_shows_registered_terminals(data_dir: str) -> None:
    """A registered terminal is listed active and not signed on."""
    runner.invoke(app, ["add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
                        "--master-key-file", "-", "--data-dir", data_dir],
                  input=MASTER_KEY_HEX + "\n")  # fmt: skip
    result = runner.invoke(app, ["list-terminals", "--data-dir", data_dir])
    row = result.output.splitlines()[1].split()
    assert row[:4] == [TERMINAL_ID, MERCHANT_ID, "active", "no"]


def test_duplicate_terminal_is_an_error(data_dir: str) -> None:
    """Registering the same terminal twice exits 2 with a message."""
    arguments = ["add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
                 "--data-dir", data_dir]  # fmt: skip
    runner.invoke(app, arguments)
    result = runner.invoke(app, arguments)
    assert (result.exit_code, "already registered" in result.output) == (2, True)


def test_suspend_then_list(data_dir: str) -> None:
    """suspend marks the terminal suspended in the list."""
    runner.invoke(app, ["add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
                        "--data-dir", data_dir])  # fmt: skip
    runner.invoke(app, ["suspend", TERMINAL_ID, "--data-dir", data_dir])
    result = runner.invoke(app, ["list-terminals", "--data-dir", data_dir])
    assert result.output.splitlines()[1].split()[2] == "suspended"


def test_every_command_has_an_example() -> None:
    """Each command's help names an Example line."""
    missing = [
        command.name
        for command in typer.main.get_command(app).commands.values()  # type: ignore[attr-defined]
        if "Example:" not in (command.help or "")
    ]
    assert missing == []


def test_host_doctor_unknown_terminal_exits_2(data_dir: str) -> None:
    """posbatch host doctor on a terminal the host does not know exits 2."""
    runner.invoke(app, ["add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
                        "--data-dir", data_dir])  # fmt: skip
    # `host doctor` belongs to doctor (the host never imports doctor): mounted by the root command.
    result = runner.invoke(root_app, ["host", "doctor", "99999999", "--data-dir", data_dir])
    assert result.exit_code == 2


def test_exceptions_show_amounts_in_yuan_and_only_those_there_are(data_dir: str) -> None:
    """`host exceptions`: a record with only the host's amount shows 'host 42.50' — not
    'terminal None, host 4250' (Python's None, and fen to someone who reads yuan)."""
    runner.invoke(app, ["add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
                        "--data-dir", data_dir])  # fmt: skip
    store = open_store(Path(data_dir))
    try:
        with store.transaction() as tx:
            tx.apply((
                AddException(TERMINAL_ID, MERCHANT_ID, None, None, None, "host_only",
                             "approved at the host only", None, 4_250, datetime.now(UTC)),
            ))  # fmt: skip
    finally:
        store.close()
    result = runner.invoke(app, ["exceptions", "--data-dir", data_dir])
    assert (0, True, False) == (
        result.exit_code,
        "approved at the host only (host 42.50)" in result.output,
        "None" in result.output,
    ), result.output


def test_exceptions_mask_a_card_number_in_a_cause(data_dir: str) -> None:
    """`host exceptions` prints a record's cause (free text: an advance's reason as typed)
    with a card number in it masked to its first 6 and last 4; the terminal id stays."""
    runner.invoke(app, ["add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
                        "--data-dir", data_dir])  # fmt: skip
    store = open_store(Path(data_dir))
    try:
        with store.transaction() as tx:
            tx.apply((
                AddException(TERMINAL_ID, MERCHANT_ID, None, None, None, "batch-advanced",
                             "cardholder 6222028719463520178 / 6222 0212 3456 7890 128", None,
                             None, datetime.now(UTC)),
            ))  # fmt: skip
    finally:
        store.close()
    result = runner.invoke(app, ["exceptions", "--data-dir", data_dir])
    assert (0, True, True, False, False) == (
        result.exit_code,
        "cardholder 622202*********0178 / 622202*********0128" in result.output,
        TERMINAL_ID in result.output,
        "6222028719463520178" in result.output,
        "6222 0212 3456 7890 128" in result.output,
    ), result.output
