"""The terminal journal: a hash-chained log of snapshots, plus the tables they describe.

Theory of operation
-------------------
Every change the terminal makes — a STAN taken, a transaction written before
its request leaves, its outcome, a settlement step, a batch closed, an event —
is written in ONE database transaction as two things:

1. the new row in its table (``terminal_state``, ``batches``,
   ``transactions``), which the engine reads, and
2. an append-only entry in ``journal_entries`` holding a snapshot of that
   row (or the event), chained to the entry before it:
   ``hash = sha256(prev_hash | seq | at | kind | key | payload)``.

:meth:`Journal.verify` walks the chain (a changed, removed or inserted entry
breaks it at the first bad ``seq``) and then checks that every table row is
the last snapshot its entries hold (a row edited behind the journal's back is
named by its table and key). Either failure is a :class:`JournalIntegrityError`
naming the first bad entry.

The chain is not a signature: whoever can rewrite the whole file can rebuild
it. It catches damage, a hand edit, a partial restore — what the support desk
meets in practice.

Single writer: one engine owns a journal (one terminal, one request in flight),
so ``seq`` and ``prev_hash`` are kept in memory after :meth:`Journal.open`
reads the tail, and a journal that writes mirrors in memory the rows its
engine reads again and again (see :class:`Journal`: what the mirror holds and
what it assumes). Statements are built once, at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import operator
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Dialect, Engine
from sqlalchemy.pool import StaticPool

from posbatch.batch.terminal_batch import SettleStep
from posbatch.batch.txn_lifecycle import TxnEvent, TxnState, apply_terminal
from posbatch.errors import JournalIntegrityError, StorageError
from posbatch.storage import create_engine, make_private_dir, upgrade

__all__ = [
    "GENESIS_HASH",
    "JOURNAL_FILE_NAME",
    "BatchRow",
    "EventRow",
    "Journal",
    "StateRow",
    "TxnRow",
    "TxnState",
]

JOURNAL_FILE_NAME: Final = "journal.db"
VERSION_TABLE: Final = "journal_alembic_version"
MIGRATIONS: Final = "posbatch.terminal:migrations"
GENESIS_HASH: Final = "0" * 64
STATE_KEY: Final = "1"
BACKUP_FILE_MODE: Final = 0o600  # a backup holds sealed card numbers: private
# Events read back at once for status/doctor; older ones stay in the journal.
EVENTS_READ_MAX: Final = 10_000

metadata = sa.MetaData()

entries_table = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
state_table = sa.Table(
    "terminal_state",
    metadata,
    sa.Column("state_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("merchant_id", sa.String(15)),
    sa.Column("terminal_id", sa.String(8)),
    sa.Column("host_address", sa.String(255)),
    sa.Column("stan", sa.Integer),
    sa.Column("batch_id", sa.Integer),
    sa.Column("training", sa.Boolean),
    sa.Column("training_seq", sa.Integer),
    sa.Column("created_at", sa.String(32)),
    sa.Column("resync_pending", sa.Boolean),
    sa.Column("batch_limit", sa.Integer),
)
batches_table = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("batch_no", sa.Integer),
    sa.Column("step", sa.String(16)),
    sa.Column("opened_at", sa.String(32)),
    sa.Column("closed_at", sa.String(32)),
    sa.Column("terminal_totals", sa.String(62)),
    sa.Column("host_totals", sa.String(62)),
    sa.Column("settle_response_code", sa.String(2)),
    sa.Column("balanced", sa.Boolean),
    sa.Column("close_reason", sa.String(32)),
    sa.Column("uploaded_count", sa.Integer),
    sa.Column("upload_messages", sa.Integer),
)
transactions_table = sa.Table(
    "transactions",
    metadata,
    sa.Column("txn_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("batch_id", sa.Integer),
    sa.Column("batch_no", sa.Integer),
    sa.Column("kind", sa.String(16)),
    sa.Column("stan", sa.Integer),
    sa.Column("amount_fen", sa.BigInteger),
    sa.Column("pan_sealed", sa.Text),
    sa.Column("pan_masked", sa.String(19)),
    sa.Column("expiry", sa.String(4)),
    sa.Column("card_type", sa.String(2)),
    sa.Column("state", sa.String(24)),
    sa.Column("response_code", sa.String(2)),
    sa.Column("rrn", sa.String(12)),
    sa.Column("auth_code", sa.String(6)),
    sa.Column("host_time", sa.String(6)),
    sa.Column("host_date", sa.String(4)),
    sa.Column("original_txn_id", sa.Integer),
    sa.Column("original_batch_no", sa.Integer),
    sa.Column("original_stan", sa.Integer),
    sa.Column("original_date", sa.String(4)),
    sa.Column("reversal_reason", sa.String(2)),
    sa.Column("send_attempts", sa.Integer),
    sa.Column("uploaded", sa.Boolean),
    sa.Column("training", sa.Boolean),
    sa.Column("refunded_fen", sa.BigInteger),
    sa.Column("created_at", sa.String(32)),
    sa.Column("updated_at", sa.String(32)),
    sa.Column("reference", sa.String(64)),
)


@dataclass(frozen=True, slots=True)
class StateRow:
    merchant_id: str
    terminal_id: str
    host_address: str
    stan: int  # the last STAN used (0 before the first message)
    batch_id: int  # the current batch
    training: bool
    training_seq: int
    created_at: str
    resync_pending: bool = False  # new or restored journal: settle the host's batch first
    # Entries one field-48 counter takes before the terminal settles by itself (settings;
    # migration t0003_promise_core). Must equal that migration's server default.
    batch_limit: int = 500


@dataclass(frozen=True, slots=True)
class BatchRow:
    batch_id: int
    batch_no: int
    step: str
    opened_at: str
    closed_at: str | None = None
    terminal_totals: str | None = None  # field 48 as sent in the 0500
    host_totals: str | None = None  # field 48 of the 0510
    settle_response_code: str | None = None
    balanced: bool | None = None
    close_reason: str | None = None
    uploaded_count: int = 0
    upload_messages: int = 0

    @property
    def settle_step(self) -> SettleStep:
        return SettleStep(self.step)


@dataclass(frozen=True, slots=True)
class TxnRow:
    txn_id: int
    batch_id: int
    batch_no: int
    kind: str  # sale / void / refund
    stan: int
    amount_fen: int
    pan_sealed: str
    pan_masked: str
    expiry: str | None
    card_type: str
    state: str
    created_at: str
    updated_at: str
    response_code: str | None = None
    rrn: str | None = None
    auth_code: str | None = None
    host_time: str | None = None
    host_date: str | None = None
    original_txn_id: int | None = None
    original_batch_no: int | None = None
    original_stan: int | None = None
    original_date: str | None = None
    reversal_reason: str | None = None
    send_attempts: int = 0
    uploaded: bool = False
    training: bool = False
    refunded_fen: int = 0
    reference: str | None = None

    @property
    def counted(self) -> bool:
        return not self.training and self.state in TxnState.COUNTED

    @property
    def approved(self) -> bool:
        return self.state in TxnState.COUNTED

    def moved(self, event: TxnEvent, **changes: Any) -> TxnRow:
        """This row after ``event`` (:mod:`posbatch.batch.txn_lifecycle`), with ``changes``:
        the only way the engine changes a row's state (an illegal move raises)."""
        return dataclasses.replace(self, state=apply_terminal(self.state, event), **changes)


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    at: str
    type: str
    message: str
    details: dict[str, Any]


