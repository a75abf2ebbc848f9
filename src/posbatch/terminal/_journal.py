"""The terminal journal: a hash-chained log of snapshots, plus the tables they describe.

Theory of operation
-------------------
Every change the terminal makes — a STAN taken, a transaction written before
its request leaves, its outcome, a settlement step, a batch closed, an event —
is written in ONE database transaction as two things:

1. the new row in its table (``terminal_state``, ``batches``,
   ``transactions``), which the engine reads, and
2. an append-only entry in ``journal_entries`` holding a snapshot of that
   row (or the event), chained to the entry before it (:mod:`._chain`).

The parts, by role:

- :mod:`._journal_schema` — the tables, the migrations' location, a file's revision;
- :mod:`._rows` — the typed rows (``StateRow``, ``BatchRow``, ``TxnRow``, ``EventRow``);
- :mod:`._chain` — entry hashing, full and incremental verification;
- :mod:`._mirror` — what the single writer keeps in memory;
- :mod:`._statements` — the statements it runs, built once and compiled once
  per kind of database, executed on the driver's own cursor;
- this module — :class:`Journal` (open, read, write, verify, back up) and its
  :class:`Writer` (one unit of work).

Single writer: one engine owns a journal (one terminal, one request in flight),
so ``seq`` and ``prev_hash`` are kept in memory after :meth:`Journal.open`
reads the tail, and a journal that writes mirrors in memory the rows its
engine reads again and again (see :class:`Journal`: what the mirror holds and
what it assumes). Statements are built once, at import (:mod:`._statements`).

Every name this module had before the split is importable from it still.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.pool import PoolProxiedConnection, QueuePool, StaticPool

from posbatch.batch.txn_lifecycle import TxnState
from posbatch.errors import StorageError
from posbatch.storage import create_engine, make_private_dir, upgrade
from posbatch.terminal._chain import (
    GENESIS_HASH,
    Checkpoint,
    canonical,
    entry_hash,
    verify_engine,
    verify_since,
)
from posbatch.terminal._journal_schema import (
    JOURNAL_FILE_NAME,
    MIGRATIONS,
    VERSION_TABLE,
    batches_table,
    entries_table,
    metadata,
    revision_and_counters,
    schema_head,
    schema_revision_of,
    state_table,
    transactions_table,
)
from posbatch.terminal._mirror import CLOSED_BATCHES_MIRRORED_MAX, OPEN_TXNS_MIRRORED_MAX, Mirror
from posbatch.terminal._rows import (
    KIND_EVENT,
    KIND_OF,
    KIND_STATE,
    ROW_TABLES,
    STATE_KEY,
    AnyRow,
    BatchRow,
    EventRow,
    StateRow,
    TxnRow,
    Value,
    row_from_record,
    row_values,
    txn_id_of,
)
from posbatch.terminal._statements import (
    DRIVER_STATEMENTS,
    ENTRY_COLUMNS,
    INSERT,
    INSERT_ENTRY,
    KEY_PARAM,
    SELECT_BATCH,
    SELECT_BATCH_TXNS,
    SELECT_BATCHES,
    SELECT_BY_STAN,
    SELECT_BY_STAN_IN_BATCH,
    SELECT_LIVE_BATCHES,
    SELECT_OUTSTANDING,
    SELECT_STATE,
    SELECT_STATE_IDS,
    SELECT_TAIL,
    SELECT_TOP_BATCH_ID,
    SELECT_TOP_TXN_ID,
    SELECT_TXN,
    SELECT_TXNS,
    UPDATE,
    DriverStatement,
    Query,
)

__all__ = [
    "CLOSED_BATCHES_MIRRORED_MAX",
    "GENESIS_HASH",
    "JOURNAL_FILE_NAME",
    "MIGRATIONS",
    "OPEN_TXNS_MIRRORED_MAX",
    "STATE_KEY",
    "VERSION_TABLE",
    "BatchRow",
    "Checkpoint",
    "EventRow",
    "Journal",
    "StateRow",
    "TxnRow",
    "TxnState",
    "Writer",
    "batches_table",
    "entries_table",
    "entry_hash",
    "metadata",
    "schema_head",
    "schema_revision_of",
    "state_table",
    "transactions_table",
    "verify_engine",
]

BACKUP_FILE_MODE: Final = 0o600  # a backup holds sealed card numbers: private
# A unit of work refused because another process appended to the chain meanwhile (two
# `posbatch terminal` commands on one journal at once): what the cashier is told.
SECOND_WRITER: Final = (
    "journal write refused: another process wrote to this journal at the same moment (a "
    "terminal's journal takes one posbatch terminal command at a time); this step was "
    "rolled back — run it again"
)
# Events read back at once for status/doctor; older ones stay in the journal.
EVENTS_READ_MAX: Final = 10_000


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _described(error: Exception) -> str:
    """A database error as SQLAlchemy's first line names it: ``(module.Class) message``."""
    if isinstance(error, sa.exc.SQLAlchemyError):
        return str(error)
    kind = type(error)
    return f"({kind.__module__}.{kind.__qualname__}) {error}"


