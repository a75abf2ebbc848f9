"""A terminal's data directory: journal file, key file, backup and restore.

The directory is private (mode 0700) and so is every file in it (0600: the
journal and its -wal/-shm, the key file), like a copy restored into it. A
terminal whose directory or files other users can read is refused, with the
chmod that fixes it (:func:`posbatch.storage.check_private`).

Backup and restore keep the promise across a reinstall: a reinstalled
terminal has a new PAN key, so a backup carries its own PAN keys sealed under
a passphrase the merchant chooses when taking it (:func:`backup_terminal`,
table ``backup_key`` inside the backup file, mode 0600). :func:`restore_journal`
decides everything BEFORE it changes anything — the backup's chain, that it is
this terminal's, and that its card numbers open with the key file's keys or
with the backup's own (asking for the passphrase only then) — and refuses with
one line otherwise. It then writes the key file (the terminal's own key kept
as an older key), then the journal, so a crash between the two leaves a
terminal that opens both.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from posbatch import storage
from posbatch.batch.ids import check_merchant_id, check_terminal_id
from posbatch.batch.txn_lifecycle import TxnState
from posbatch.errors import ConfigError, JournalIntegrityError, StorageError
from posbatch.storage import create_engine, upgrade
from posbatch.terminal._engine import Terminal
from posbatch.terminal._flows import Exchange
from posbatch.terminal._journal import (
    JOURNAL_FILE_NAME,
    MIGRATIONS,
    VERSION_TABLE,
    Journal,
    entries_table,
    schema_head,
    schema_revision_of,
    state_table,
    transactions_table,
    verify_engine,
)
from posbatch.terminal._secrets import (
    KEY_FILE_NAME,
    SCRYPT_N_DEFAULT,
    BackupKey,
    TerminalSecrets,
    check_passphrase,
)

__all__ = [
    "BACKUP_KEY_TABLE",
    "DEFAULT_DATA_DIR",
    "BackupReport",
    "RestoreReport",
    "backup_terminal",
    "check_restore",
    "init_terminal",
    "journal_url",
    "mark_restored",
    "open_terminal",
    "read_backup_key",
    "restore_journal",
    "secrets_for_backup",
    "write_backup_key",
]

DEFAULT_DATA_DIR: Final = Path("posbatch-terminal")
# STANs listed by name in a restore report; the rest are counted.
REPORT_STANS_MAX: Final = 50
# The table inside a backup file that holds its sealed PAN keys (dropped from a restored
# journal: a journal never holds a key, sealed or not).
BACKUP_KEY_TABLE: Final = "backup_key"
# Sealed card numbers a restore opens before it changes anything (the most recent).
RESTORE_PAN_CHECKS_MAX: Final = 20_000
_SIDE_FILES: Final = ("-wal", "-shm", "-journal")


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
    Everything is checked first; if anything fails after that, what this call
    created (journal and its side files, key file, the directory) is removed
    again: a failed init leaves nothing behind, and the corrected one works.
    """
    check_terminal_id(terminal_id)
    check_merchant_id(merchant_id)
    journal_file = data_dir / JOURNAL_FILE_NAME
    key_file = data_dir / KEY_FILE_NAME
    if journal_file.exists():
        # `init --reinstall` over the old journal was a newcomer's first guess: say where
        # a new one goes, and that the old journal is kept (a backup restores onto it).
        raise ConfigError(
            f"{data_dir} holds a terminal journal already: nothing was changed; a new journal "
            "(init, or init --reinstall) goes in another --data-dir"
        )
    if key_file.exists():
        raise ConfigError(f"{data_dir} holds a terminal key file already: use another directory")
    created_dir = not data_dir.exists()
    storage.make_private_dir(data_dir)
    storage.check_private(data_dir)
    secrets = TerminalSecrets.create(master_key)
    try:
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
        finally:
            journal.engine.dispose()
        secrets.save(key_file)
    except BaseException:
        for leftover in (journal_file, *(_side(journal_file, s) for s in _SIDE_FILES), key_file):
            leftover.unlink(missing_ok=True)
        if created_dir:
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        raise


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def check_terminal_dir(data_dir: Path) -> None:
    """ConfigError unless ``data_dir`` (if it is there) is a directory of this user's that
    other users cannot read, and so is its journal with its -wal and -shm: what every
    command that reads or writes a terminal checks first (a backup and a restore too — a
    restore into another user's directory rewrote that user's key file as root's, and one
    over a journal of mode 0644 left the restored journal readable by everyone)."""
    storage.check_data_dir(data_dir)
    storage.check_private(data_dir)
    storage.check_private_database(data_dir / JOURNAL_FILE_NAME)


