"""``posbatch terminal`` for issue 11: the batch limit setting, status, auto-settlement
shown to the cashier, card refusals as one-line errors."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from terminal_world import MASTER_KEY, MERCHANT_ID, PAN, START, TERMINAL_ID
from typer.testing import CliRunner

from posbatch.batch.model import shown_at
from posbatch.doctor.cli import app as doctor_app
from posbatch.host import HostCore, HostStore
from posbatch.host.server import HostServer
from posbatch.terminal import Journal, journal_url
from posbatch.terminal.cli import app

runner = CliRunner()


@pytest.fixture
def host_address(tmp_path: Path) -> Iterator[str]:
    """A host server on loopback (port 0) in its own thread; its HOST:PORT."""
    store = HostStore.open(f"sqlite:///{tmp_path / 'host.db'}", pan_key=b"k" * 32)
    store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    loop = asyncio.new_event_loop()
    server = HostServer(HostCore(store, clock=lambda: datetime.now(UTC)))  # as the terminal's
    address: list[str] = []

    async def main() -> None:
        host, port = await server.start("127.0.0.1", 0)
        address.append(f"{host}:{port}")

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop).result(timeout=10)
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
            "init", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
            "--master-key-file", "-", "--host", host, "--data-dir", str(data_dir),
        ],
        input=MASTER_KEY.hex() + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_settings_status_and_an_automatic_settlement(host_address: str, tmp_path: Path) -> None:
    """settings --batch-limit 2, two sales, the third settles batch 000001 by itself: the
    cashier's screen and the receipt say so; status shows the limit."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    setting = runner.invoke(app, ["settings", "--batch-limit", "2", "--data-dir", str(data_dir)])
    sales = [
        runner.invoke(app, ["sale", amount, "--data-dir", str(data_dir)], input=PAN + "\n")
        for amount in ("1.00", "2.00", "3.00")
    ]
    status = runner.invoke(app, ["status", "--data-dir", str(data_dir)], terminal_width=200)
    found = re.search(r"STAN\s*│\s*(\d{6})", sales[2].output)
    stan = found[1] if found else "0"
    receipt = runner.invoke(app, ["receipt", stan, "--data-dir", str(data_dir)])
    assert [0, 0, 0, 0, 0, 0] == [
        setting.exit_code, *(sale.exit_code for sale in sales), status.exit_code,
        receipt.exit_code,
    ], sales[2].output  # fmt: skip
    assert "batch 000001 was full" in sales[2].output
    assert "batch 000001 was full: settled automatically" in receipt.output
    assert "2 per counter" in status.output


def test_status_and_the_event_log_show_beijing_time(tmp_path: Path) -> None:
    """The journal keeps UTC; status and journal --events printed it raw (07:44 for a
    terminal set up at 15:44 in Beijing). Now both show Beijing time, as every other
    command does."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, "127.0.0.1:9")
    journal = Journal.open(journal_url(data_dir))
    stored = journal.events()[0].at
    journal.engine.dispose()
    beijing = shown_at(datetime.fromisoformat(stored), seconds=True)
    status = runner.invoke(app, ["status", "--data-dir", str(data_dir)], terminal_width=200)
    events = runner.invoke(
        app, ["journal", "--events", "--data-dir", str(data_dir)], terminal_width=200
    )
    assert [(0, True, False), (0, True, False)] == [
        (result.exit_code, beijing in result.output, stored[:19] in result.output)
        for result in (status, events)
    ], (stored, status.output, events.output)


@pytest.mark.parametrize("limit", ["0", "1000", "-5"])
def test_a_batch_limit_out_of_range_is_one_line(tmp_path: Path, limit: str) -> None:
    """1..999 only: anything else is exit 2 with the range (the one wording of a count),
    no traceback."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, "127.0.0.1:9")
    result = runner.invoke(app, ["settings", "--batch-limit", limit, "--data-dir", str(data_dir)])
    says = f"--batch-limit '{limit}' must be a whole number in digits 0-9, from 1 to 999"
    assert (2, says) == (result.exit_code, says if says in result.output else result.output)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "card", ["0000000000000000", "6222021234567890123", "62220212345678901283"]
)
def test_a_card_the_host_would_refuse_is_one_line_and_sends_nothing(
    tmp_path: Path, card: str
) -> None:
    """The terminal refuses it (14) before it tries the host (here: nobody listens)."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, "127.0.0.1:9")
    result = runner.invoke(app, ["sale", "1.00", "--data-dir", str(data_dir)], input=card + "\n")
    assert (2, True, False) == (
        result.exit_code, "14" in result.output, card[6:-4] in result.output
    ), result.output  # fmt: skip


@pytest.mark.parametrize(
    "typed", ["6222 0212 3456 7890 128", "6222-0212-3456-7890-128", " 6222021234567890128 "]
)
def test_a_card_number_typed_in_groups_is_the_card(
    host_address: str, tmp_path: Path, typed: str
) -> None:
    """Cards print their number in groups of four: typed so (spaces or hyphens between
    the groups), it is the same card, approved."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    result = runner.invoke(app, ["sale", "1.00", "--data-dir", str(data_dir)], input=typed + "\n")
    assert (0, True) == (result.exit_code, "622202*********0128" in result.output), result.output