_Row = TypeVar("_Row", StateRow, BatchRow, TxnRow)
_AnyRow = StateRow | BatchRow | TxnRow

_KIND_STATE: Final = "state"
_KIND_BATCH: Final = "batch"
_KIND_TXN: Final = "txn"
_KIND_EVENT: Final = "event"
_TABLES: Final[dict[str, tuple[sa.Table, type[Any], str]]] = {
    _KIND_STATE: (state_table, StateRow, "state_id"),
    _KIND_BATCH: (batches_table, BatchRow, "batch_id"),
    _KIND_TXN: (transactions_table, TxnRow, "txn_id"),
}
_KIND_OF: Final[dict[type[Any], str]] = {cls: kind for kind, (_t, cls, _k) in _TABLES.items()}

# Limits of the writer's mirror (see Journal): rows of the open batch kept in memory (a
# batch that grows past it is read from the database until the next batch opens), and
# closed batches kept after they close (the settlement result reads the last one).
OPEN_TXNS_MIRRORED_MAX: Final = 5_000
CLOSED_BATCHES_MIRRORED_MAX: Final = 2

# Statements are built once: executed with parameter dicts they hit SQLAlchemy's compiled
# cache, where building one per call (``insert().values(**row)``) cost more than the SQL.
_KEY_PARAM: Final = "row_key"
_INSERT_ENTRY: Final = entries_table.insert()
_INSERT: Final = {kind: table.insert() for kind, (table, _cls, _key) in _TABLES.items()}
_UPDATE: Final = {
    kind: table.update().where(table.c[key_name] == sa.bindparam(_KEY_PARAM))
    for kind, (table, _cls, key_name) in _TABLES.items()
}
_ENTRY_COLUMNS: Final = tuple(column.name for column in entries_table.columns)
_SELECT_TAIL: Final = (
    sa.select(entries_table.c.seq, entries_table.c.hash)
    .order_by(entries_table.c.seq.desc())
    .limit(1)
)
_SELECT_STATE: Final = sa.select(state_table)
_SELECT_BATCH: Final = sa.select(batches_table).where(
    batches_table.c.batch_id == sa.bindparam("batch_id")
)
_SELECT_BATCHES: Final = sa.select(batches_table).order_by(batches_table.c.batch_id)
# The mirror's batches: the open one and every one not closed.
_SELECT_LIVE_BATCHES: Final = (
    sa.select(batches_table)
    .where(
        sa.or_(
            batches_table.c.batch_id == sa.bindparam("batch_id"),
            batches_table.c.step != SettleStep.CLOSED.value,
        )
    )
    .order_by(batches_table.c.batch_id)
)
_SELECT_TXN: Final = sa.select(transactions_table).where(
    transactions_table.c.txn_id == sa.bindparam("txn_id")
)
_SELECT_TXNS: Final = sa.select(transactions_table).order_by(transactions_table.c.txn_id)
_SELECT_BATCH_TXNS: Final = _SELECT_TXNS.where(
    transactions_table.c.batch_id == sa.bindparam("batch_id")
)
_SELECT_OUTSTANDING: Final = _SELECT_TXNS.where(
    transactions_table.c.state.in_(sorted(TxnState.OUTSTANDING))
)
_SELECT_BY_STAN: Final = (
    sa.select(transactions_table)
    .where(
        transactions_table.c.stan == sa.bindparam("stan"),
        transactions_table.c.training.is_(False),
    )
    .order_by(transactions_table.c.txn_id.desc())
)
_SELECT_BY_STAN_IN_BATCH: Final = _SELECT_BY_STAN.where(
    transactions_table.c.batch_no == sa.bindparam("batch_no")
)
_SELECT_TOP_TXN_ID: Final = sa.select(sa.func.max(transactions_table.c.txn_id).label("top"))
_SELECT_TOP_BATCH_ID: Final = sa.select(sa.func.max(batches_table.c.batch_id).label("top"))


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, seq: int, *, at: str, kind: str, key: str, payload: str) -> str:
    text = f"{prev_hash}|{seq}|{at}|{kind}|{key}|{payload}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _shape(cls: type[Any]) -> tuple[tuple[str, ...], frozenset[str]]:
    """(field names, names of the boolean fields) of a row class."""
    fields = dataclasses.fields(cls)
    booleans = frozenset(field.name for field in fields if "bool" in str(field.type))
    return tuple(field.name for field in fields), booleans