class Writer:
    """One unit of work: rows and entries written in one database transaction."""

    def __init__(self, journal: Journal, cursor: DBAPICursor, at: str) -> None:
        self._journal = journal
        self._cursor = cursor
        self._at = at
        # The rows written, in order, with whether each was an insert: the journal folds
        # them into its mirror once the unit of work has committed.
        self.written: list[tuple[AnyRow, bool]] = []

    def _append(self, kind: str, key: str, payload: Mapping[str, object]) -> int:
        journal = self._journal
        seq = journal._last_seq + 1
        text = canonical(payload)
        digest = entry_hash(journal._last_hash, seq, at=self._at, kind=kind, key=key, payload=text)
        journal._driver("insert entry", INSERT_ENTRY, ENTRY_COLUMNS).execute(
            self._cursor,
            {
                "seq": seq,
                "at": self._at,
                "kind": kind,
                "key": key,
                "payload": text,
                "prev_hash": journal._last_hash,
                "hash": digest,
            },
        )
        journal._last_seq = seq
        journal._last_hash = digest
        return seq

    def _put(self, row: AnyRow, *, insert: bool) -> None:
        kind = KIND_OF[type(row)]
        table, _cls, key_name = ROW_TABLES[kind]
        values = row_values(row)
        key = int(STATE_KEY) if kind == KIND_STATE else values[key_name]
        if insert:
            columns = {key_name: key, **values} if kind == KIND_STATE else values
            statement = self._journal._driver(f"insert {kind}", INSERT[kind], columns)
            statement.execute(self._cursor, columns)
        else:
            statement = self._journal._driver(f"update {kind}", UPDATE[kind], values)
            statement.execute(self._cursor, {**values, KEY_PARAM: key})
            if self._cursor.rowcount != 1:
                raise StorageError(f"{table.name} row {key} is missing")
        self._append(kind, str(key), values)
        self.written.append((row, insert))

    def insert_state(self, row: StateRow) -> None:
        self._put(row, insert=True)

    def state(self, row: StateRow) -> None:
        self._put(row, insert=False)

    def insert_batch(self, row: BatchRow) -> None:
        self._put(row, insert=True)

    def batch(self, row: BatchRow) -> None:
        self._put(row, insert=False)

    def insert_txn(self, row: TxnRow) -> None:
        self._put(row, insert=True)

    def txn(self, row: TxnRow) -> None:
        self._put(row, insert=False)

    def event(self, event_type: str, message: str, **details: Any) -> None:
        self._append(KIND_EVENT, event_type, {"message": message, **details})