def require_terminal_dir(data_dir: Path) -> None:
    """ConfigError unless ``data_dir`` is a private directory of this user's holding a
    journal (:func:`check_terminal_dir`): checked before anything is asked (a backup's
    passphrase) or opened."""
    check_terminal_dir(data_dir)
    if not (data_dir / JOURNAL_FILE_NAME).exists():
        raise ConfigError(f"no terminal in {data_dir}: run `posbatch terminal init` first")


def open_terminal(
    data_dir: Path,
    *,
    clock: Callable[[], datetime],
    exchange: Exchange | None = None,
    verify: bool = True,
    timeout_ms: int | None = None,
) -> Terminal:
    """The terminal kept in ``data_dir`` (journal verified unless told not to)."""
    require_terminal_dir(data_dir)
    _require_journal(data_dir / JOURNAL_FILE_NAME)
    secrets = TerminalSecrets.load(data_dir / KEY_FILE_NAME)
    journal = Journal.open(journal_url(data_dir), verify=verify)
    terminal = Terminal(journal, secrets, clock=clock, exchange=exchange)
    if timeout_ms is not None:
        terminal.timeout_ms = timeout_ms
    return terminal


def _require_journal(path: Path) -> None:
    """ConfigError if the SQLite file at ``path`` holds tables but no journal's (a host
    store, any other database): it is refused, read only, never migrated into a journal."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        ) as db:
            tables = sorted(
                str(row[0])
                for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            )
    except sqlite3.Error:
        return  # not SQLite at all, or unreadable: opening the journal says so
    if tables and VERSION_TABLE not in tables:
        raise ConfigError(
            f"{path} is not a posbatch terminal journal (it holds {len(tables)} other tables, "
            f"such as {tables[0]}): nothing was changed"
        )


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What :func:`backup_terminal` wrote."""

    path: Path
    entries: int
    terminal_id: str
    batch_no: int
    stan: int


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
    key_restored: bool = False  # the key file now holds the backup's PAN keys


# --- the backup's key ------------------------------------------------------------------


def write_backup_key(engine: Engine, key: BackupKey) -> None:
    """Write ``key`` into the backup database of ``engine`` (its own table, one row)."""
    row = key.to_row()
    columns = ", ".join(f"{name} TEXT" for name in row)
    marks = ", ".join(f":{name}" for name in row)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {BACKUP_KEY_TABLE} ({columns})"))
            connection.execute(
                sa.text(f"INSERT INTO {BACKUP_KEY_TABLE} ({', '.join(row)}) VALUES ({marks})"),  # noqa: S608 - constant names
                {name: str(value) for name, value in row.items()},
            )
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot write the backup's key: {exc}") from exc


def read_backup_key(engine: Engine) -> BackupKey | None:
    """The sealed key a backup carries (None: a plain journal copy that carries none)."""
    try:
        with engine.connect() as connection:
            if BACKUP_KEY_TABLE not in sa.inspect(connection).get_table_names():
                return None
            found = (
                connection.execute(
                    sa.text(f"SELECT * FROM {BACKUP_KEY_TABLE}")  # noqa: S608 - constant name
                )
                .mappings()
                .first()
            )
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the backup's key: {exc}") from exc
    if found is None:
        return None
    row = dict(found)
    for name in ("n", "r", "p"):
        row[name] = int(str(row[name]))
    return BackupKey.from_row(row)


def _backup_facts(engine: Engine) -> tuple[str | None, list[str]]:
    """(terminal ID, the most recent sealed card numbers) of a journal database."""
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            if "terminal_state" not in tables:
                return None, []
            terminal_id = connection.execute(sa.select(state_table.c.terminal_id)).scalar()
            sealed = [
                str(value)
                for value in connection.execute(
                    sa.select(transactions_table.c.pan_sealed)
                    .where(transactions_table.c.pan_sealed.is_not(None))
                    .order_by(transactions_table.c.txn_id.desc())
                    .limit(RESTORE_PAN_CHECKS_MAX)
                ).scalars()
            ]
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the backup: {exc}") from exc
    return (None if terminal_id is None else str(terminal_id)), sealed