_SHAPES: Final = {cls: _shape(cls) for cls in (StateRow, BatchRow, TxnRow)}


def _from_mapping(cls: type[_Row], mapping: Mapping[Any, Any]) -> _Row:
    names, booleans = _SHAPES[cls]
    found = dict(mapping)  # one copy: a key test on a SQLAlchemy row mapping costs more
    values: dict[str, Any] = {}
    for name in names:
        if name not in found:
            continue  # a column added by a later migration: its default
        value = found[name]
        if value is not None and name in booleans:
            value = bool(value)
        values[name] = value
    return cls(**values)


def _values(row: _AnyRow) -> dict[str, Any]:
    """The row as a dict of its fields (``dataclasses.asdict`` without the deep copy)."""
    return {name: getattr(row, name) for name in _SHAPES[type(row)][0]}


_txn_id: Final = operator.attrgetter("txn_id")


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    """A write compiled once for one database, executed straight on its driver.

    ``exec_driver_sql`` costs about a third of ``Connection.execute`` with a
    cached statement (12 µs against 39 µs per insert on SQLite), and the
    journal writes some seven rows per sale. Its columns are text, integers
    and booleans, which every driver takes as they are: no bind processing
    is skipped that would change a value.
    """

    sql: str
    order: tuple[str, ...] | None  # the driver's positional order; None: it takes a dict

    @classmethod
    def compile(
        cls, statement: sa.Insert | sa.Update, dialect: Dialect, columns: Iterable[str]
    ) -> _DriverStatement:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        order = compiled.positiontup if compiled.positional else None
        return cls(compiled.string, None if order is None else tuple(order))

    def execute(self, connection: Connection, parameters: Mapping[str, Any]) -> CursorResult[Any]:
        if self.order is None:
            return connection.exec_driver_sql(self.sql, dict(parameters))
        return connection.exec_driver_sql(self.sql, tuple(parameters[name] for name in self.order))