class Journal:
    """A terminal's journal over one database (a SQLite file in production).

    The writer's mirror
    -------------------
    A journal that writes keeps in memory what its engine reads again and
    again: the state row; the open batch, any batch not closed and the last
    ``CLOSED_BATCHES_MIRRORED_MAX`` closed ones; the open batch's transactions
    (at most ``open_txns_mirrored_max``: past that they are read from the
    database until the next batch opens); every outstanding transaction; the
    top ``txn_id`` and ``batch_id``. Memory is bounded by the open batch, not
    by the journal's age. Every other read goes to the database.

    What the mirror assumes: **this object is the only writer of its
    database** — one engine per journal, which the hash chain assumes
    already. From that:

    - it is loaded from the database after this object's first unit of work
      commits, not at open: a journal that only reads (doctor, ``posbatch
      terminal status``, the simulator's checker, one reopened after a crash)
      has no mirror and sees whatever was committed, whenever it was opened;
    - it changes only after a unit of work has committed, with the rows that
      unit wrote; a unit that fails leaves it as it was, and a database error
      drops it (reads go to the database until the next commit reloads it)
      and takes the chain's tail from the database again;
    - a second writer cannot make a stale mirror the base of a committed
      write: each unit of work appends entry ``seq + 1``, which the database
      refuses once another writer has appended it. Reads made between the
      other writer's commit and that refusal may be stale: that is what the
      single-writer rule forbids.
    """

    def __init__(
        self, engine: Engine, *, open_txns_mirrored_max: int = OPEN_TXNS_MIRRORED_MAX
    ) -> None:
        self.engine = engine
        self._last_seq = 0
        self._last_hash = GENESIS_HASH
        self._mirror: Mirror | None = None
        self._open_txns_max = open_txns_mirrored_max
        self._statements: dict[str, DriverStatement] = {}  # by name, for this database
        # What a failing database raises here: SQLAlchemy's errors (the pool, the engine)
        # and the driver's own (statements run on its cursor).
        self._errors: tuple[type[Exception], ...] = (
            sa.exc.SQLAlchemyError,
            engine.dialect.loaded_dbapi.Error,
        )
        # SQLite: the connection this journal keeps between units of work (see
        # :meth:`_connection`); None until the first one, and after a database error.
        self._held: PoolProxiedConnection | None = None
        self._held_driver: DBAPIConnection | None = None  # its driver connection, used as is
        # Kept only where the pool hands out connections of their own (a SQLite file, the
        # simulator's databases); an in-memory journal's StaticPool shares its one.
        self._hold = engine.dialect.name == "sqlite" and isinstance(engine.pool, QueuePool)
        self._writing = False
        if self._hold:
            mine = weakref.ref(self)

            def on_dispose(_engine: Engine) -> None:
                journal = mine()
                if journal is not None:
                    journal.close()

            sa.event.listen(engine, "engine_disposed", on_dispose)
        self._read_tail()

    # --- opening ---------------------------------------------------------------

    @classmethod
    def open(
        cls, url: str, *, verify: bool = True, clock: Callable[[], datetime] | None = None
    ) -> Journal:
        """Open (and migrate) the journal at ``url``; verify its chain unless told not to.

        ``sqlite://`` is an in-memory journal on one shared connection: the
        simulator keeps its engine (the "disk") and builds a new Journal over
        it with :meth:`over` to restart a crashed terminal.
        """
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            engine = sa.create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
            return cls.over(engine, verify=verify, clock=clock)
        return cls.over(create_engine(url), verify=verify, clock=clock)

    @classmethod
    def over(
        cls,
        engine: Engine,
        *,
        verify: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> Journal:
        """A journal over an existing engine (the simulator keeps in-memory engines).

        When the schema is migrated under an initialised journal (a software
        update), a ``software_update`` event records the revisions and the
        counters before and after, so doctor can show they were kept.
        """
        before = revision_and_counters(engine)
        upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE)
        journal = cls(engine)
        if verify:
            journal.verify()
        after = revision_and_counters(engine)
        if before[0] is not None and before[0] != after[0] and before[1] is not None:
            moment = (clock or (lambda: datetime.now(UTC)))()
            with journal.write(moment) as writer:
                writer.event(
                    "software_update",
                    f"journal schema {before[0]} → {after[0]}; "
                    f"batch {before[2]} → {after[2]}, STAN {before[1]} → {after[1]}",
                    from_version=before[0],
                    to_version=after[0],
                    stan_before=before[1],
                    stan_after=after[1],
                    batch_no_before=before[2],
                    batch_no_after=after[2],
                )
        return journal

    def _read_tail(self) -> None:
        records = self._fetch(SELECT_TAIL)
        if records:
            seq, digest = records[0]
            self._last_seq, self._last_hash = int(seq or 0), str(digest)
        else:
            self._last_seq, self._last_hash = 0, GENESIS_HASH

    def _load_mirror(self) -> Mirror | None:
        """The mirror as the database holds it (None before the journal is initialised)."""
        self._read_tail()
        found = self._fetch(SELECT_STATE)
        if not found:
            return None
        state = row_from_record(StateRow, found[0])
        batches = {
            batch.batch_id: batch
            for batch in (
                row_from_record(BatchRow, record)
                for record in self._fetch(SELECT_LIVE_BATCHES, {"batch_id": state.batch_id})
            )
        }
        if state.batch_id not in batches:
            return None  # a damaged journal: reads go to the database and say so
        first = self._fetch(
            SELECT_BATCH_TXNS, {"batch_id": state.batch_id}, most=self._open_txns_max + 1
        )
        open_txns: dict[int, TxnRow] | None = None
        if len(first) <= self._open_txns_max:
            open_txns = {
                txn.txn_id: txn for txn in (row_from_record(TxnRow, record) for record in first)
            }
        outstanding = {
            txn.txn_id: txn
            for txn in (
                row_from_record(TxnRow, record) for record in self._fetch(SELECT_OUTSTANDING)
            )
        }
        return Mirror(
            state,
            batches,
            open_txns,
            outstanding,
            self._top(SELECT_TOP_TXN_ID),
            self._top(SELECT_TOP_BATCH_ID),
        )

    # --- writing ---------------------------------------------------------------

    def _driver(
        self,
        name: str,
        statement: sa.Insert | sa.Update | sa.Select[Any],
        columns: Iterable[str] | None = None,
        *,
        literal: bool = False,
    ) -> DriverStatement:
        """``statement`` (writing ``columns``) compiled for this journal's database, once."""
        found = self._statements.get(name)
        if found is not None:
            return found
        dialect = self.engine.dialect
        key = (dialect.name, dialect.driver, dialect.paramstyle, name)
        found = DRIVER_STATEMENTS.get(key)
        if found is None:
            found = DRIVER_STATEMENTS[key] = DriverStatement.compile(
                statement, dialect, columns, literal=literal
            )
        self._statements[name] = found
        return found

    @contextmanager
    def write(self, moment: datetime) -> Iterator[Writer]:
        """A unit of work: everything written inside commits together, or not at all."""
        saved = (self._last_seq, self._last_hash)
        try:
            connection = self._connection()
            self._writing = True
            try:
                writer = Writer(self, connection.cursor(), _at(moment))
                yield writer
                connection.commit()
            except BaseException:
                with contextlib.suppress(*self._errors):
                    connection.rollback()
                raise
            finally:
                self._writing = False
                if connection is not self._held_driver:
                    connection.close()
        except self._errors as exc:
            self._last_seq, self._last_hash = saved
            self.close()  # a connection that failed is not kept
            self._forget()
            if self._last_seq > saved[0]:  # the chain grew meanwhile: another writer appended
                raise StorageError(SECOND_WRITER) from exc
            raise StorageError(f"journal write failed: {_described(exc)}") from exc
        except BaseException:
            self._last_seq, self._last_hash = saved
            raise
        self._follow(writer.written)

    def _follow(self, written: Sequence[tuple[AnyRow, bool]]) -> None:
        """After a commit: fold the rows written into the mirror, or load it afresh."""
        mirror = self._mirror
        if mirror is not None and mirror.apply(written, self._open_txns_max):
            return
        self._mirror = None
        try:
            self._mirror = self._load_mirror()
        except StorageError:
            self._mirror = None  # reads go to the database, which will say what is wrong

    def _forget(self) -> None:
        """After a failed write: drop the mirror and take the chain's tail from the database."""
        self._mirror = None
        with contextlib.suppress(StorageError):
            self._read_tail()

    # --- reading ---------------------------------------------------------------

    def _fetch(
        self,
        query: Query,
        parameters: Mapping[str, Value] | None = None,
        *,
        most: int | None = None,
    ) -> list[Sequence[Value]]:
        """The records ``query`` reads (at most ``most``), on the driver's own cursor."""
        statement = self._driver(query.name, query.statement, literal=query.literal)
        try:
            # A read made while a unit of work is open (a nested read) takes a connection
            # of its own, as it always did: it sees what is committed, not that work.
            connection = self.engine.raw_connection() if self._writing else self._connection()
            try:
                cursor = connection.cursor()
                statement.execute(cursor, parameters)
                records = cursor.fetchall() if most is None else cursor.fetchmany(most)
                cursor.close()
                if connection is self._held_driver:
                    connection.rollback()  # what returning it to the pool would do
                return list(records)
            finally:
                if connection is not self._held_driver:
                    connection.close()
        except self._errors as exc:
            self.close()  # a connection that failed is not kept
            raise StorageError(f"cannot read the journal: {_described(exc)}") from exc

    def _connection(self) -> DBAPIConnection:
        """The connection for a unit of work or a read.

        SQLite: the one this journal holds, checked out of the pool at its first use
        and kept until :meth:`close` — which the engine's ``dispose()`` calls (how every
        owner of a journal lets go of its database), as does a database error, after
        which the next use checks out a fresh one. Between uses it holds no transaction
        (a unit of work commits or rolls back; a read is rolled back), so it locks
        nothing: a pool checkout and return per unit of work cost some 8 µs against
        about 1 µs on a held connection, and a sale makes two units of work. Other
        databases (PostgreSQL) check one out each time, so the pool's pre-ping still
        replaces a connection the server dropped; so does an in-memory journal (its
        StaticPool has one connection, which closing would lose).
        """
        if not self._hold:
            return self.engine.raw_connection()
        driver = self._held_driver
        if driver is None:
            held = self._held = self.engine.raw_connection()
            # the driver's own connection: the pool's proxy in front of it only forwards
            driver = self._held_driver = held.dbapi_connection
            assert driver is not None
        return driver

    def close(self) -> None:
        """Let go of the connection this journal holds (the engine's ``dispose()`` calls
        this): its driver connection is closed at once, not left to the pool the engine
        dropped. The journal stays usable; its next use connects again."""
        held, self._held, self._held_driver = self._held, None, None
        if held is not None:
            with contextlib.suppress(*self._errors):
                held.detach()
                held.close()

    def _select(
        self, statement: sa.Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> list[sa.RowMapping]:
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(statement, parameters).mappings())
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read the journal: {exc}") from exc

    @property
    def initialized(self) -> bool:
        if self._mirror is not None:
            return True
        return bool(self._fetch(SELECT_STATE_IDS))

    @property
    def mirrored_rows(self) -> int:
        """Rows the writer's mirror holds in memory (0 for a journal that only reads)."""
        mirror = self._mirror
        if mirror is None:
            return 0
        open_count = len(mirror.open_txns) if mirror.open_txns is not None else 0
        return 1 + len(mirror.batches) + open_count + len(mirror.outstanding)

    def state(self) -> StateRow:
        if self._mirror is not None:
            return self._mirror.state
        records = self._fetch(SELECT_STATE)
        if not records:
            raise StorageError("the journal is not initialised: run `posbatch terminal init`")
        return row_from_record(StateRow, records[0])

    def batch(self, batch_id: int) -> BatchRow:
        if self._mirror is not None and batch_id in self._mirror.batches:
            return self._mirror.batches[batch_id]
        records = self._fetch(SELECT_BATCH, {"batch_id": batch_id})
        if not records:
            raise StorageError(f"batch {batch_id} is missing from the journal")
        return row_from_record(BatchRow, records[0])

    def current_batch(self) -> BatchRow:
        return self.batch(self.state().batch_id)

    def batches(self) -> list[BatchRow]:
        return [row_from_record(BatchRow, record) for record in self._fetch(SELECT_BATCHES)]

    def transactions(self, batch_id: int | None = None) -> list[TxnRow]:
        """Every transaction, or those of batch ``batch_id``; oldest first."""
        if batch_id is None:
            return [row_from_record(TxnRow, record) for record in self._fetch(SELECT_TXNS)]
        mirror = self._mirror
        if (
            mirror is not None
            and batch_id == mirror.state.batch_id
            and mirror.open_txns is not None
        ):
            return sorted(mirror.open_txns.values(), key=txn_id_of)
        records = self._fetch(SELECT_BATCH_TXNS, {"batch_id": batch_id})
        return [row_from_record(TxnRow, record) for record in records]

    def transaction(self, txn_id: int) -> TxnRow:
        mirror = self._mirror
        if mirror is not None:
            found = mirror.outstanding.get(txn_id)
            if found is None and mirror.open_txns is not None:
                found = mirror.open_txns.get(txn_id)
            if found is not None:
                return found
        records = self._fetch(SELECT_TXN, {"txn_id": txn_id})
        if not records:
            raise StorageError(f"transaction {txn_id} is missing from the journal")
        return row_from_record(TxnRow, records[0])

    def outstanding(self) -> list[TxnRow]:
        """Transactions the host must hear about before anything else, oldest first."""
        if self._mirror is not None:
            return sorted(self._mirror.outstanding.values(), key=txn_id_of)
        return [row_from_record(TxnRow, record) for record in self._fetch(SELECT_OUTSTANDING)]

    def find(self, stan: int, batch_no: int | None = None) -> list[TxnRow]:
        """Transactions with ``stan`` (newest first), optionally only in ``batch_no``."""
        if batch_no is None:
            records = self._fetch(SELECT_BY_STAN, {"stan": stan})
        else:
            records = self._fetch(SELECT_BY_STAN_IN_BATCH, {"stan": stan, "batch_no": batch_no})
        return [row_from_record(TxnRow, record) for record in records]

    def next_txn_id(self) -> int:
        if self._mirror is not None:
            return self._mirror.top_txn_id + 1
        return self._top(SELECT_TOP_TXN_ID) + 1

    def next_batch_id(self) -> int:
        if self._mirror is not None:
            return self._mirror.top_batch_id + 1
        return self._top(SELECT_TOP_BATCH_ID) + 1

    def _top(self, query: Query) -> int:
        records = self._fetch(query)
        return int(records[0][0] or 0) if records else 0

    def events(self, event_type: str | None = None) -> list[EventRow]:
        statement = (
            sa.select(entries_table)
            .where(entries_table.c.kind == KIND_EVENT)
            .order_by(entries_table.c.seq)
            .limit(EVENTS_READ_MAX)
        )
        if event_type is not None:
            statement = statement.where(entries_table.c.key == event_type)
        events = []
        for row in self._select(statement):
            payload = json.loads(row["payload"])
            message = str(payload.pop("message", ""))
            events.append(EventRow(int(row["seq"]), row["at"], row["key"], message, payload))
        return events

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def chain_hash(self, seq: int) -> str | None:
        """The hash of entry ``seq``, or None if there is none: two journals with the same
        hash at ``seq`` share their whole history up to it (doctor compares backups)."""
        try:
            with self.engine.connect() as connection:
                found = connection.execute(
                    sa.select(entries_table.c.hash).where(entries_table.c.seq == seq)
                ).scalar()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read the journal: {exc}") from exc
        return None if found is None else str(found)

    def schema_revision(self) -> str | None:
        """The migration revision of this journal's schema (None if never migrated)."""
        return revision_and_counters(self.engine)[0]

    def stan_history(self) -> Iterator[int]:
        """The STAN of every state snapshot, oldest first (doctor looks for gaps and jumps).

        Read from the entries, not the mirror, so it shows what the file holds;
        a snapshot whose payload cannot be read is skipped (:meth:`verify` names it).
        """
        statement = (
            sa.select(entries_table.c.payload)
            .where(entries_table.c.kind == KIND_STATE)
            .order_by(entries_table.c.seq)
        )
        try:
            with self.engine.connect() as connection:
                for payload in connection.execute(statement).scalars():
                    try:
                        yield int(json.loads(payload).get("stan") or 0)
                    except (ValueError, TypeError, AttributeError):
                        continue
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read the journal: {exc}") from exc

    # --- integrity -------------------------------------------------------------

    def verify(self, since: Checkpoint | None = None) -> int:
        """Check the hash chain and every table row against it; return the entries checked.

        With ``since`` (a :attr:`checkpoint` this terminal took before it stopped) only
        what follows it is checked (:func:`~posbatch.terminal._chain.verify_since`): a
        reopen after a crash costs what was written since, not the journal's age.
        Doctor and restore verify whole.
        """
        if since is None:
            return verify_engine(self.engine)
        return verify_since(self.engine, since)

    @property
    def checkpoint(self) -> Checkpoint:
        """The chain's tail as this journal knows it: the last entry it wrote, or the one
        it read when it opened. Verified whenever the journal was (keep it to verify a
        reopen with ``verify(since=...)``)."""
        return Checkpoint(self._last_seq, self._last_hash)

    # --- backup ----------------------------------------------------------------

    def backup(self, destination: Path) -> int:
        """A consistent online copy of a SQLite journal (SQLite backup API); entries copied."""
        if self.engine.dialect.name != "sqlite" or self.engine.url.database in (
            None,
            "",
            ":memory:",
        ):
            raise StorageError("backup needs a journal in a SQLite file")
        make_private_dir(destination.parent)  # a backup is as private as the journal
        try:  # created here, private (0600), before SQLite writes a byte into it
            os.close(os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BACKUP_FILE_MODE))
        except FileExistsError as exc:
            raise StorageError(f"{destination} exists already: choose a new backup file") from exc
        except OSError as exc:
            raise StorageError(f"cannot create the backup file {destination}: {exc}") from exc
        raw = self.engine.raw_connection()
        try:
            source = raw.driver_connection
            assert isinstance(source, sqlite3.Connection)
            target = sqlite3.connect(destination)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            raw.close()
        return self._last_seq
