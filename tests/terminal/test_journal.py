"""The journal: hash chain, migrations that keep the counters, backup and restore."""

from __future__ import annotations

import gc
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from terminal_world import MASTER_KEY, MERCHANT_ID, PAN, TERMINAL_ID, StepClock, World

from posbatch.batch.model import Kind
from posbatch.errors import ConfigError, JournalIntegrityError, StorageError
from posbatch.storage import create_engine
from posbatch.terminal import (
    KEY_FILE_NAME,
    BatchRow,
    Journal,
    Terminal,
    TerminalSecrets,
    TxnState,
    init_terminal,
    open_terminal,
    restore_journal,
)
from posbatch.terminal._journal import MIGRATIONS, VERSION_TABLE

AT = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def _journal_with_a_sale(url: str) -> Journal:
    journal = Journal.open(url)
    Terminal.initialize(
        journal,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        host_address="h:1",
        clock=StepClock(),
    )
    terminal = Terminal(journal, TerminalSecrets(MASTER_KEY, b"p" * 32), clock=StepClock())
    terminal._ctx.financial.write_pending(Kind.SALE, 1250, PAN, None)
    return journal


def test_fresh_journal_verifies(db_url: str) -> None:
    """A journal written only by the engine verifies: every entry chained, every row matched."""
    journal = _journal_with_a_sale(db_url)
    assert journal.verify() == journal.last_seq
    journal.engine.dispose()


def test_edited_transaction_row_is_detected(db_url: str) -> None:
    """Changing an amount behind the journal's back names the row and its entry."""
    journal = _journal_with_a_sale(db_url)
    with journal.engine.begin() as connection:
        connection.execute(sa.text("UPDATE transactions SET amount_fen = 1 WHERE txn_id = 1"))
    with pytest.raises(JournalIntegrityError, match="transactions row 1 differs") as caught:
        journal.verify()
    assert caught.value.first_bad_row == journal.last_seq
    journal.engine.dispose()


def test_edited_entry_breaks_the_chain(db_url: str) -> None:
    """Rewriting an entry's payload is caught at that entry."""
    journal = _journal_with_a_sale(db_url)
    with journal.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE journal_entries SET payload = replace(payload, '1', '2') WHERE seq = 2")
        )
    with pytest.raises(JournalIntegrityError, match="entry 2 was changed") as caught:
        journal.verify()
    assert caught.value.first_bad_row == 2
    journal.engine.dispose()


def test_deleted_entry_is_detected(db_url: str) -> None:
    """A missing entry in the middle is named."""
    journal = _journal_with_a_sale(db_url)
    with journal.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM journal_entries WHERE seq = 2"))
    with pytest.raises(JournalIntegrityError, match="entry 2 is missing"):
        journal.verify()
    journal.engine.dispose()


def test_disposing_the_engine_lets_go_of_the_journal_file(tmp_path: Path) -> None:
    """A SQLite journal keeps its connection between units of work; its engine's dispose()
    (how every owner lets go of a journal) closes it at once: SQLite removes the WAL file
    when the file's last connection closes, and nothing is left open on the file."""
    path = tmp_path / "journal.db"
    journal = _journal_with_a_sale(f"sqlite:///{path}")
    assert journal.state().terminal_id == TERMINAL_ID  # a read on the kept connection
    wal = Path(f"{path}-wal")
    assert wal.exists()
    journal.engine.dispose()
    assert not wal.exists()
    # the journal is still usable: its next use connects again
    assert journal.transactions()[0].amount_fen == 1250
    journal.engine.dispose()
    assert not wal.exists()


def test_an_in_memory_journal_is_let_go_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """An in-memory journal's StaticPool shares its one connection with every checkout: the
    journal does not keep it (closing a kept one on dispose would close it under the pool's
    feet, which then fails to reset it), so its engine's dispose() is what it always was."""
    journal = _journal_with_a_sale("sqlite://")
    assert journal.verify() == journal.last_seq
    assert [txn.amount_fen for txn in journal.transactions()] == [1250]
    journal.engine.dispose()
    del journal
    gc.collect()
    assert [
        record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR
    ] == []


def test_a_failed_unit_of_work_leaves_the_journal_working(tmp_path: Path) -> None:
    """A unit of work the database refuses is rolled back and its connection not kept:
    the next one writes on a fresh connection and the chain stays whole."""
    journal = _journal_with_a_sale(f"sqlite:///{tmp_path / 'journal.db'}")
    state = journal.state()
    with pytest.raises(StorageError, match="journal write failed"), journal.write(AT) as writer:
        writer.insert_state(state)  # the state row exists already: refused
    with journal.write(AT) as writer:
        writer.event("test", "after the refused one")
    assert journal.verify() == journal.last_seq
    journal.engine.dispose()


def test_opening_a_damaged_journal_refuses(tmp_path: Path) -> None:
    """Journal.open verifies: a damaged journal does not open silently."""
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    _journal_with_a_sale(url).engine.dispose()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE terminal_state SET stan = 77"))
    engine.dispose()
    with pytest.raises(JournalIntegrityError, match="terminal_state row 1 differs"):
        Journal.open(url)