# Compiled once per kind of database (dialect, driver, paramstyle) and statement name:
# a handful of entries, shared by every journal of the process (the simulator opens hundreds).
_DRIVER_STATEMENTS: Final[dict[tuple[str, str, str, str], _DriverStatement]] = {}


class Writer:
    """One unit of work: rows and entries written in one database transaction."""

    def __init__(self, journal: Journal, connection: Connection, at: str) -> None:
        self._journal = journal
        self._connection = connection
        self._at = at
        # The rows written, in order, with whether each was an insert: the journal folds
        # them into its mirror once the unit of work has committed.
        self.written: list[tuple[_AnyRow, bool]] = []

    def _append(self, kind: str, key: str, payload: Mapping[str, Any]) -> int:
        journal = self._journal
        seq = journal._last_seq + 1
        text = _canonical(payload)
        digest = entry_hash(journal._last_hash, seq, at=self._at, kind=kind, key=key, payload=text)
        journal._driver("insert entry", _INSERT_ENTRY, _ENTRY_COLUMNS).execute(
            self._connection,
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

    def _put(self, row: _AnyRow, *, insert: bool) -> None:
        kind = _KIND_OF[type(row)]
        table, _cls, key_name = _TABLES[kind]
        values = _values(row)
        key = int(STATE_KEY) if kind == _KIND_STATE else values[key_name]
        if insert:
            columns = {key_name: key, **values} if kind == _KIND_STATE else values
            statement = self._journal._driver(f"insert {kind}", _INSERT[kind], columns)
            statement.execute(self._connection, columns)
        else:
            statement = self._journal._driver(f"update {kind}", _UPDATE[kind], values)
            result = statement.execute(self._connection, {**values, _KEY_PARAM: key})
            if result.rowcount != 1:
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
        self._append(_KIND_EVENT, event_type, {"message": message, **details})


@dataclass(slots=True)
class _Mirror:
    """What the single writer knows of its journal without asking the database."""

    state: StateRow
    batches: dict[int, BatchRow]  # the open batch, every batch not closed, the last closed
    open_txns: dict[int, TxnRow] | None  # the open batch's rows by txn_id; None: too many
    outstanding: dict[int, TxnRow]  # rows in an OUTSTANDING state, of any batch
    top_txn_id: int
    top_batch_id: int

    def apply(self, written: Sequence[tuple[_AnyRow, bool]], open_txns_max: int) -> bool:
        """Fold in the rows of a committed unit of work; False if it cannot follow them."""
        state = self.state
        inserted_batches: set[int] = set()
        for row, insert in written:
            if isinstance(row, StateRow):
                state = row
            elif isinstance(row, BatchRow):
                self.batches[row.batch_id] = row
                self.top_batch_id = max(self.top_batch_id, row.batch_id)
                if insert:
                    inserted_batches.add(row.batch_id)
        if state.batch_id != self.state.batch_id:
            if state.batch_id not in inserted_batches:
                return False  # moved to a batch it does not hold the rows of: reload
            self.open_txns = {}
        self.state = state
        for row, _insert in written:
            if not isinstance(row, TxnRow):
                continue
            self.top_txn_id = max(self.top_txn_id, row.txn_id)
            if row.state in TxnState.OUTSTANDING:
                self.outstanding[row.txn_id] = row
            else:
                self.outstanding.pop(row.txn_id, None)
            if self.open_txns is not None and row.batch_id == state.batch_id:
                self.open_txns[row.txn_id] = row
                if len(self.open_txns) > open_txns_max:
                    self.open_txns = None
        closed = [
            batch_id
            for batch_id, batch in self.batches.items()
            if batch.step == SettleStep.CLOSED.value and batch_id != state.batch_id
        ]
        for batch_id in closed[: max(0, len(closed) - CLOSED_BATCHES_MIRRORED_MAX)]:
            del self.batches[batch_id]
        return True


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
        self._mirror: _Mirror | None = None
        self._open_txns_max = open_txns_mirrored_max
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
        before = _revision_and_counters(engine)
        upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE)
        journal = cls(engine)
        if verify:
            journal.verify()
        after = _revision_and_counters(engine)
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
        try:
            with self.engine.connect() as connection:
                self._set_tail(connection)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read the journal: {exc}") from exc

    def _set_tail(self, connection: Connection) -> None:
        row = connection.execute(_SELECT_TAIL).first()
        if row is not None:
            self._last_seq, self._last_hash = int(row.seq), str(row.hash)
        else:
            self._last_seq, self._last_hash = 0, GENESIS_HASH

    def _load_mirror(self, connection: Connection) -> _Mirror | None:
        """The mirror as the database holds it (None before the journal is initialised)."""
        self._set_tail(connection)
        found = connection.execute(_SELECT_STATE).mappings().first()
        if found is None:
            return None
        state = _from_mapping(StateRow, found)
        batches = {
            batch.batch_id: batch
            for batch in (
                _from_mapping(BatchRow, row)
                for row in connection.execute(
                    _SELECT_LIVE_BATCHES, {"batch_id": state.batch_id}
                ).mappings()
            )
        }
        if state.batch_id not in batches:
            return None  # a damaged journal: reads go to the database and say so
        rows = connection.execute(_SELECT_BATCH_TXNS, {"batch_id": state.batch_id}).mappings()
        first = rows.fetchmany(self._open_txns_max + 1)
        rows.close()
        open_txns: dict[int, TxnRow] | None = None
        if len(first) <= self._open_txns_max:
            open_txns = {txn.txn_id: txn for txn in (_from_mapping(TxnRow, row) for row in first)}
        outstanding = {
            txn.txn_id: txn
            for txn in (
                _from_mapping(TxnRow, row)
                for row in connection.execute(_SELECT_OUTSTANDING).mappings()
            )
        }
        return _Mirror(
            state,
            batches,
            open_txns,
            outstanding,
            int(connection.execute(_SELECT_TOP_TXN_ID).scalar() or 0),
            int(connection.execute(_SELECT_TOP_BATCH_ID).scalar() or 0),
        )

    # --- writing ---------------------------------------------------------------

    def _driver(
        self, name: str, statement: sa.Insert | sa.Update, columns: Iterable[str]
    ) -> _DriverStatement:
        """``statement`` (writing ``columns``) compiled for this journal's database, once."""
        dialect = self.engine.dialect
        key = (dialect.name, dialect.driver, dialect.paramstyle, name)
        found = _DRIVER_STATEMENTS.get(key)
        if found is None:
            found = _DRIVER_STATEMENTS[key] = _DriverStatement.compile(statement, dialect, columns)
        return found

    @contextmanager
    def write(self, moment: datetime) -> Iterator[Writer]:
        """A unit of work: everything written inside commits together, or not at all."""
        saved = (self._last_seq, self._last_hash)
        try:
            with self.engine.begin() as connection:
                writer = Writer(self, connection, _at(moment))
                yield writer
        except sa.exc.SQLAlchemyError as exc:
            self._last_seq, self._last_hash = saved
            self._forget()
            raise StorageError(f"journal write failed: {exc}") from exc
        except BaseException:
            self._last_seq, self._last_hash = saved
            raise
        self._follow(writer.written)

    def _follow(self, written: Sequence[tuple[_AnyRow, bool]]) -> None:
        """After a commit: fold the rows written into the mirror, or load it afresh."""
        mirror = self._mirror
        if mirror is not None and mirror.apply(written, self._open_txns_max):
            return
        self._mirror = None
        try:
            with self.engine.connect() as connection:
                self._mirror = self._load_mirror(connection)
        except sa.exc.SQLAlchemyError:
            self._mirror = None  # reads go to the database, which will say what is wrong

    def _forget(self) -> None:
        """After a failed write: drop the mirror and take the chain's tail from the database."""
        self._mirror = None
        with contextlib.suppress(StorageError):
            self._read_tail()

    # --- reading ---------------------------------------------------------------

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
        return bool(self._select(sa.select(state_table.c.state_id)))

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
        rows = self._select(_SELECT_STATE)
        if not rows:
            raise StorageError("the journal is not initialised: run `posbatch terminal init`")
        return _from_mapping(StateRow, rows[0])

    def batch(self, batch_id: int) -> BatchRow:
        if self._mirror is not None and batch_id in self._mirror.batches:
            return self._mirror.batches[batch_id]
        rows = self._select(_SELECT_BATCH, {"batch_id": batch_id})
        if not rows:
            raise StorageError(f"batch {batch_id} is missing from the journal")
        return _from_mapping(BatchRow, rows[0])

    def current_batch(self) -> BatchRow:
        return self.batch(self.state().batch_id)

    def batches(self) -> list[BatchRow]:
        return [_from_mapping(BatchRow, row) for row in self._select(_SELECT_BATCHES)]

    def transactions(self, batch_id: int | None = None) -> list[TxnRow]:
        """Every transaction, or those of batch ``batch_id``; oldest first."""
        if batch_id is None:
            return [_from_mapping(TxnRow, row) for row in self._select(_SELECT_TXNS)]
        mirror = self._mirror
        if (
            mirror is not None
            and batch_id == mirror.state.batch_id
            and mirror.open_txns is not None
        ):
            return sorted(mirror.open_txns.values(), key=_txn_id)
        rows = self._select(_SELECT_BATCH_TXNS, {"batch_id": batch_id})
        return [_from_mapping(TxnRow, row) for row in rows]

    def transaction(self, txn_id: int) -> TxnRow:
        mirror = self._mirror
        if mirror is not None:
            found = mirror.outstanding.get(txn_id)
            if found is None and mirror.open_txns is not None:
                found = mirror.open_txns.get(txn_id)
            if found is not None:
                return found
        rows = self._select(_SELECT_TXN, {"txn_id": txn_id})
        if not rows:
            raise StorageError(f"transaction {txn_id} is missing from the journal")
        return _from_mapping(TxnRow, rows[0])

    def outstanding(self) -> list[TxnRow]:
        """Transactions the host must hear about before anything else, oldest first."""
        if self._mirror is not None:
            return sorted(self._mirror.outstanding.values(), key=_txn_id)
        return [_from_mapping(TxnRow, row) for row in self._select(_SELECT_OUTSTANDING)]

    def find(self, stan: int, batch_no: int | None = None) -> list[TxnRow]:
        """Transactions with ``stan`` (newest first), optionally only in ``batch_no``."""
        if batch_no is None:
            rows = self._select(_SELECT_BY_STAN, {"stan": stan})
        else:
            rows = self._select(_SELECT_BY_STAN_IN_BATCH, {"stan": stan, "batch_no": batch_no})
        return [_from_mapping(TxnRow, row) for row in rows]

    def next_txn_id(self) -> int:
        if self._mirror is not None:
            return self._mirror.top_txn_id + 1
        return self._top(_SELECT_TOP_TXN_ID) + 1

    def next_batch_id(self) -> int:
        if self._mirror is not None:
            return self._mirror.top_batch_id + 1
        return self._top(_SELECT_TOP_BATCH_ID) + 1

    def _top(self, statement: sa.Select[Any]) -> int:
        rows = self._select(statement)
        return int(rows[0]["top"] or 0) if rows else 0

    def events(self, event_type: str | None = None) -> list[EventRow]:
        statement = (
            sa.select(entries_table)
            .where(entries_table.c.kind == _KIND_EVENT)
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
        return _revision_and_counters(self.engine)[0]

    def stan_history(self) -> Iterator[int]:
        """The STAN of every state snapshot, oldest first (doctor looks for gaps and jumps).

        Read from the entries, not the mirror, so it shows what the file holds;
        a snapshot whose payload cannot be read is skipped (:meth:`verify` names it).
        """
        statement = (
            sa.select(entries_table.c.payload)
            .where(entries_table.c.kind == _KIND_STATE)
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

    def verify(self) -> int:
        """Check the hash chain and every table row against it; return the entries checked."""
        return verify_engine(self.engine)

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


def schema_head() -> str:
    """The journal schema revision this software ships (the head of its migrations)."""
    from alembic.config import Config  # noqa: PLC0415 - read only on restore and by doctor
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return ScriptDirectory.from_config(config).get_current_head() or "?"


def schema_revision_of(engine: Engine) -> str | None:
    """The schema revision of the journal behind ``engine``; None when it has none."""
    return _revision_and_counters(engine)[0]


def _revision_and_counters(engine: Engine) -> tuple[str | None, int | None, int | None]:
    """(schema revision, STAN, current batch_no) of a journal, Nones where absent."""
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            if VERSION_TABLE not in tables:
                return None, None, None
            revision = connection.execute(
                sa.text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - constant
            ).scalar()
            if "terminal_state" not in tables:
                return revision, None, None
            row = connection.execute(
                sa.text(
                    "SELECT s.stan, b.batch_no FROM terminal_state s "
                    "JOIN batches b ON b.batch_id = s.batch_id"
                )
            ).first()
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the journal: {exc}") from exc
    if row is None:
        return revision, None, None
    return revision, int(row[0]), int(row[1])


def verify_engine(engine: Engine) -> int:
    """:meth:`Journal.verify` for any engine holding a journal (used by restore and doctor)."""
    try:
        with engine.connect() as connection:
            entries = connection.execute(
                sa.select(entries_table).order_by(entries_table.c.seq)
            ).mappings()
            last: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
            prev_hash = GENESIS_HASH
            expected_seq = 1
            for row in entries:
                seq = int(row["seq"])
                if seq != expected_seq:
                    raise JournalIntegrityError(
                        f"journal entry {expected_seq} is missing (next is {seq})",
                        first_bad_row=expected_seq,
                    )
                if row["prev_hash"] != prev_hash:
                    raise JournalIntegrityError(
                        f"journal entry {seq} does not follow entry {seq - 1}",
                        first_bad_row=seq,
                    )
                digest = entry_hash(
                    prev_hash,
                    seq,
                    at=row["at"],
                    kind=row["kind"],
                    key=row["key"],
                    payload=row["payload"],
                )
                if digest != row["hash"]:
                    raise JournalIntegrityError(
                        f"journal entry {seq} was changed after it was written",
                        first_bad_row=seq,
                    )
                if row["kind"] in _TABLES:
                    last[(row["kind"], row["key"])] = (seq, json.loads(row["payload"]))
                prev_hash = digest
                expected_seq += 1
            for kind, (table, cls, key_name) in _TABLES.items():
                rows = connection.execute(sa.select(table)).mappings()
                for table_row in rows:
                    key = str(table_row[key_name])
                    found = last.pop((kind, key), None)
                    if found is None:
                        raise JournalIntegrityError(
                            f"{table.name} row {key} has no journal entry",
                            first_bad_row=None,
                        )
                    seq, snapshot = found
                    if _from_mapping(cls, table_row) != _from_mapping(cls, snapshot):
                        raise JournalIntegrityError(
                            f"{table.name} row {key} differs from journal entry {seq}",
                            first_bad_row=seq,
                        )
            if last:
                (kind, key), (seq, _snapshot) = min(last.items(), key=lambda item: item[1][0])
                raise JournalIntegrityError(
                    f"{_TABLES[kind][0].name} row {key} of journal entry {seq} is missing",
                    first_bad_row=seq,
                )
            return expected_seq - 1
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the journal: {exc}") from exc
