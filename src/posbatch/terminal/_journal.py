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
reads the tail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from posbatch.batch.terminal_batch import SettleStep
from posbatch.errors import JournalIntegrityError, StorageError
from posbatch.storage import create_engine, upgrade

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


class TxnState:
    """States of a journal transaction row (strings, as stored)."""

    PENDING = "pending"  # written, request not answered yet
    APPROVED = "approved"
    DECLINED = "declined"
    REVERSAL_PENDING = "reversal_pending"  # no (trustworthy) answer: 0400 must go first
    REVERSED = "reversed"  # the host answered the reversal
    VOIDED = "voided"  # a sale whose void was approved
    RESEND_PENDING = "resend_pending"  # a refund with no answer: resent as is (host dedupes)
    TRAINING = "training"  # training mode: never sent, never counted

    # What counts in settlement totals and goes to batch upload.
    COUNTED: Final = frozenset({APPROVED, VOIDED})
    # What must be cleared with the host before anything else is sent.
    OUTSTANDING: Final = frozenset({PENDING, REVERSAL_PENDING, RESEND_PENDING})


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


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    at: str
    type: str
    message: str
    details: dict[str, Any]


_Row = TypeVar("_Row", StateRow, BatchRow, TxnRow)

_KIND_STATE: Final = "state"
_KIND_BATCH: Final = "batch"
_KIND_TXN: Final = "txn"
_KIND_EVENT: Final = "event"
_TABLES: Final[dict[str, tuple[sa.Table, type[Any], str]]] = {
    _KIND_STATE: (state_table, StateRow, "state_id"),
    _KIND_BATCH: (batches_table, BatchRow, "batch_id"),
    _KIND_TXN: (transactions_table, TxnRow, "txn_id"),
}


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, seq: int, *, at: str, kind: str, key: str, payload: str) -> str:
    text = f"{prev_hash}|{seq}|{at}|{kind}|{key}|{payload}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _from_mapping(cls: type[_Row], mapping: Mapping[Any, Any]) -> _Row:
    names = {field.name: field for field in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, field in names.items():
        if name not in mapping:
            continue  # a column added by a later migration: its default
        value = mapping[name]
        if value is not None and "bool" in str(field.type):
            value = bool(value)
        values[name] = value
    return cls(**values)


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


class Writer:
    """One unit of work: rows and entries written in one database transaction."""

    def __init__(self, journal: Journal, connection: Connection, at: str) -> None:
        self._journal = journal
        self._connection = connection
        self._at = at

    def _append(self, kind: str, key: str, payload: Mapping[str, Any]) -> int:
        journal = self._journal
        seq = journal._last_seq + 1
        text = _canonical(payload)
        digest = entry_hash(journal._last_hash, seq, at=self._at, kind=kind, key=key, payload=text)
        self._connection.execute(
            entries_table.insert().values(
                seq=seq,
                at=self._at,
                kind=kind,
                key=key,
                payload=text,
                prev_hash=journal._last_hash,
                hash=digest,
            )
        )
        journal._last_seq = seq
        journal._last_hash = digest
        return seq

    def _put(self, kind: str, row: StateRow | BatchRow | TxnRow, *, insert: bool) -> None:
        table, _cls, key_name = _TABLES[kind]
        values = dataclasses.asdict(row)
        if kind == _KIND_STATE:
            values = {"state_id": 1, **values}
        key = str(values[key_name])
        if insert:
            self._connection.execute(table.insert().values(**values))
        else:
            result = self._connection.execute(
                table.update().where(table.c[key_name] == values[key_name]).values(**values)
            )
            if result.rowcount != 1:
                raise StorageError(f"{table.name} row {key} is missing")
        snapshot = {name: value for name, value in values.items() if name != "state_id"}
        self._append(kind, key, snapshot)

    def insert_state(self, row: StateRow) -> None:
        self._put(_KIND_STATE, row, insert=True)

    def state(self, row: StateRow) -> None:
        self._put(_KIND_STATE, row, insert=False)

    def insert_batch(self, row: BatchRow) -> None:
        self._put(_KIND_BATCH, row, insert=True)

    def batch(self, row: BatchRow) -> None:
        self._put(_KIND_BATCH, row, insert=False)

    def insert_txn(self, row: TxnRow) -> None:
        self._put(_KIND_TXN, row, insert=True)

    def txn(self, row: TxnRow) -> None:
        self._put(_KIND_TXN, row, insert=False)

    def event(self, event_type: str, message: str, **details: Any) -> None:
        self._append(_KIND_EVENT, event_type, {"message": message, **details})


class Journal:
    """A terminal's journal over one database (a SQLite file in production)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._last_seq = 0
        self._last_hash = GENESIS_HASH
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
                row = connection.execute(
                    sa.select(entries_table.c.seq, entries_table.c.hash)
                    .order_by(entries_table.c.seq.desc())
                    .limit(1)
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read the journal: {exc}") from exc
        if row is not None:
            self._last_seq, self._last_hash = int(row.seq), str(row.hash)

    # --- writing ---------------------------------------------------------------

    @contextmanager
    def write(self, moment: datetime) -> Iterator[Writer]:
        """A unit of work: everything written inside commits together, or not at all."""
        saved = (self._last_seq, self._last_hash)
        try:
            with self.engine.begin() as connection:
                yield Writer(self, connection, _at(moment))
        except sa.exc.SQLAlchemyError as exc:
            self._last_seq, self._last_hash = saved
            raise StorageError(f"journal write failed: {exc}") from exc
        except BaseException:
            self._last_seq, self._last_hash = saved
            raise

    # --- reading ---------------------------------------------------------------

    def _select(self, statement: sa.Select[Any]) -> list[sa.RowMapping]:
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(statement).mappings())
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"cannot read the journal: {exc}") from exc

    @property
    def initialized(self) -> bool:
        return bool(self._select(sa.select(state_table.c.state_id)))

    def state(self) -> StateRow:
        rows = self._select(sa.select(state_table))
        if not rows:
            raise StorageError("the journal is not initialised: run `posbatch terminal init`")
        return _from_mapping(StateRow, rows[0])

    def batch(self, batch_id: int) -> BatchRow:
        rows = self._select(sa.select(batches_table).where(batches_table.c.batch_id == batch_id))
        if not rows:
            raise StorageError(f"batch {batch_id} is missing from the journal")
        return _from_mapping(BatchRow, rows[0])

    def current_batch(self) -> BatchRow:
        return self.batch(self.state().batch_id)

    def batches(self) -> list[BatchRow]:
        rows = self._select(sa.select(batches_table).order_by(batches_table.c.batch_id))
        return [_from_mapping(BatchRow, row) for row in rows]

    def transactions(self, batch_id: int | None = None) -> list[TxnRow]:
        statement = sa.select(transactions_table).order_by(transactions_table.c.txn_id)
        if batch_id is not None:
            statement = statement.where(transactions_table.c.batch_id == batch_id)
        return [_from_mapping(TxnRow, row) for row in self._select(statement)]

    def transaction(self, txn_id: int) -> TxnRow:
        rows = self._select(
            sa.select(transactions_table).where(transactions_table.c.txn_id == txn_id)
        )
        if not rows:
            raise StorageError(f"transaction {txn_id} is missing from the journal")
        return _from_mapping(TxnRow, rows[0])

    def outstanding(self) -> list[TxnRow]:
        """Transactions the host must hear about before anything else, oldest first."""
        statement = (
            sa.select(transactions_table)
            .where(transactions_table.c.state.in_(sorted(TxnState.OUTSTANDING)))
            .order_by(transactions_table.c.txn_id)
        )
        return [_from_mapping(TxnRow, row) for row in self._select(statement)]

    def find(self, stan: int, batch_no: int | None = None) -> list[TxnRow]:
        """Transactions with ``stan`` (newest first), optionally only in ``batch_no``."""
        statement = (
            sa.select(transactions_table)
            .where(transactions_table.c.stan == stan, transactions_table.c.training.is_(False))
            .order_by(transactions_table.c.txn_id.desc())
        )
        if batch_no is not None:
            statement = statement.where(transactions_table.c.batch_no == batch_no)
        return [_from_mapping(TxnRow, row) for row in self._select(statement)]

    def next_txn_id(self) -> int:
        rows = self._select(sa.select(sa.func.max(transactions_table.c.txn_id).label("top")))
        top = rows[0]["top"] if rows else None
        return int(top or 0) + 1

    def next_batch_id(self) -> int:
        rows = self._select(sa.select(sa.func.max(batches_table.c.batch_id).label("top")))
        top = rows[0]["top"] if rows else None
        return int(top or 0) + 1

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
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            raise StorageError(f"{destination} exists already: choose a new backup file")
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