def secrets_for_backup(
    engine: Engine,
    secrets: TerminalSecrets,
    *,
    passphrase: Callable[[], str] | None,
    terminal_id: str | None = None,
    name: str = "the backup",
) -> TerminalSecrets:
    """The secrets a terminal must hold to use the backup in ``engine``; ConfigError if none.

    ``secrets`` themselves when every card number of the backup opens with them;
    else the backup's own keys, unsealed with ``passphrase()`` (asked only then),
    with the terminal's kept as older keys. ``terminal_id``: the terminal this
    data directory holds — a backup of another terminal is refused. Changes nothing.
    """
    backup_terminal_id, sealed = _backup_facts(engine)
    if backup_terminal_id is None:
        raise ConfigError(f"{name} holds no terminal journal: nothing was changed")
    if terminal_id is not None and backup_terminal_id != terminal_id:
        raise ConfigError(
            f"{name} is of terminal {backup_terminal_id}, this one is {terminal_id}: "
            "nothing was changed"
        )
    if all(secrets.opens(item, backup_terminal_id) for item in sealed):
        return secrets
    key = read_backup_key(engine)
    if key is None:
        raise ConfigError(
            f"the card numbers in {name} are sealed under another key (this terminal was "
            "reinstalled since?) and it carries no key of its own: it cannot be restored "
            "here; nothing was changed (take backups with `posbatch terminal backup`, which "
            "seals the key under a passphrase)"
        )
    if key.terminal_id != backup_terminal_id:
        raise ConfigError(f"the key in {name} is of another terminal: nothing was changed")
    if passphrase is None:
        raise ConfigError(
            f"{name} was taken before this terminal's key changed: its passphrase is needed "
            "to restore it (a hidden prompt, or --passphrase-stdin); nothing was changed"
        )
    candidate = secrets.with_pan_keys(key.open(passphrase()))
    if not all(candidate.opens(item, backup_terminal_id) for item in sealed):
        raise ConfigError(
            f"some card numbers in {name} open with neither key: it is damaged; nothing was changed"
        )
    return candidate


# --- backup ------------------------------------------------------------------------------


def backup_terminal(
    data_dir: Path,
    destination: Path,
    *,
    passphrase: str,
    scrypt_n: int = SCRYPT_N_DEFAULT,
) -> BackupReport:
    """A consistent online copy of the journal of ``data_dir`` that carries its PAN keys,
    sealed under ``passphrase`` (8..1024 characters): restorable on this terminal after a
    reinstall. The file is created with mode 0600 and never overwrites one."""
    check_passphrase(passphrase)
    require_terminal_dir(data_dir)
    secrets = TerminalSecrets.load(data_dir / KEY_FILE_NAME)
    journal = Journal.open(journal_url(data_dir), verify=True)
    try:
        state = journal.state()
        batch_no = journal.current_batch().batch_no
        entries = journal.backup(destination)
    finally:
        journal.engine.dispose()
    engine = create_engine(f"sqlite:///{destination.resolve()}")
    try:
        write_backup_key(engine, BackupKey.seal(secrets, state.terminal_id, passphrase, n=scrypt_n))
    except BaseException:
        engine.dispose()
        destination.unlink(missing_ok=True)  # half a backup is no backup
        raise
    engine.dispose()
    return BackupReport(destination, entries, state.terminal_id, batch_no, state.stan)


def _tail(engine: Engine) -> tuple[dict[int, str], dict[int, tuple[int, str]]]:
    """(hash by seq, (stan, state) by txn_id) of a journal, read without verification."""
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


def read_only_engine(path: Path) -> Engine:
    """An engine that reads the SQLite file at ``path`` without changing a byte of it (a
    backup: its checks come before anything changes — the file included)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
    return sa.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
    )


def check_restore(
    backup: Path,
    data_dir: Path,
    *,
    force: bool = False,
    passphrase: Callable[[], str] | None = None,
) -> bool:
    """Every check :func:`restore_journal` makes, changing nothing; whether the restore
    would bring the backup's keys (raises what restore_journal would raise)."""
    check_terminal_dir(data_dir)  # before a scratch copy is made in it, or anything asked
    with at_current_schema(backup, _scratch_dir(data_dir)) as current:
        _entries, _problem, secrets, needed = _restore_plan(
            current, data_dir, force=force, passphrase=passphrase, name=backup
        )
    return needed != secrets


