"""A terminal's data directory: journal file, key file, backup and restore.

The directory is private (mode 0700) and so is every file in it (0600: the
journal and its -wal/-shm, the key file), like a copy restored into it. A
terminal whose directory or files other users can read is refused, with the
chmod that fixes it (:func:`posbatch.storage.check_private`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import sqlalchemy as sa

from posbatch import storage
from posbatch.batch.ids import check_merchant_id, check_terminal_id
from posbatch.errors import ConfigError, JournalIntegrityError, StorageError
from posbatch.storage import create_engine
from posbatch.terminal._engine import Terminal
from posbatch.terminal._flows import Exchange
from posbatch.terminal._journal import (
    JOURNAL_FILE_NAME,
    Journal,
    entries_table,
    transactions_table,
    verify_engine,
)
from posbatch.terminal._secrets import KEY_FILE_NAME, TerminalSecrets

__all__ = [
    "DEFAULT_DATA_DIR",
    "RestoreReport",
    "init_terminal",
    "journal_url",
    "open_terminal",
    "restore_journal",
]

DEFAULT_DATA_DIR: Final = Path("posbatch-terminal")
# STANs listed by name in a restore report; the rest are counted.
REPORT_STANS_MAX: Final = 50


def journal_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / JOURNAL_FILE_NAME).resolve()}"


def init_terminal(
    data_dir: Path,
    *,
    merchant_id: str,
    terminal_id: str,
    master_key: bytes,
    host_address: str,
    clock: Callable[[], datetime],
    reinstall: bool = False,
) -> None:
    """Create the key file (0600) and the journal of a new terminal in ``data_dir``.

    ``reinstall``: this terminal traded before (see :meth:`Terminal.initialize`).
    """
    check_terminal_id(terminal_id)
    check_merchant_id(merchant_id)
    if (data_dir / JOURNAL_FILE_NAME).exists():
        raise ConfigError(f"{data_dir} holds a terminal journal already")
    storage.make_private_dir(data_dir)
    storage.check_private(data_dir)
    secrets = TerminalSecrets.create(master_key)
    journal = Journal.open(journal_url(data_dir))
    try:
        Terminal.initialize(
            journal,
            merchant_id=merchant_id,
            terminal_id=terminal_id,
            host_address=host_address,
            clock=clock,
            reinstall=reinstall,
        )
        secrets.save(data_dir / KEY_FILE_NAME)
    finally:
        journal.engine.dispose()


def open_terminal(
    data_dir: Path,
    *,
    clock: Callable[[], datetime],
    exchange: Exchange | None = None,
    verify: bool = True,
    timeout_ms: int | None = None,
) -> Terminal:
    """The terminal kept in ``data_dir`` (journal verified unless told not to)."""
    if not (data_dir / JOURNAL_FILE_NAME).exists():
        raise ConfigError(f"no terminal in {data_dir}: run `posbatch terminal init` first")
    storage.check_private(data_dir)
    storage.check_private_database(data_dir / JOURNAL_FILE_NAME)
    secrets = TerminalSecrets.load(data_dir / KEY_FILE_NAME)
    journal = Journal.open(journal_url(data_dir), verify=verify)
    terminal = Terminal(journal, secrets, clock=clock, exchange=exchange)
    if timeout_ms is not None:
        terminal.timeout_ms = timeout_ms
    return terminal


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore did and what the restored journal lacks compared to the one replaced."""

    entries: int
    chain_ok: bool
    problem: str | None
    missing_entries: int = 0
    missing_stans: tuple[int, ...] = ()
    missing_approvals: int = 0
    notes: list[str] = field(default_factory=list)


def _tail(url: str) -> tuple[dict[int, str], dict[int, tuple[int, str]]]:
    """(hash by seq, (stan, state) by txn_id) of a journal, read without verification."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            hashes = {
                int(row.seq): str(row.hash)
                for row in connection.execute(sa.select(entries_table.c.seq, entries_table.c.hash))
            }
            txns = {
                int(row.txn_id): (int(row.stan), str(row.state))
                for row in connection.execute(
                    sa.select(
                        transactions_table.c.txn_id,
                        transactions_table.c.stan,
                        transactions_table.c.state,
                    )
                )
            }
        return hashes, txns
    finally:
        engine.dispose()


def restore_journal(
    backup: Path,
    data_dir: Path,
    *,
    force: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> RestoreReport:
    """Put ``backup`` in place of the journal of ``data_dir``.

    Refuses a backup whose hash chain is broken (``JournalIntegrityError``)
    unless ``force``; reports what the current journal holds that the backup
    does not (entries, STANs, approvals) — that is what restoring loses.
    The restored journal is marked ``resync_pending`` (and says so in its
    event log): its next sign-on settles the host's open batch before any new
    transaction, because the host may hold approvals made after the backup.
    """
    moment = (clock or (lambda: datetime.now(UTC)))()
    if not backup.is_file():
        raise ConfigError(f"no backup file at {backup}")
    backup_url = f"sqlite:///{backup.resolve()}"
    engine = create_engine(backup_url)
    problem = None
    try:
        entries = verify_engine(engine)
    except JournalIntegrityError as exc:
        if not force:
            raise JournalIntegrityError(
                f"backup {backup} is damaged: {exc}; use --force to restore it anyway",
                first_bad_row=exc.first_bad_row,
            ) from exc
        problem = str(exc)
        entries = 0
    finally:
        engine.dispose()
    notes: list[str] = []
    missing_entries = 0
    missing_stans: tuple[int, ...] = ()
    missing_approvals = 0
    target = data_dir / JOURNAL_FILE_NAME
    if target.exists():
        try:
            current_hashes, current_txns = _tail(journal_url(data_dir))
            backup_hashes, backup_txns = _tail(backup_url)
            diverged = [
                seq for seq, digest in backup_hashes.items() if current_hashes.get(seq) != digest
            ]
            if diverged:
                notes.append(
                    f"the backup and the current journal differ from entry {min(diverged)}: "
                    "they are not the same terminal's history"
                )
            missing_entries = len(set(current_hashes) - set(backup_hashes))
            lost = sorted(set(current_txns) - set(backup_txns))
            missing_stans = tuple(current_txns[txn_id][0] for txn_id in lost)
            missing_approvals = sum(
                1 for txn_id in lost if current_txns[txn_id][1] in ("approved", "voided")
            )
            if missing_entries:
                notes.append(
                    f"the backup lacks {missing_entries} journal entries, "
                    f"{len(lost)} transactions ({missing_approvals} approved): "
                    "sign on and settle — recovery reconciles with the host"
                )
        except (StorageError, sa.exc.SQLAlchemyError) as exc:
            notes.append(f"the current journal could not be read for comparison: {exc}")
    storage.make_private_dir(data_dir)
    if not target.exists():
        storage.create_private_database(target)  # 0600 before SQLite writes to it
    source = sqlite3.connect(backup)
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination)
        finally:
            destination.close()
    finally:
        source.close()
    journal = Journal.open(journal_url(data_dir), verify=problem is None)
    try:
        with journal.write(moment) as writer:
            writer.state(replace(journal.state(), resync_pending=True))
            writer.event(
                "restored",
                f"journal restored from {backup.name}"
                + (f" (forced past: {problem})" if problem else "")
                + "; the next sign-on settles the host's open batch first",
                missing_entries=missing_entries,
                missing_approvals=missing_approvals,
            )
    finally:
        journal.engine.dispose()
    return RestoreReport(
        entries,
        problem is None,
        problem,
        missing_entries,
        missing_stans[:REPORT_STANS_MAX],
        missing_approvals,
        notes,
    )
