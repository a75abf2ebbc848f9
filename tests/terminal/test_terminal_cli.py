"""``posbatch terminal …`` against a real host server on loopback (thin shell checks)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal_world import MASTER_KEY, MERCHANT_ID, PAN, START, TERMINAL_ID
from typer.testing import CliRunner, Result

from posbatch.host import HostCore, HostStore
from posbatch.host.server import HostServer
from posbatch.terminal.cli import app

runner = CliRunner()


@pytest.fixture
def host_address(tmp_path: Path) -> Iterator[str]:
    """A host server running in its own thread and event loop; its HOST:PORT."""
    store = HostStore.open(f"sqlite:///{tmp_path / 'host.db'}", pan_key=b"k" * 32)
    store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    loop = asyncio.new_event_loop()
    server = HostServer(HostCore(store, clock=lambda: START))
    ready = threading.Event()
    address: list[str] = []

    async def main() -> None:
        host, port = await server.start("127.0.0.1", 0)
        address.append(f"{host}:{port}")
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop).result(timeout=10)
    ready.wait(10)
    yield address[0]
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()
    store.close()


def _init(data_dir: Path, host: str) -> None:
    result = runner.invoke(
        app,
        [
            "init",
            "--merchant-id",
            MERCHANT_ID,
            "--terminal-id",
            TERMINAL_ID,
            "--master-key-file",
            "-",
            "--host",
            host,
            "--data-dir",
            str(data_dir),
        ],
        input=MASTER_KEY.hex() + "\n",
    )
    assert result.exit_code == 0, result.output


def _sale(data_dir: Path, amount: str, card: str = PAN) -> Result:
    """A sale whose card number comes on standard input, as a script gives it."""
    return runner.invoke(app, ["sale", amount, "--data-dir", str(data_dir)], input=card + "\n")


def test_sale_receipt_and_settle_from_the_command_line(host_address: str, tmp_path: Path) -> None:
    """init, sale 12.50, receipt, settle: the receipt shows 12.50 and settlement is balanced."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    sale = _sale(data_dir, "12.50")
    receipt = runner.invoke(app, ["receipt", "2", "--data-dir", str(data_dir)])
    settle = runner.invoke(app, ["settle", "--data-dir", str(data_dir)])
    assert (sale.exit_code, receipt.exit_code, settle.exit_code) == (0, 0, 0), settle.output
    assert ("12.50" in receipt.output, "对账平 BALANCED" in settle.output) == (True, True)


def test_amount_with_three_decimals_is_refused(tmp_path: Path) -> None:
    """'12.505' never becomes a sale: exit code 2 and the reason."""
    _init(tmp_path, "127.0.0.1:9")
    result = _sale(tmp_path, "12.505")
    assert (result.exit_code, "at most 2 decimals" in result.output) == (2, True)


def test_every_command_documents_an_example() -> None:
    """Each command's help carries an 'Example:' line."""
    missing = [
        command.name
        for command in app.registered_commands
        if "Example:" not in (command.callback.__doc__ or "")  # type: ignore[union-attr]
    ]
    assert missing == []


def test_status_shows_the_batch(tmp_path: Path) -> None:
    """status prints the current batch and last STAN without talking to the host."""
    _init(tmp_path, "127.0.0.1:9")
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert (result.exit_code, "000001 (open)" in result.output) == (0, True)


def test_backup_and_restore_from_the_command_line(host_address: str, tmp_path: Path) -> None:
    """backup after a sale (passphrase at the prompt), restore it: the next sign-on resyncs."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    _sale(data_dir, "1.00")
    copy = tmp_path / "copy.db"
    backup = runner.invoke(
        app,
        ["backup", str(copy), "--data-dir", str(data_dir)],
        input="a passphrase\na passphrase\n",
    )
    restore = runner.invoke(app, ["restore", str(copy), "--data-dir", str(data_dir)])
    assert (backup.exit_code, restore.exit_code) == (0, 0), restore.output
    assert "settles the host's open batch" in restore.output


def test_batch_number_typed_twice_is_confirmed_by_the_host(
    host_address: str, tmp_path: Path
) -> None:
    """batch-no asks twice; the host's number is accepted, a different one refused."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    runner.invoke(app, ["sign-on", "--data-dir", str(data_dir)])
    good = runner.invoke(app, ["batch-no", "--data-dir", str(data_dir)], input="1\n000001\n")
    wrong = runner.invoke(app, ["batch-no", "--data-dir", str(data_dir)], input="7\n7\n")
    assert (good.exit_code, wrong.exit_code) == (0, 2), good.output
    assert "not 000007" in wrong.output


@pytest.mark.parametrize("command", [["status"], ["journal", "--verify"], ["sign-on"]])
def test_a_journal_file_of_another_kind_is_refused_and_left_alone(
    tmp_path: Path, command: list[str]
) -> None:
    """journal.db that is a host store (any other database): one line, exit 2, and no
    journal tables migrated into it."""
    data_dir = tmp_path / "term"
    _init(data_dir, "127.0.0.1:1")
    journal = data_dir / "journal.db"
    journal.unlink()
    HostStore.open(f"sqlite:///{journal}", pan_key=b"k" * 32).close()
    journal.chmod(0o600)
    before = _table_names(journal)
    result = runner.invoke(app, [*command, "--data-dir", str(data_dir)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert (result.exit_code, len(lines)) == (2, 1), result.output
    assert f"{journal} is not a posbatch terminal journal" in lines[0]
    assert _table_names(journal) == before


def _table_names(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return sorted(str(row[0]) for row in rows)


def test_status_masks_a_card_number_the_journal_holds(tmp_path: Path) -> None:
    """status prints the journal's recent events and its host address as they are stored: a
    card number in them (a garbled or hostile journal) is masked to its first 6 and last 4,
    in the events and in the table, the merchant id whole."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from posbatch.terminal._files import open_terminal  # noqa: PLC0415

    _init(tmp_path, "6222028719463520178:9")
    terminal = open_terminal(tmp_path, clock=lambda: datetime.now(UTC), verify=False)
    with terminal.journal.write(datetime.now(UTC)) as writer:
        writer.event("note", "cashier typed 6222 0212 3456 7890 128 / 6222029371586403")
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)], env={"COLUMNS": "60"})
    shown = result.output
    assert (0, True, True, []) == (
        result.exit_code,
        "622202*********0128 / 622202******6403" in shown,
        MERCHANT_ID in shown,
        [pan for pan in ("871946352", "021234567", "937158") if pan in shown],
    ), shown


def test_sign_on_after_a_restore_says_the_hosts_batch_was_settled_first(
    host_address: str, tmp_path: Path
) -> None:
    """A restored journal's sign-on settles the host's batch, then trades in the next: the
    line said `signed on: batch 000002 (host 000001); terminal and host agree on batch
    000001`, which a cashier reads as a contradiction."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    assert 0 == _sale(data_dir, "12.50").exit_code
    backup = str(tmp_path / "b.db")
    passphrase = "a long passphrase\n"
    made = runner.invoke(app, ["backup", backup, "--passphrase-stdin", "--data-dir",
                               str(data_dir)], input=passphrase)  # fmt: skip
    restored = runner.invoke(app, ["restore", backup, "--passphrase-stdin", "--data-dir",
                                   str(data_dir)], input=passphrase)  # fmt: skip
    assert (made.exit_code, restored.exit_code) == (0, 0), restored.output
    signed = runner.invoke(app, ["sign-on", "--data-dir", str(data_dir)])
    assert 0 == signed.exit_code, signed.output
    text = " ".join(signed.output.split())
    assert "settled the host's batch 000001 first: both go on in batch 000002" in text, text