@pytest.mark.parametrize("typed", ["6222  0212 3456 7890 128", "6222 0212 3456 7890 12a"])
def test_a_card_number_not_in_groups_is_refused_as_typed(tmp_path: Path, typed: str) -> None:
    """Two spaces in a row, or a letter, are not a card number: one line, nothing sent."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, "127.0.0.1:9")
    result = runner.invoke(app, ["sale", "1.00", "--data-dir", str(data_dir)], input=typed + "\n")
    assert (2, False) == (result.exit_code, "Traceback" in result.output), result.output


def test_the_journal_shows_every_column_whole_at_80_columns(
    host_address: str, tmp_path: Path
) -> None:
    """`terminal journal` in an 80-column window (or a file): the RRN a dispute needs, the
    masked card and the time are whole — a table too wide becomes a block per row."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    sale = runner.invoke(app, ["sale", "1.00", "--data-dir", str(data_dir)], input=PAN + "\n")
    found = re.search(r"RRN\s*│\s*(\d{12})", sale.output)
    assert found is not None, sale.output
    listed = runner.invoke(app, ["journal", "--data-dir", str(data_dir)], terminal_width=80)
    assert (0, True, True, False) == (
        listed.exit_code,
        found[1] in listed.output,
        "622202*********0128" in listed.output,
        "…" in listed.output,
    ), listed.output


def test_backup_reinstall_restore_settle_over_the_command_line(
    host_address: str, tmp_path: Path
) -> None:
    """init, sales, backup (passphrase on stdin, file 0600), the data directory deleted,
    init --reinstall, restore — a wrong passphrase is one line and changes nothing, the
    right one restores — then settle: the batch closes, and the terminal sells again."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    for amount in ("1.00", "2.00"):
        assert (
            0
            == runner.invoke(
                app, ["sale", amount, "--data-dir", str(data_dir)], input=PAN + "\n"
            ).exit_code
        )
    copy = tmp_path / "journal-backup.db"
    backup = runner.invoke(
        app,
        ["backup", str(copy), "--passphrase-stdin", "--data-dir", str(data_dir)],
        input="shop passphrase 1\n",
    )
    runner.invoke(app, ["sale", "3.00", "--data-dir", str(data_dir)], input=PAN + "\n")
    shutil.rmtree(data_dir)
    reinstall = runner.invoke(
        app,
        [
            "init", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
            "--master-key-file", "-", "--host", host_address, "--reinstall",
            "--data-dir", str(data_dir),
        ],
        input=MASTER_KEY.hex() + "\n",
    )  # fmt: skip
    journal_before = (data_dir / "journal.db").read_bytes()
    wrong = runner.invoke(
        app,
        ["restore", str(copy), "--passphrase-stdin", "--data-dir", str(data_dir)],
        input="not the passphrase\n",
    )
    unchanged = (data_dir / "journal.db").read_bytes() == journal_before
    restore = runner.invoke(
        app,
        ["restore", str(copy), "--passphrase-stdin", "--data-dir", str(data_dir)],
        input="shop passphrase 1\n",
    )
    settle = runner.invoke(app, ["settle", "--data-dir", str(data_dir)])
    sale = runner.invoke(app, ["sale", "4.00", "--data-dir", str(data_dir)], input=PAN + "\n")
    assert [0, 0, 2, 0, 0, 0] == [
        backup.exit_code, reinstall.exit_code, wrong.exit_code, restore.exit_code,
        settle.exit_code, sale.exit_code,
    ], (wrong.output, restore.output, settle.output)  # fmt: skip
    assert (0o600, True) == (stat.S_IMODE(copy.stat().st_mode), unchanged)
    assert "wrong passphrase" in wrong.output and "Traceback" not in wrong.output
    assert "card keys" in restore.output
    assert "uploaded" in settle.output


def test_a_backup_needs_a_passphrase(tmp_path: Path) -> None:
    """An empty or short passphrase is refused (exit 2) and no file is written."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, "127.0.0.1:9")
    copy = tmp_path / "b.db"
    result = runner.invoke(
        app, ["backup", str(copy), "--passphrase-stdin", "--data-dir", str(data_dir)], input="\n"
    )
    assert (2, False) == (result.exit_code, copy.exists()), result.output


def test_a_failed_init_leaves_nothing_behind(tmp_path: Path) -> None:
    """A bad merchant id: exit 2 and the directory is as before; the corrected init works."""
    data_dir = tmp_path / "terminal"
    args = [
        "init", "--terminal-id", TERMINAL_ID, "--master-key-file", "-",
        "--host", "127.0.0.1:9", "--data-dir", str(data_dir),
    ]  # fmt: skip
    key = MASTER_KEY.hex() + "\n"
    bad = runner.invoke(app, [*args, "--merchant-id", "89811005411000"], input=key)  # 14 chars
    left = sorted(path.name for path in data_dir.iterdir()) if data_dir.exists() else []
    good = runner.invoke(app, [*args, "--merchant-id", MERCHANT_ID], input=key)
    assert (2, [], 0) == (bad.exit_code, left, good.exit_code), (bad.output, good.output)