def _scratch_dir(data_dir: Path) -> Path:
    """Where a migrated copy of a backup is made: the terminal's own private directory
    (restore needs its key file there), else beside it."""
    return data_dir if data_dir.is_dir() else data_dir.resolve().parent


@contextlib.contextmanager
def at_current_schema(backup: Path, scratch_dir: Path) -> Iterator[Path]:
    """``backup`` itself, or — for a backup taken before a software update — a private
    copy of it (mode 0600, in ``scratch_dir``, deleted afterwards) brought to the schema
    this software ships, by the same migrations the live journal went through. The
    backup file is never changed. A file that is not a journal is passed on as it is:
    the checks after say what it is."""
    if not _is_sqlite_file(backup):
        yield backup
        return
    engine = read_only_engine(backup)
    try:
        revision = schema_revision_of(engine)
    except StorageError:
        revision = None
    finally:
        engine.dispose()
    if revision is None or revision == schema_head():
        yield backup
        return
    handle, name = tempfile.mkstemp(prefix=".restore-", suffix=".db", dir=scratch_dir)
    os.close(handle)
    copy = Path(name)
    try:
        source = sqlite3.connect(f"file:{quote(str(backup.resolve()))}?mode=ro", uri=True)
        try:
            storage.copy_sqlite(source, copy)
        finally:
            source.close()
        engine = create_engine(f"sqlite:///{copy}")
        try:
            upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE)
        except StorageError as exc:
            raise ConfigError(
                f"{backup} was written by an older posbatch (journal schema {revision}) and "
                f"could not be brought to this version's schema: {exc}; nothing was changed"
            ) from exc
        finally:
            engine.dispose()
        yield copy
    finally:
        for leftover in (copy, _side(copy, "-wal"), _side(copy, "-shm"), _side(copy, "-journal")):
            leftover.unlink(missing_ok=True)


def _restore_plan(
    backup: Path,
    data_dir: Path,
    *,
    force: bool,
    passphrase: Callable[[], str] | None,
    name: Path,
) -> tuple[int, str | None, TerminalSecrets, TerminalSecrets]:
    """(entries, chain problem, the key file's secrets, the secrets needed): the checks.

    ``backup`` is the file read (the backup, or its copy at the current schema);
    ``name`` the backup as the user named it, for the messages.
    """
    if not backup.is_file():
        raise ConfigError(f"no backup file at {name}")
    if not _is_sqlite_file(backup):
        raise ConfigError(f"{name} is not a posbatch journal backup: nothing was changed")
    engine = read_only_engine(backup)
    problem = None
    try:
        entries = verify_engine(engine)
    except JournalIntegrityError as exc:
        if not force:
            raise JournalIntegrityError(
                f"backup {name} is damaged: {exc}; use --force to restore it anyway",
                first_bad_row=exc.first_bad_row,
            ) from exc
        problem = str(exc)
        entries = 0
    except StorageError as exc:  # an SQLite file, but not a journal: say so in one line
        raise ConfigError(f"{name} is not a posbatch journal backup: nothing was changed") from exc
    finally:
        engine.dispose()
    key_file = data_dir / KEY_FILE_NAME
    if not key_file.is_file():
        raise ConfigError(
            f"no terminal key file in {data_dir}: run `posbatch terminal init --reinstall` "
            "with the terminal's master key first, then restore; nothing was changed"
        )
    secrets = TerminalSecrets.load(key_file)
    engine = read_only_engine(backup)
    try:
        needed = secrets_for_backup(
            engine,
            secrets,
            passphrase=passphrase,
            terminal_id=_terminal_id_of(data_dir),
            name=name.name,
        )
    finally:
        engine.dispose()
    return entries, problem, secrets, needed