def test_migration_keeps_stan_and_batch_no(tmp_path: Path) -> None:
    """A journal written at revision t0001 keeps its STAN and batch_no after upgrading to head."""
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["version_table"] = VERSION_TABLE
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "t0001")
    old = Journal(engine)  # the t0001 schema: no resync flag, no reference column
    with old.write(AT) as writer:
        writer.insert_batch(_batch(batch_no=41))
        writer._append("state", "1", _old_state())
        writer._cursor.execute(_OLD_STATE_INSERT)
    engine.dispose()
    journal = Journal.open(url)
    state = journal.state()
    assert (state.stan, journal.current_batch().batch_no, state.resync_pending) == (
        4321,
        41,
        False,
    )
    update = journal.events("software_update")[0].details
    assert (update["from_version"], update["stan_after"], update["batch_no_after"]) == (
        "t0001",
        4321,
        41,
    )
    journal.engine.dispose()


def _batch(batch_no: int) -> BatchRow:
    return BatchRow(1, batch_no, "open", AT.isoformat())


def _old_state() -> dict[str, object]:
    return {
        "merchant_id": MERCHANT_ID,
        "terminal_id": TERMINAL_ID,
        "host_address": "h:1",
        "stan": 4321,
        "batch_id": 1,
        "training": False,
        "training_seq": 0,
        "created_at": AT.isoformat(),
    }


_OLD_STATE_INSERT = (
    "INSERT INTO terminal_state (state_id, merchant_id, terminal_id, host_address, stan, "
    f"batch_id, training, training_seq, created_at) VALUES (1, '{MERCHANT_ID}', "
    f"'{TERMINAL_ID}', 'h:1', 4321, 1, 0, 0, '{AT.isoformat()}')"
)


def test_key_file_is_private_and_separate(tmp_path: Path) -> None:
    """init writes the key file 0600 beside the journal; the journal holds no key."""
    init_terminal(
        tmp_path,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        master_key=MASTER_KEY,
        host_address="h:1",
        clock=StepClock(),
    )
    mode = (tmp_path / "terminal.key").stat().st_mode & 0o777
    journal_bytes = (tmp_path / "journal.db").read_bytes()
    assert (mode, MASTER_KEY.hex().encode() in journal_bytes) == (0o600, False)


def test_init_twice_is_refused(tmp_path: Path) -> None:
    """A data dir that holds a terminal is never initialised over."""
    arguments = {
        "merchant_id": MERCHANT_ID,
        "terminal_id": TERMINAL_ID,
        "master_key": MASTER_KEY,
        "host_address": "h:1",
        "clock": StepClock(),
    }
    init_terminal(tmp_path, **arguments)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="holds a terminal journal already") as refused:
        init_terminal(tmp_path, **arguments)  # type: ignore[arg-type]
    # what to do instead: `init --reinstall` over the old journal was refused without it
    assert "goes in another --data-dir" in str(refused.value)


def test_backup_and_restore_report_what_is_missing(world: World, tmp_path: Path) -> None:
    """Restoring an older backup says which entries and STANs the backup lacks."""
    world.terminal.sale(100, PAN)
    world.terminal.journal.backup(tmp_path / "backup.db")
    late = world.terminal.sale(200, PAN)
    world.terminal.journal.engine.dispose()
    world.secrets.save(tmp_path / KEY_FILE_NAME)  # the terminal's key file, next to its journal
    report = restore_journal(tmp_path / "backup.db", tmp_path)
    assert (report.chain_ok, report.missing_stans, report.missing_approvals) == (
        True,
        (late.stan,),
        1,
    )


def test_restore_refuses_a_damaged_backup(world: World, tmp_path: Path) -> None:
    """A backup whose chain is broken is refused unless forced."""
    world.terminal.sale(100, PAN)
    backup = tmp_path / "backup.db"
    world.terminal.journal.backup(backup)
    engine = create_engine(f"sqlite:///{backup}")
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE transactions SET amount_fen = 99999"))
    engine.dispose()
    world.secrets.save(tmp_path / "elsewhere" / KEY_FILE_NAME)  # a terminal with the same key
    with pytest.raises(JournalIntegrityError, match="use --force"):
        restore_journal(backup, tmp_path / "elsewhere")
    forced = restore_journal(backup, tmp_path / "elsewhere", force=True)
    assert (forced.chain_ok, "differs" in (forced.problem or "")) == (False, True)


def test_backup_refuses_to_overwrite(world: World, tmp_path: Path) -> None:
    """A backup never overwrites an existing file."""
    (tmp_path / "taken.db").write_bytes(b"x")
    with pytest.raises(StorageError, match="exists already"):
        world.terminal.journal.backup(tmp_path / "taken.db")


def test_open_terminal_reads_the_data_dir(tmp_path: Path) -> None:
    """open_terminal finds journal and key file; the first batch is 000001 and open."""
    init_terminal(
        tmp_path,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        master_key=MASTER_KEY,
        host_address="h:1",
        clock=StepClock(),
    )
    terminal = open_terminal(tmp_path, clock=StepClock())
    batch = terminal.current_batch()
    assert (batch.batch_no, batch.step, TxnState.PENDING) == (1, "open", "pending")
    terminal.journal.engine.dispose()