def test_a_failed_init_in_an_existing_directory_keeps_the_directory(tmp_path: Path) -> None:
    """The directory existed before: it stays, empty of what init wrote."""
    data_dir = tmp_path / "terminal"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("the shop's own file")
    bad = runner.invoke(
        app,
        [
            "init", "--merchant-id", MERCHANT_ID, "--terminal-id", "1000001",
            "--master-key-file", "-", "--host", "127.0.0.1:9", "--data-dir", str(data_dir),
        ],
        input=MASTER_KEY.hex() + "\n",
    )  # fmt: skip
    assert (2, ["notes.txt"]) == (bad.exit_code, sorted(p.name for p in data_dir.iterdir()))


def test_doctor_backup_fix_after_a_reinstall_over_the_command_line(
    host_address: str, tmp_path: Path
) -> None:
    """Sale, settle, sale; backup; the data directory deleted, init --reinstall (issue 11's
    "reinstall right after the first settlement"): `doctor --backup b.db --fix --yes
    --passphrase-stdin` restores (the backup's keys), signs on, settles; afterwards the
    terminal sells."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, host_address)
    runner.invoke(app, ["sale", "1.00", "--data-dir", str(data_dir)], input=PAN + "\n")
    runner.invoke(app, ["settle", "--data-dir", str(data_dir)])
    runner.invoke(app, ["sale", "5.00", "--data-dir", str(data_dir)], input=PAN + "\n")
    copy = tmp_path / "b.db"
    runner.invoke(
        app,
        ["backup", str(copy), "--passphrase-stdin", "--data-dir", str(data_dir)],
        input="shop passphrase 2\n",
    )
    shutil.rmtree(data_dir)
    runner.invoke(
        app,
        [
            "init", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
            "--master-key-file", "-", "--host", host_address, "--reinstall",
            "--data-dir", str(data_dir),
        ],
        input=MASTER_KEY.hex() + "\n",
    )  # fmt: skip
    fixed = runner.invoke(
        doctor_app,
        [
            "--data-dir", str(data_dir), "--backup", str(copy), "--fix", "--yes",
            "--passphrase-stdin", "--echo-count", "1",
        ],
        input="shop passphrase 2\n",
    )  # fmt: skip
    sale = runner.invoke(app, ["sale", "6.00", "--data-dir", str(data_dir)], input=PAN + "\n")
    assert (0, 0) == (fixed.exit_code, sale.exit_code), fixed.output
    assert "sealed PAN does not open" not in fixed.output + sale.output
    journal = Journal.open(journal_url(data_dir))
    try:
        repairs = [
            (e.details.get("repair"), e.details.get("status")) for e in journal.events("doctor")
        ]
        batches = [(batch.batch_no, batch.settle_step.value) for batch in journal.batches()]
    finally:
        journal.engine.dispose()
    # counters reset, named from the echo's answer: the backup put back, then the sign-on
    # settles the host's batch 000002 (the 5.00 sale made before the reinstall)
    assert [("restore_backup", "done"), ("sign_on_adopt", "done")] == repairs
    assert [(1, "closed"), (2, "closed"), (3, "open")] == batches


@pytest.mark.parametrize("content", [b"", b"not a database at all", None])
def test_restoring_what_is_not_a_backup_is_one_line_and_touches_nothing(
    tmp_path: Path, content: bytes | None
) -> None:
    """An empty file, a text file, an SQLite file that is no journal: exit 2, one line, the
    file and the terminal unchanged."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, "127.0.0.1:9")
    source = tmp_path / "not-a-backup.db"
    if content is None:
        with sqlite3.connect(source) as connection:
            connection.execute("CREATE TABLE other (a)")
    else:
        source.write_bytes(content)
    before = (source.read_bytes(), _journal_tail(data_dir))
    result = runner.invoke(
        app, ["restore", str(source), "--data-dir", str(data_dir)], env={"COLUMNS": "300"}
    )
    assert (2, 1) == (
        result.exit_code, len([line for line in result.output.splitlines() if line.strip()])
    ), result.output  # fmt: skip
    assert "not a posbatch journal backup" in result.output
    assert before == (source.read_bytes(), _journal_tail(data_dir))


def _journal_tail(data_dir: Path) -> tuple[int, str]:
    """The journal's last entry (seq, hash): what a change would move."""
    with sqlite3.connect(data_dir / "journal.db") as connection:
        row = connection.execute(
            "SELECT seq, hash FROM journal_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    return int(row[0]), str(row[1])


def test_a_backup_without_any_passphrase_input_is_one_line(tmp_path: Path) -> None:
    """No terminal to type at and no --passphrase-stdin: exit 2 saying how to give it."""
    data_dir = tmp_path / "terminal"
    _init(data_dir, "127.0.0.1:9")
    result = runner.invoke(app, ["backup", str(tmp_path / "b.db"), "--data-dir", str(data_dir)])
    assert (2, True, False) == (
        result.exit_code, "--passphrase-stdin" in result.output, (tmp_path / "b.db").exists()
    ), result.output  # fmt: skip