def restore_journal(
    backup: Path,
    data_dir: Path,
    *,
    force: bool = False,
    clock: Callable[[], datetime] | None = None,
    passphrase: Callable[[], str] | None = None,
) -> RestoreReport:
    """Put ``backup`` in place of the journal of ``data_dir``.

    Refuses a backup whose hash chain is broken (``JournalIntegrityError``)
    unless ``force``; refuses (ConfigError, nothing changed) a directory with
    no key file, a backup of another terminal, and a backup whose card numbers
    open neither with the key file nor with the backup's own keys (unsealed
    with ``passphrase()``, asked only when the key file's keys do not open
    them: a terminal reinstalled since the backup). Reports what the current
    journal holds that the backup does not (entries, STANs, approvals) — that
    is what restoring loses.
    The restored journal is marked ``resync_pending`` (and says so in its
    event log): its next sign-on settles the host's open batch before any new
    transaction, because the host may hold approvals made after the backup.
    A backup taken before a software update is restored from a copy brought to the
    current schema (:func:`at_current_schema`).
    """
    check_terminal_dir(data_dir)  # before a scratch copy is made in it, or anything asked
    with at_current_schema(backup, _scratch_dir(data_dir)) as current:
        return _restore(
            current, data_dir, name=backup, force=force, clock=clock, passphrase=passphrase
        )


def _restore(
    backup: Path,
    data_dir: Path,
    *,
    name: Path,
    force: bool,
    clock: Callable[[], datetime] | None,
    passphrase: Callable[[], str] | None,
) -> RestoreReport:
    """:func:`restore_journal` from ``backup`` (already at the current schema)."""
    moment = (clock or (lambda: datetime.now(UTC)))()
    entries, problem, secrets, needed = _restore_plan(
        backup, data_dir, force=force, passphrase=passphrase, name=name
    )
    key_file = data_dir / KEY_FILE_NAME
    notes: list[str] = []
    missing_entries = 0
    missing_stans: tuple[int, ...] = ()
    missing_approvals = 0
    target = data_dir / JOURNAL_FILE_NAME
    if target.exists():
        try:
            current_hashes, current_txns = _tail(create_engine(journal_url(data_dir)))
            backup_hashes, backup_txns = _tail(read_only_engine(backup))
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
                1 for txn_id in lost if current_txns[txn_id][1] in TxnState.COUNTED
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
    key_restored = needed != secrets
    if key_restored:  # first the keys (the terminal's own kept): both journals open with them
        needed.replace_file(key_file)
    if not target.exists():
        storage.create_private_database(target)  # 0600 before SQLite writes to it
    source = sqlite3.connect(backup)
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination)
            destination.execute(f"DROP TABLE IF EXISTS {BACKUP_KEY_TABLE}")
            destination.commit()
        finally:
            destination.close()
    finally:
        source.close()
    journal = Journal.open(journal_url(data_dir), verify=problem is None)
    try:
        mark_restored(
            journal,
            moment,
            source=name.name,
            problem=problem,
            missing_entries=missing_entries,
            missing_approvals=missing_approvals,
            key_restored=key_restored,
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
        key_restored,
    )


def mark_restored(
    journal: Journal,
    moment: datetime,
    *,
    source: str,
    problem: str | None = None,
    missing_entries: int = 0,
    missing_approvals: int = 0,
    key_restored: bool = False,
) -> None:
    """Mark a journal just put in place from a backup: ``resync_pending`` (its next sign-on
    settles the host's open batch before any new transaction) and a ``restored`` event."""
    with journal.write(moment) as writer:
        writer.state(replace(journal.state(), resync_pending=True))
        writer.event(
            "restored",
            f"journal restored from {source}"
            + (f" (forced past: {problem})" if problem else "")
            + ("; the backup's card keys were restored" if key_restored else "")
            + "; the next sign-on settles the host's open batch first",
            missing_entries=missing_entries,
            missing_approvals=missing_approvals,
            key_restored=key_restored,
        )


_SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def _is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` starts like an SQLite database (checked before opening it, which
    would turn any other file into one)."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def _terminal_id_of(data_dir: Path) -> str | None:
    """The terminal ID the journal of ``data_dir`` holds (None: none, or unreadable)."""
    if not (data_dir / JOURNAL_FILE_NAME).is_file():
        return None
    engine = create_engine(journal_url(data_dir))
    try:
        with engine.connect() as connection:
            value = connection.execute(sa.select(state_table.c.terminal_id)).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return None if value is None else str(value)
