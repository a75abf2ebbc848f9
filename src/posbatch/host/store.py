"""The host store: SQLAlchemy Core over one engine, SQLite or PostgreSQL.

:class:`HostStore` owns the engine and offers the registry (add, suspend,
list terminals), the read operations doctor, the dashboard and the simulator's
checker use, and the back-office :meth:`HostStore.advance_batch`. The request
path (:mod:`posbatch.host.core`) works inside :meth:`HostStore.transaction`
through :class:`StoreTx`, which holds every query of one unit of work; the
commit happens when the ``with`` block ends, and nothing is answered before.

PANs: only ``pan_hmac`` (HMAC-SHA256 under the store's PAN key, which lives
outside the database) and ``pan_masked`` are written.

Keys: the TMK, MAK and PIK of a terminal are sealed under the store's
key-encryption key (:mod:`posbatch.host.sealing`) here and only here — sealed
on write (:meth:`HostStore.add_terminals`, :meth:`StoreTx.update_terminal`, for
every column of :data:`SEALED_COLUMNS`), opened on read (the terminal rows of
the request path, pending working keys included). Callers pass and get
clear keys and never see a sealed one. ``host_key_encryption`` records the id
of the KEK; a store opened with another KEK is refused at once
(:class:`~posbatch.errors.KekMismatch`), and a unit of work that seals checks
the record under a lock, so no key is ever sealed under a KEK the store has
left (:meth:`HostStore.rotate_kek`). A new key column joins
:data:`SEALED_COLUMNS` and is read through :meth:`HostStore.open_key`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, TypeVar

import alembic.config
import alembic.runtime.migration
import alembic.script
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from posbatch import storage
from posbatch.batch.host_batch import FIRST_BATCH_NO, BatchEvent, apply, next_batch_no
from posbatch.batch.ids import check_merchant_id, check_terminal_id
from posbatch.batch.model import (
    BatchState,
    CardType,
    Kind,
    Reconciliation,
    SettlementTotals,
)
from posbatch.batch.totals import (
    BatchTally,
    compute_totals,
    describe_totals,
    tally_sums,
)
from posbatch.batch.txn_lifecycle import TransactionStatus  # re-exported: the table lives there
from posbatch.errors import ConfigError, HostError, KekMismatch, StorageError, StoreMissingError
from posbatch.host import _schema as t
from posbatch.host.sealing import KEK_ENV, KEK_FILE_ENV, KEK_FILE_NAME, KeyEncryptionKey, KeyKind
from posbatch.wire import WorkingKeys, decode_batch_detail, decode_totals, encode_totals

__all__ = [
    "KEK_ATTRIBUTE",
    "PAN_KEY_BYTES",
    "SEALED_COLUMNS",
    "BatchInfo",
    "ExceptionInfo",
    "ExceptionKind",
    "HostStore",
    "SettlementInfo",
    "StoreTx",
    "TerminalInfo",
    "TransactionInfo",
    "TransactionStatus",
    "naive_utc",
    "pending_keys_bytes",
]

MIGRATIONS: Final = "posbatch.host:migrations"
VERSION_TABLE: Final = "host_alembic_version"
PAN_KEY_BYTES: Final = 32
MASTER_KEY_BYTES: Final = 16
# Read operations return at most this many rows unless told otherwise.
READ_LIMIT_DEFAULT: Final = 1000
WRITE_OPTION: Final = "posbatch_host_write"
# The migrations get the KEK under this attribute (v0002 seals the keys of older stores).
KEK_ATTRIBUTE: Final = "host_kek"
# The columns of host_terminals that hold a key, and what key each holds: sealed, always.
SEALED_COLUMNS: Final[dict[str, KeyKind]] = {
    "master_key": KeyKind.TMK,
    "mak": KeyKind.MAK,
    "pik": KeyKind.PIK,
    "pending_keys": KeyKind.PENDING,  # PIK ‖ MAK of a sign-on, until a request uses them
}
PIK_BYTES: Final = 16


class TerminalStatus:
    ACTIVE: Final = "active"
    SUSPENDED: Final = "suspended"


class CloseReason:
    BALANCED: Final = "balanced"  # settled balanced at once
    UPLOADED: Final = "uploaded"  # settled unbalanced, closed at upload end
    ADVANCED: Final = "advanced"  # closed by the back office (advance_batch)


class ExceptionKind:
    """The kinds of exception (差错) records; every record also has a cause text."""

    TERMINAL_ONLY: Final = "terminal-only"  # uploaded by the terminal, not approved on host
    HOST_ONLY: Final = "host-only"  # approved on host, not uploaded by the terminal
    AMOUNT_DIFFERS: Final = "amount-differs"
    PAN_DIFFERS: Final = "pan-differs"
    UPLOAD_COUNT_DIFFERS: Final = "upload-count-differs"
    LATE_REVERSAL: Final = "late-reversal"  # reversal of a transaction in a closed batch
    LATE_VOID: Final = "late-void"  # void sent in a batch the host had closed
    REVERSAL_MISMATCH: Final = "reversal-mismatch"  # reversal that does not fit its original
    BATCH_ADVANCED: Final = "batch-advanced"  # back office closed a batch holding approvals
    SETTLED_AFTER_ADVANCE: Final = "settled-after-advance"
    # a batch that held more than field 48 can count (from before the capacity rule),
    # closed by batch upload or by the back office
    BATCH_OVER_CAPACITY: Final = "batch-over-capacity"
    # a closed batch settled again with other totals (restored from an older backup, or an
    # older copy of the journal put back by hand)
    SETTLED_AGAIN_DIFFERS: Final = "settled-again-differs"


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as naive UTC, the form every time column holds."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


# --- read models ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TerminalInfo:
    terminal_id: str
    merchant_id: str
    status: str
    signed_on: bool
    batch_no: int | None  # the current batch, None before the first sign-on
    batch_state: BatchState | None
    last_closed_batch_no: int | None
    last_stan: int | None
    signed_on_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BatchInfo:
    batch_id: int
    terminal_id: str
    batch_no: int
    state: BatchState
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None  # balanced / uploaded / advanced
    host_totals: SettlementTotals | None  # as answered, with reconciliation codes
    terminal_totals: SettlementTotals | None
    settle_response_code: str | None
    current: bool


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    transaction_id: int
    terminal_id: str
    batch_no: int
    stan: int
    kind: Kind
    amount_fen: int
    card_type: CardType
    pan_masked: str
    status: str  # approved / declined / reversed / voided
    response_code: str
    rrn: str | None
    auth_code: str | None
    original_transaction_id: int | None
    refunded_fen: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    exception_id: int
    terminal_id: str
    merchant_id: str
    batch_no: int | None
    stan: int | None
    kind: str
    cause: str
    terminal_amount_fen: int | None
    host_amount_fen: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SettlementInfo:
    settlement_id: int
    terminal_id: str
    batch_no: int
    stan: int
    terminal_totals: SettlementTotals
    host_totals: SettlementTotals | None
    response_code: str
    outcome: str  # balanced / unbalanced / repeated / error / refused
    created_at: datetime


def _totals(text: str | None) -> SettlementTotals | None:
    return None if text is None else decode_totals(text)


# --- the store -----------------------------------------------------------------------


class HostStore:
    """The host's durable state over one SQLAlchemy engine.

    ``HostStore.open(url)`` creates the engine and runs the migrations;
    ``sqlite://`` (in memory) uses one shared connection, for the simulator.
    ``pan_key`` keys the PAN hash: pass the same key every time a store is
    opened over the same data (the CLI keeps it in the data directory);
    without one a random key is used, fit only for an in-memory store.
    ``kek`` seals the terminal keys (the CLI resolves it with
    :func:`posbatch.host.sealing.resolve_kek`). Without one a random KEK of this
    process is used and nothing is recorded: fit for an in-memory store, or for
    a reader that never touches keys (doctor); a key sealed under another KEK
    then fails to open with :class:`~posbatch.errors.KekMismatch`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        pan_key: bytes | None = None,
        kek: KeyEncryptionKey | None = None,
    ) -> None:
        self.engine = engine
        self._pan_key = pan_key if pan_key is not None else secrets.token_bytes(PAN_KEY_BYTES)
        if len(self._pan_key) < 16:
            raise HostError("the PAN key must be at least 16 bytes")
        self._kek = kek or KeyEncryptionKey.generate("a random KEK of this process (none given)")
        self.sql = _HotSql(engine)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        pan_key: bytes | None = None,
        kek: KeyEncryptionKey | Callable[[], KeyEncryptionKey] | None = None,
        migrate: bool = True,
        create: bool = True,
    ) -> HostStore:
        """Engine for ``url`` (SQLite file, ``sqlite://`` in memory, or PostgreSQL), migrated.

        ``migrate=False`` (a worker of ``serve --workers N``, whose supervisor migrated
        before starting it) only checks that the database is at the migrations' head:
        StorageError if not, so N processes never race to migrate. ``create=False``
        (every command that only reads or changes what exists) refuses, with a
        ConfigError, a store that does not exist yet instead of making an empty one.
        With ``kek``, the store must be sealed under it (KekMismatch, one line, if not);
        a new store records it. ``kek`` may be a function that finds it, called once the
        database is known to answer (so that a database that is down says so first).
        """
        path = storage.sqlite_path(url)
        if path is not None and not create and not path.is_file():
            raise StoreMissingError(f"no host store at {path} (nothing was created)")
        if path is None and storage.is_memory_url(url):
            engine = sa.create_engine(
                "sqlite://",
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
            sa.event.listen(engine, "connect", _memory_pragmas)
        else:
            engine = storage.create_engine(url)
        try:
            if engine.dialect.name == "sqlite":
                _begin_immediate(engine)
            if not create and path is None:
                _check_exists(engine)
            if callable(kek):
                kek = kek()
            if migrate:
                attributes = {} if kek is None else {KEK_ATTRIBUTE: kek}
                storage.upgrade(
                    engine, MIGRATIONS, version_table=VERSION_TABLE, attributes=attributes
                )
            else:
                _check_migrated(engine)
            if kek is not None:
                _claim_kek(engine, kek)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, pan_key=pan_key, kek=kek)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HostStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def pan_hmac(self, pan: str) -> str:
        return hmac.digest(self._pan_key, pan.encode("ascii"), "sha256").hex()

    # --- sealed keys (the one place that seals and opens) ---------------------------------

    @property
    def kek(self) -> KeyEncryptionKey:
        """The KEK this store seals under (its repr shows the id and source, never the key)."""
        return self._kek

    @property
    def kek_id(self) -> str:
        """The id of the KEK this store seals under (an HMAC of it, safe to print)."""
        return self._kek.kek_id

    def seal_key(self, kind: KeyKind, terminal_id: str, clear: bytes) -> bytes:
        return self._kek.seal(clear, kind=kind, terminal_id=terminal_id)

    def open_key(self, kind: KeyKind, terminal_id: str, sealed: bytes) -> bytes:
        return self._kek.open(sealed, kind=kind, terminal_id=terminal_id)

    def _sealed_values(self, terminal_id: str, values: dict[str, Any]) -> bool:
        """Seal, in place, every key of ``values``; True if any was sealed."""
        sealed = False
        for column, kind in SEALED_COLUMNS.items():
            clear = values.get(column)
            if clear is not None:
                values[column] = self.seal_key(kind, terminal_id, bytes(clear))
                sealed = True
        return sealed

    def check_kek(self, connection: Connection) -> None:
        """KekMismatch unless the store is sealed under this store's KEK (or records none).

        Locks the record for the rest of the unit of work (PostgreSQL ``FOR SHARE``;
        SQLite holds the whole database already): a rotation cannot commit between
        this check and the keys this unit of work seals.
        """
        recorded = connection.execute(
            sa.select(t.key_encryption.c.kek_id).with_for_update(read=True)
        ).scalar()
        if recorded is not None and recorded != self._kek.kek_id:
            raise _kek_mismatch(recorded, self._kek)

    def rotate_kek(
        self, new_kek: KeyEncryptionKey, *, progress: Callable[[int], None] | None = None
    ) -> int:
        """Re-seal every key of the store under ``new_kek`` in ONE transaction; return the count.

        Either every key is sealed under the new KEK and the record names it, or —
        a failure or a crash at any point before the commit — nothing changed and
        the old KEK opens everything. ``progress(n)`` is called after each terminal.
        From the commit on, this store seals and opens under ``new_kek``; any other
        process still holding the old KEK is refused (KekMismatch) until restarted.
        """
        if new_kek.kek_id == self._kek.kek_id:
            raise ConfigError("the new KEK is the KEK in use: nothing to rotate")
        done = 0
        with self.transaction() as tx:
            connection = tx.connection
            recorded = connection.execute(
                sa.select(t.key_encryption.c.kek_id).with_for_update()
            ).scalar()
            if recorded is not None and recorded != self._kek.kek_id:
                raise _kek_mismatch(recorded, self._kek)
            columns = [t.terminals.c[name] for name in SEALED_COLUMNS]
            rows = connection.execute(
                sa.select(t.terminals.c.terminal_id, *columns)
                .order_by(t.terminals.c.terminal_id)
                .with_for_update()
            ).all()
            for row in rows:
                terminal_id = row[0]
                values = {}
                for (name, kind), sealed in zip(SEALED_COLUMNS.items(), row[1:], strict=True):
                    if sealed is not None:
                        clear = self.open_key(kind, terminal_id, sealed)
                        values[name] = new_kek.seal(clear, kind=kind, terminal_id=terminal_id)
                connection.execute(
                    t.terminals.update()
                    .where(t.terminals.c.terminal_id == terminal_id)
                    .values(values)
                )
                done += 1
                if progress is not None:
                    progress(done)
            moment = naive_utc(datetime.now(UTC))
            if recorded is None:
                connection.execute(
                    t.key_encryption.insert().values(
                        slot=1, kek_id=new_kek.kek_id, changed_at=moment
                    )
                )
            else:
                connection.execute(
                    t.key_encryption.update().values(kek_id=new_kek.kek_id, changed_at=moment)
                )
        self._kek = new_kek
        return done

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        """One unit of work, committed when the block ends (rolled back on an exception)."""
        try:
            with (
                self.engine.connect().execution_options(**{WRITE_OPTION: True}) as connection,
                connection.begin(),
            ):
                tx = StoreTx(connection, self)
                yield tx
                tx.flush()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"host store: {exc}") from exc

    # --- registry ----------------------------------------------------------------------

    def add_terminal(
        self, merchant_id: str, terminal_id: str, master_key: bytes, *, now: datetime
    ) -> None:
        """Register a terminal (active, not signed on). HostError if it exists or is malformed."""
        self.add_terminals([(merchant_id, terminal_id, master_key)], now=now)

    def add_terminals(self, terminals: Sequence[tuple[str, str, bytes]], *, now: datetime) -> None:
        """Register many (merchant_id, terminal_id, master_key) at once: all or none."""
        rows = []
        for merchant_id, terminal_id, master_key in terminals:
            check_terminal_id(terminal_id)
            check_merchant_id(merchant_id)
            if len(master_key) != MASTER_KEY_BYTES:
                raise HostError(f"the master key is {MASTER_KEY_BYTES} bytes")
            rows.append(
                {
                    "terminal_id": terminal_id,
                    "merchant_id": merchant_id,
                    "master_key": self.seal_key(KeyKind.TMK, terminal_id, master_key),
                    "status": TerminalStatus.ACTIVE,
                    "signed_on": False,
                    "created_at": naive_utc(now),
                }
            )
        with self.transaction() as tx:
            self.check_kek(tx.connection)
            ids = [row["terminal_id"] for row in rows]
            taken = tx.connection.execute(
                sa.select(t.terminals.c.terminal_id).where(t.terminals.c.terminal_id.in_(ids))
            ).first()
            if taken is not None or len(set(ids)) != len(ids):
                raise HostError(f"terminal {taken[0] if taken else ids} is already registered")
            if rows:
                tx.connection.execute(t.terminals.insert(), rows)

    def set_status(self, terminal_id: str, *, suspended: bool) -> None:
        """Suspend a terminal (its requests get 58) or make it active again."""
        status = TerminalStatus.SUSPENDED if suspended else TerminalStatus.ACTIVE
        with self.transaction() as tx:
            done = tx.connection.execute(
                t.terminals.update()
                .where(t.terminals.c.terminal_id == terminal_id)
                .values(status=status)
            )
            if done.rowcount != 1:
                raise HostError(f"terminal {terminal_id} is not registered")

    def suspend(self, terminal_id: str) -> None:
        self.set_status(terminal_id, suspended=True)

    def list_terminals(self) -> list[TerminalInfo]:
        with self.engine.connect() as connection:
            ids = connection.execute(
                sa.select(t.terminals.c.terminal_id).order_by(t.terminals.c.terminal_id)
            ).scalars()
            return [self._terminal_info(connection, terminal_id) for terminal_id in ids]

    def terminal(self, terminal_id: str) -> TerminalInfo | None:
        with self.engine.connect() as connection:
            exists = connection.execute(
                sa.select(t.terminals.c.terminal_id).where(t.terminals.c.terminal_id == terminal_id)
            ).first()
            return self._terminal_info(connection, terminal_id) if exists else None

    def _terminal_info(self, connection: Connection, terminal_id: str) -> TerminalInfo:
        row = connection.execute(
            sa.select(t.terminals).where(t.terminals.c.terminal_id == terminal_id)
        ).one()
        batch = None
        if row.current_batch_id is not None:
            batch = connection.execute(
                sa.select(t.batches).where(t.batches.c.batch_id == row.current_batch_id)
            ).one()
        last_closed = connection.execute(
            sa.select(t.batches.c.batch_no)
            .where(t.batches.c.terminal_id == terminal_id, t.batches.c.state == "CLOSED")
            .order_by(t.batches.c.batch_id.desc())
            .limit(1)
        ).scalar()
        return TerminalInfo(
            terminal_id=row.terminal_id,
            merchant_id=row.merchant_id,
            status=row.status,
            signed_on=bool(row.signed_on),
            batch_no=None if batch is None else batch.batch_no,
            batch_state=None if batch is None else BatchState(batch.state),
            last_closed_batch_no=last_closed,
            last_stan=row.last_stan,
            signed_on_at=_aware(row.signed_on_at),
            created_at=_aware(row.created_at) or row.created_at,
        )

    # --- reads for doctor / dashboard / simulator ---------------------------------------

    def batches(self, terminal_id: str, *, limit: int = READ_LIMIT_DEFAULT) -> list[BatchInfo]:
        """The terminal's batches, oldest first (the last ``limit`` of them)."""
        with self.engine.connect() as connection:
            current = connection.execute(
                sa.select(t.terminals.c.current_batch_id).where(
                    t.terminals.c.terminal_id == terminal_id
                )
            ).scalar()
            rows = connection.execute(
                sa.select(t.batches)
                .where(t.batches.c.terminal_id == terminal_id)
                .order_by(t.batches.c.batch_id.desc())
                .limit(limit)
            ).all()
        return [
            BatchInfo(
                batch_id=row.batch_id,
                terminal_id=row.terminal_id,
                batch_no=row.batch_no,
                state=BatchState(row.state),
                opened_at=_aware(row.opened_at) or row.opened_at,
                closed_at=_aware(row.closed_at),
                close_reason=row.close_reason,
                host_totals=_totals(row.host_totals),
                terminal_totals=_totals(row.terminal_totals),
                settle_response_code=row.settle_response_code,
                current=row.batch_id == current,
            )
            for row in reversed(rows)
        ]

    def transactions(
        self,
        terminal_id: str,
        batch_no: int | None = None,
        *,
        limit: int = READ_LIMIT_DEFAULT,
        offset: int = 0,
    ) -> list[TransactionInfo]:
        """Transactions of the terminal (of its latest batch ``batch_no`` if given), in order.

        At most ``limit`` of them, after the first ``offset`` (a page of a long list:
        :meth:`count_transactions` says how many there are in all).
        """
        query = (
            sa.select(t.transactions, t.batches.c.batch_no)
            .join(t.batches, t.batches.c.batch_id == t.transactions.c.batch_id)
            .where(t.transactions.c.terminal_id == terminal_id)
        )
        with self.engine.connect() as connection:
            if batch_no is not None:
                batch_id = _latest_batch_id(connection, terminal_id, batch_no)
                if batch_id is None:
                    return []
                query = query.where(t.transactions.c.batch_id == batch_id)
            rows = connection.execute(
                query.order_by(t.transactions.c.transaction_id).limit(limit).offset(offset)
            ).all()
        return [
            TransactionInfo(
                transaction_id=row.transaction_id,
                terminal_id=row.terminal_id,
                batch_no=row.batch_no,
                stan=row.stan,
                kind=Kind(row.kind),
                amount_fen=row.amount_fen,
                card_type=CardType(row.card_type),
                pan_masked=row.pan_masked,
                status=row.status,
                response_code=row.response_code,
                rrn=row.rrn,
                auth_code=row.auth_code,
                original_transaction_id=row.original_transaction_id,
                refunded_fen=row.refunded_fen,
                created_at=_aware(row.created_at) or row.created_at,
            )
            for row in rows
        ]

    def count_transactions(self, terminal_id: str, batch_no: int | None = None) -> int:
        """How many rows :meth:`transactions` has for these arguments, however long."""
        query = sa.select(sa.func.count()).where(t.transactions.c.terminal_id == terminal_id)
        with self.engine.connect() as connection:
            if batch_no is not None:
                batch_id = _latest_batch_id(connection, terminal_id, batch_no)
                if batch_id is None:
                    return 0
                query = query.where(t.transactions.c.batch_id == batch_id)
            return int(connection.execute(query).scalar_one())

    def exceptions(
        self, terminal_id: str | None = None, *, limit: int = READ_LIMIT_DEFAULT
    ) -> list[ExceptionInfo]:
        """Exception (差错) records, oldest first; all terminals' when ``terminal_id`` is None."""
        query = sa.select(t.exceptions).order_by(t.exceptions.c.exception_id).limit(limit)
        if terminal_id is not None:
            query = query.where(t.exceptions.c.terminal_id == terminal_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            ExceptionInfo(
                exception_id=row.exception_id,
                terminal_id=row.terminal_id,
                merchant_id=row.merchant_id,
                batch_no=row.batch_no,
                stan=row.stan,
                kind=row.kind,
                cause=row.cause,
                terminal_amount_fen=row.terminal_amount_fen,
                host_amount_fen=row.host_amount_fen,
                created_at=_aware(row.created_at) or row.created_at,
            )
            for row in rows
        ]

    def settlements(
        self, terminal_id: str, *, limit: int = READ_LIMIT_DEFAULT
    ) -> list[SettlementInfo]:
        """Every 0500 the terminal sent and what it got, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.settlements)
                .where(t.settlements.c.terminal_id == terminal_id)
                .order_by(t.settlements.c.settlement_id)
                .limit(limit)
            ).all()
        return [
            SettlementInfo(
                settlement_id=row.settlement_id,
                terminal_id=row.terminal_id,
                batch_no=row.batch_no,
                stan=row.stan,
                terminal_totals=decode_totals(row.terminal_totals),
                host_totals=_totals(row.host_totals),
                response_code=row.response_code,
                outcome=row.outcome,
                created_at=_aware(row.created_at) or row.created_at,
            )
            for row in rows
        ]

    def batch_tally(self, batch_id: int) -> BatchTally:
        """A batch's field-48 counts and amounts, exactly (doctor: is it over capacity?)."""
        try:
            with self.engine.connect() as connection:
                return _batch_tally(connection, batch_id)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"host store: {exc}") from exc

    # --- back office ---------------------------------------------------------------------

    def advance_batch(self, terminal_id: str, reason: str, *, now: datetime) -> int:
        """Close the terminal's current batch from the back office; return the new batch_no.

        The rule: the current batch (OPEN or UPLOADING) is closed with
        close_reason ``advanced`` and its host totals recorded; nothing in it
        is lost or changed. If it holds approved transactions that no
        settlement covered, a ``batch-advanced`` exception records them for the
        back office (the terminal learns of it by a 77 with R=CLOSED; a later
        0500 for the batch is compared with those totals, see the core).
        """
        with self.transaction() as tx:
            terminal = tx.terminal(terminal_id, for_update=True)
            if terminal is None:
                raise HostError(f"terminal {terminal_id} is not registered")
            batch = tx.current_batch(terminal)
            if batch is None:
                raise HostError(f"terminal {terminal_id} has no batch yet (never signed on)")
            apply(BatchState(batch.state), BatchEvent.ADVANCE)
            counted = tx.batch_tally(batch.batch_id)
            totals = counted.capped_totals()
            if not counted.fits():
                tx.add_over_capacity(
                    terminal_id, terminal.merchant_id, batch, counted, "the back office", now=now
                )
            tx.close_batch(
                batch.batch_id,
                reason=CloseReason.ADVANCED,
                now=now,
                host_totals=totals,
            )
            if (
                totals.domestic.debit_count
                + totals.foreign.debit_count
                + (totals.domestic.credit_count + totals.foreign.credit_count)
            ):
                net = counted.net_fen  # exact, even when the recorded totals are capped
                tx.add_exception(
                    terminal_id=terminal_id,
                    merchant_id=terminal.merchant_id,
                    batch_id=batch.batch_id,
                    batch_no=batch.batch_no,
                    stan=None,
                    kind=ExceptionKind.BATCH_ADVANCED,
                    cause=(
                        f"back office advanced the batch ({reason}) while it held unsettled "
                        "approvals: host totals "
                        + (describe_totals(totals) if counted.fits() else counted.describe())
                    ),
                    terminal_amount_fen=None,
                    host_amount_fen=net,
                    now=now,
                )
            return tx.open_next_batch(terminal_id, batch.batch_no, now=now)


def _kek_mismatch(recorded: str, kek: KeyEncryptionKey) -> KekMismatch:
    return KekMismatch(
        f"the keys of this host store are sealed under KEK {recorded}, and the KEK from "
        f"{kek.source} is {kek.kek_id}: give the KEK the store was sealed with "
        f"({KEK_FILE_ENV}=PATH, {KEK_ENV}, or {KEK_FILE_NAME} in the data directory)",
        store_kek_id=recorded,
    )


def _claim_kek(engine: Engine, kek: KeyEncryptionKey) -> None:
    """Record ``kek`` as the store's KEK if none is; KekMismatch if another one is."""
    select = sa.select(t.key_encryption.c.kek_id)
    try:
        try:
            with engine.begin() as connection:
                recorded = connection.execute(select).scalar()
                if recorded is None:
                    connection.execute(
                        t.key_encryption.insert().values(
                            slot=1, kek_id=kek.kek_id, changed_at=naive_utc(datetime.now(UTC))
                        )
                    )
                    return
        except sa.exc.IntegrityError:  # another process recorded its KEK first
            with engine.connect() as connection:
                recorded = connection.execute(select).scalar()
    except sa.exc.SQLAlchemyError as exc:
        url = engine.url.render_as_string(hide_password=False)
        raise StorageError(f"host store {storage.describe_database_error(exc, url)}") from exc
    if recorded != kek.kek_id:
        raise _kek_mismatch(str(recorded), kek)


def _check_exists(engine: Engine) -> None:
    """ConfigError unless the database (PostgreSQL) holds a host store already."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as connection:
            exists = sa.inspect(connection).has_table(VERSION_TABLE)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot open the database {storage.describe_database_error(exc, url)}"
        ) from exc
    if not exists:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreMissingError(f"no host store in {where} (nothing was created)")


def _check_migrated(engine: Engine) -> None:
    """StorageError unless the host's tables are at the head of its migrations."""
    config = alembic.config.Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = alembic.script.ScriptDirectory.from_config(config).get_current_head()
    try:
        with engine.connect() as connection:
            context = alembic.runtime.migration.MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE}
            )
            current = context.get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        url = engine.url.render_as_string(hide_password=False)
        raise StorageError(
            f"cannot open the database {storage.describe_database_error(exc, url)}"
        ) from exc
    if current != head:
        raise StorageError(
            f"the host store is at migration {current}, not {head}: "
            "migrate it first (any single posbatch host command does)"
        )


def _begin_immediate(engine: Engine) -> None:
    """SQLite: take the write lock when a unit of work begins (SQLAlchemy's pysqlite recipe).

    The driver would otherwise begin only at the first write, after the reads
    the write depends on; BEGIN IMMEDIATE makes the whole group one serial step.
    """

    @sa.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _memory_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _batch_tally(connection: Connection, batch_id: int) -> BatchTally:
    rows = connection.execute(
        sa.select(
            t.transactions.c.kind,
            t.transactions.c.card_type,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(t.transactions.c.amount_fen), 0),
        )
        .where(
            t.transactions.c.batch_id == batch_id,
            t.transactions.c.status.in_(_COUNTED_STATUSES),
        )
        .group_by(t.transactions.c.kind, t.transactions.c.card_type)
    ).all()
    return tally_sums(
        (Kind(kind), CardType(card_type), int(count), int(amount_fen))
        for kind, card_type, count, amount_fen in rows
    )


def _latest_batch_id(connection: Connection, terminal_id: str, batch_no: int) -> int | None:
    return connection.execute(
        sa.select(t.batches.c.batch_id)
        .where(t.batches.c.terminal_id == terminal_id, t.batches.c.batch_no == batch_no)
        .order_by(t.batches.c.batch_id.desc())
        .limit(1)
    ).scalar()


_COUNTED_STATUSES: Final = (TransactionStatus.APPROVED, TransactionStatus.VOIDED)


class TerminalRow(NamedTuple):
    """The terminal as the request path reads it, with its current batch's number and state."""

    terminal_id: str
    merchant_id: str
    master_key: bytes
    status: str
    signed_on: bool
    mak: bytes | None
    current_batch_id: int | None
    batch_no: int | None
    batch_state: str | None
    pending_keys: WorkingKeys | None = None  # of the last sign-on, while no request used them


class TransactionRow(NamedTuple):
    transaction_id: int
    batch_id: int
    stan: int
    kind: str
    amount_fen: int
    card_type: str
    pan_hmac: str
    pan_masked: str
    status: str
    response_code: str
    rrn: str | None
    auth_code: str | None
    local_time: str | None
    local_date: str | None
    original_transaction_id: int | None
    refunded_fen: int
    request_digest: str


_INSERT_COLUMNS: Final = (*TransactionRow._fields[1:], "terminal_id", "created_at")
_TERMINAL_SELECT: Final = (
    "SELECT t.terminal_id, t.merchant_id, t.master_key, t.status, t.signed_on, t.mak, "
    "t.current_batch_id, b.batch_no, b.state, t.pending_keys, b.approved_count, "
    "b.approved_amount_fen FROM host_terminals t "
    "LEFT JOIN host_batches b ON b.batch_id = t.current_batch_id "
)
_TRANSACTION_COLUMNS: Final = (
    "t.transaction_id, t.batch_id, t.stan, t.kind, t.amount_fen, t.card_type, t.pan_hmac, "
    "t.pan_masked, t.status, t.response_code, t.rrn, t.auth_code, t.local_time, t.local_date, "
    "t.original_transaction_id, t.refunded_fen, t.request_digest"
)
_REVERSAL_COLUMNS: Final = "r.terminal_id, r.batch_no, r.stan, r.batch_id, r.amount_fen"
_INSERT_SQL: Final = (
    "INSERT INTO host_transactions (batch_id, stan, kind, amount_fen, card_type, pan_hmac, "
    "pan_masked, status, response_code, rrn, auth_code, local_time, local_date, "
    "original_transaction_id, refunded_fen, request_digest, terminal_id, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Keys one read-ahead statement asks for at most (a group holds at most 512 requests).
READ_AHEAD_KEYS_MAX: Final = 512

_K = TypeVar("_K")


def pending_keys_bytes(keys: WorkingKeys) -> bytes:
    """The ``pending_keys`` column's clear value (sealed on write): PIK ‖ MAK, 24 bytes."""
    return keys.pik + keys.mak


def _working_keys(clear: bytes) -> WorkingKeys:
    return WorkingKeys(pik=clear[:PIK_BYTES], mak=clear[PIK_BYTES:])


def _terminal_row(row: Sequence[Any], store: HostStore) -> TerminalRow:
    """A terminal row of the request path, its TMK, MAK and pending keys opened."""
    terminal_id = row[0]
    return TerminalRow(
        terminal_id, row[1], store.open_key(KeyKind.TMK, terminal_id, row[2]), row[3],
        bool(row[4]),
        None if row[5] is None else store.open_key(KeyKind.MAK, terminal_id, row[5]),
        row[6], row[7], row[8],
        None if row[9] is None else _working_keys(
            store.open_key(KeyKind.PENDING, terminal_id, row[9])
        ),
    )  # fmt: skip


def _chunks(keys: Sequence[_K]) -> Iterator[Sequence[_K]]:
    for start in range(0, len(keys), READ_AHEAD_KEYS_MAX):
        yield keys[start : start + READ_AHEAD_KEYS_MAX]


class _HotSql:
    """Driver-level SQL of the request path's hottest statements.

    SQLAlchemy builds and caches everything else; these run on the DBAPI
    cursor of the same connection and transaction, because statement
    construction and result processing would otherwise cost more than the
    work. Written with ``?`` and rewritten for drivers that use ``%s``.

    The read-ahead statements look up many keys by joining them to the table
    (so that each key is an index search): PostgreSQL takes the keys as arrays
    (``unnest``, a few parameters however many keys), SQLite as a ``VALUES``
    list. (A row-value ``IN (VALUES …)`` would make SQLite scan the table.)
    """

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        if dialect.paramstyle not in ("qmark", "format", "pyformat"):
            raise StorageError(f"unsupported paramstyle {dialect.paramstyle}")
        self._percent = dialect.paramstyle != "qmark"
        self._arrays = dialect.name == "postgresql"
        # PostgreSQL locks the terminal rows a unit of work reads, in a statement of its own
        # BEFORE the read (SQLite: BEGIN IMMEDIATE already holds the whole database). One
        # statement that joins and locks would, after waiting for another process's commit,
        # return the terminal's new row beside the batch row of its old snapshot (a batch
        # that another worker just closed, or none): READ COMMITTED gives each statement a
        # fresh snapshot, so the read after the lock sees every commit made before it.
        self.row_locks = dialect.name == "postgresql"
        self.terminal = self.sql(_TERMINAL_SELECT + "WHERE t.terminal_id = ?")
        self.lock_terminal = self.sql(
            "SELECT terminal_id FROM host_terminals WHERE terminal_id = ? FOR UPDATE"
        )
        self.transaction = self.sql(
            f"SELECT {_TRANSACTION_COLUMNS} FROM host_transactions t "  # noqa: S608 - constants
            "WHERE t.batch_id = ? AND t.stan = ?"
        )
        self.insert_transaction = self.sql(_INSERT_SQL)
        self.reversals = self.sql(
            f"SELECT {_REVERSAL_COLUMNS} FROM host_reversals r "  # noqa: S608 - constants
            "WHERE r.original_kind = ? "
            "AND r.terminal_id = ? AND r.batch_no = ? AND r.stan = ?"
        )
        self.last_stan = self.sql("UPDATE host_terminals SET last_stan = ? WHERE terminal_id = ?")
        self.batch_bound = self.sql(
            "SELECT approved_count, approved_amount_fen FROM host_batches WHERE batch_id = ?"
        )
        self.grow_batch = self.sql(
            "UPDATE host_batches SET approved_count = approved_count + ?, "
            "approved_amount_fen = approved_amount_fen + ? WHERE batch_id = ?"
        )
        processor = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
        self.datetime: Callable[[datetime], Any] = processor or (lambda moment: moment)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self._percent else text

    def _keys(
        self, keys: Sequence[tuple[Any, ...]], types: tuple[str, ...]
    ) -> tuple[str, list[Any]]:
        """A FROM item ``k`` with columns k1, k2, … holding ``keys``, and its parameters."""
        names = ", ".join(f"k{i + 1}" for i in range(len(types)))
        if self._arrays:
            arrays = ", ".join(f"?::{kind}[]" for kind in types)
            by_column = [list(column) for column in zip(*keys, strict=True)]
            return f"unnest({arrays}) AS k({names})", by_column
        row = "(" + ", ".join("?" * len(types)) + ")"
        values = ", ".join([row] * len(keys))
        # SQLite names VALUES columns column1, column2, …
        columns = ", ".join(f"column{i + 1} AS k{i + 1}" for i in range(len(types)))
        from_values = f"(SELECT {columns} FROM (VALUES {values})) AS k"  # noqa: S608 - marks only
        return from_values, [value for key in keys for value in key]

    def grow_batches(self, growth: Sequence[tuple[int, int, int]]) -> tuple[str, list[Any]]:
        """PostgreSQL: add (batch_id, approvals, amount_fen) to the batches' capacity bounds
        in one statement (SQLite: ``grow_batch`` per batch, cheaper in process)."""
        from_keys, params = self._keys(growth, ("int", "int", "bigint"))
        statement = (
            "UPDATE host_batches SET approved_count = approved_count + k.k2, "  # noqa: S608
            f"approved_amount_fen = approved_amount_fen + k.k3 FROM {from_keys} "
            "WHERE host_batches.batch_id = k.k1"
        )
        return self.sql(statement), params

    def terminals(self, terminal_ids: Sequence[str]) -> tuple[str, list[Any]]:
        """Read ``terminal_ids`` with their current batches (lock them first: :meth:`lock`)."""
        keys, params = self._keys([(terminal_id,) for terminal_id in terminal_ids], ("text",))
        where = f"WHERE t.terminal_id IN (SELECT k1 FROM {keys})"  # noqa: S608 - marks only
        return self.sql(_TERMINAL_SELECT + where), params

    def lock(self, terminal_ids: Sequence[str]) -> tuple[str, list[Any]]:
        """PostgreSQL: lock ``terminal_ids`` in terminal id order (a stable lock order)."""
        keys, params = self._keys([(terminal_id,) for terminal_id in terminal_ids], ("text",))
        return self.sql(
            f"SELECT terminal_id FROM host_terminals WHERE terminal_id IN (SELECT k1 FROM {keys}) "  # noqa: S608
            "ORDER BY terminal_id FOR UPDATE"
        ), params

    def transactions(self, keys: Sequence[tuple[int, int]]) -> tuple[str, list[Any]]:
        """The transactions under these (batch_id, stan) keys."""
        from_keys, params = self._keys(keys, ("int", "int"))
        return self.sql(
            f"SELECT {_TRANSACTION_COLUMNS} FROM {from_keys} "  # noqa: S608 - constants and marks
            "JOIN host_transactions t ON t.batch_id = k.k1 AND t.stan = k.k2"
        ), params

    def reversals_of(
        self, keys: Sequence[tuple[str, int, int]], original_kind: str
    ) -> tuple[str, list[Any]]:
        """The reversals of ``original_kind`` under these (terminal_id, batch_no, stan) keys."""
        from_keys, params = self._keys(keys, ("text", "int", "int"))
        return self.sql(
            f"SELECT {_REVERSAL_COLUMNS} FROM {from_keys} JOIN host_reversals r "  # noqa: S608
            "ON r.terminal_id = k.k1 AND r.batch_no = k.k2 AND r.stan = k.k3 "
            "WHERE r.original_kind = ?"
        ), [*params, original_kind]


class StoreTx:
    """The queries of one unit of work on the request path (used by the core only).

    Read-ahead: a group of requests costs a few statements, not a few each.
    :meth:`read_terminals` reads (and locks) every terminal of the group at
    once, :meth:`read_transactions` the transactions under the group's
    (batch, STAN) keys, :meth:`read_reversals` the reversals already recorded
    for the group's sales; the hot reads (:meth:`terminal`,
    :meth:`transaction`, :meth:`reversals_seen`) answer from what was read,
    found or not. New transactions wait in memory and go in one multi-row
    insert; a :meth:`transaction` read of a key written in this unit of work
    writes them first.

    Everything else goes through :attr:`connection`, which first writes the
    waiting inserts and forgets the read-ahead: from then on every read sees
    the database as it is. The read-ahead never outlives the unit of work, so
    a change made elsewhere (another host process, the ``posbatch host`` CLI)
    is seen by the next group exactly as without it.
    """

    def __init__(self, connection: Connection, store: HostStore) -> None:
        self._connection = connection
        self.store = store
        self._sql = store.sql
        self._cursor: Any = None
        self._last_stans: dict[str, int] = {}
        self._terminals: dict[str, TerminalRow | None] = {}
        self._transactions: dict[tuple[int, int], TransactionRow | None] = {}
        self._reversals: dict[tuple[str, int, int, str], list[tuple[int | None, int]]] = {}
        self._inserts: list[tuple[Any, ...]] = []
        self._inserted: set[tuple[int, int]] = set()
        self._kek_checked = False
        # Batch capacity bounds (approved_count, approved_amount_fen) as of this unit of
        # work, and what it added that is not written yet (written by flush).
        self._bounds: dict[int, tuple[int, int]] = {}
        self._growth: dict[int, tuple[int, int]] = {}

    @property
    def connection(self) -> Connection:
        """The SQLAlchemy connection; using it ends the read-ahead (see the class docstring)."""
        self._write_inserts()
        self._terminals.clear()
        self._transactions.clear()
        self._reversals.clear()
        return self._connection

    def cursor(self) -> Any:
        if self._cursor is None:
            self._cursor = self._connection.connection.cursor()
        return self._cursor

    def flush(self) -> None:
        """Write what was deferred to the end of the unit of work (inserts, last STANs)."""
        self._write_inserts()
        if self._last_stans:
            self.cursor().executemany(
                self._sql.last_stan,
                [(stan, terminal_id) for terminal_id, stan in self._last_stans.items()],
            )
            self._last_stans.clear()
        if self._growth:
            growth = [
                (batch_id, count, amount) for batch_id, (count, amount) in self._growth.items()
            ]
            if self._sql.row_locks:  # PostgreSQL: one statement, not a round trip per batch
                for chunk in _chunks(growth):
                    self.cursor().execute(*self._sql.grow_batches(chunk))
            else:
                self.cursor().executemany(
                    self._sql.grow_batch, [(count, amount, key) for key, count, amount in growth]
                )
            self._growth.clear()

    def _write_inserts(self) -> None:
        if self._inserts:
            self.cursor().executemany(self._sql.insert_transaction, self._inserts)
            self._inserts.clear()
            self._inserted.clear()

    def note_stan(self, terminal_id: str, stan: int) -> None:
        self._last_stans[terminal_id] = stan

    # read-ahead
    def read_terminals(self, terminal_ids: Sequence[str]) -> dict[str, TerminalRow | None]:
        """Read and lock these terminals (None: not registered); :meth:`terminal` reuses them."""
        ids = sorted(set(terminal_ids) - self._terminals.keys())
        cursor = self.cursor()
        for chunk in _chunks(ids):
            self._terminals.update(dict.fromkeys(chunk))
            if self._sql.row_locks:
                cursor.execute(*self._sql.lock(chunk))
            cursor.execute(*self._sql.terminals(chunk))
            for row in cursor.fetchall():
                self._terminals[row[0]] = _terminal_row(row, self.store)
                self._note_bound(row)
        return self._terminals

    def read_transactions(self, keys: Sequence[tuple[int, int]]) -> None:
        """Read the transactions under these (batch_id, stan) keys for :meth:`transaction`."""
        wanted = [key for key in dict.fromkeys(keys) if key not in self._inserted]
        cursor = self.cursor()
        for chunk in _chunks(wanted):
            self._transactions.update(dict.fromkeys(chunk))
            cursor.execute(*self._sql.transactions(chunk))
            for row in cursor.fetchall():
                self._transactions[row[1], row[2]] = TransactionRow(*row)

    def read_reversals(self, keys: Sequence[tuple[str, int, int]], original_kind: str) -> None:
        """Read the reversals of ``original_kind`` under these (terminal, batch_no, stan) keys."""
        wanted = list(dict.fromkeys(keys))
        cursor = self.cursor()
        for chunk in _chunks(wanted):
            found: dict[tuple[str, int, int], list[tuple[int | None, int]]] = {
                key: [] for key in chunk
            }
            cursor.execute(*self._sql.reversals_of(chunk, original_kind))
            for terminal_id, batch_no, stan, batch_id, amount_fen in cursor.fetchall():
                found[terminal_id, batch_no, stan].append((batch_id, amount_fen))
            for (terminal_id, batch_no, stan), seen in found.items():
                self._reversals[terminal_id, batch_no, stan, original_kind] = seen

    # terminals
    def terminal(self, terminal_id: str, *, for_update: bool = False) -> TerminalRow | None:
        if terminal_id in self._terminals:
            return self._terminals[terminal_id]  # read (and locked) ahead
        cursor = self.cursor()
        if for_update and self._sql.row_locks:
            cursor.execute(self._sql.lock_terminal, (terminal_id,))
        cursor.execute(self._sql.terminal, (terminal_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        self._note_bound(row)
        return _terminal_row(row, self.store)

    # batch capacity
    def _note_bound(self, row: Sequence[Any]) -> None:
        """Keep the current batch's bound read with its terminal (the first reading stands:
        after it, this unit of work's own approvals are added in memory)."""
        if row[6] is not None and row[10] is not None:
            self._bounds.setdefault(int(row[6]), (int(row[10]), int(row[11])))

    def batch_bound(self, batch_id: int) -> tuple[int, int]:
        """(approvals ever inserted into the batch, their amount in fen): an upper bound of
        every field-48 counter of the batch, this unit of work's approvals included."""
        bound = self._bounds.get(batch_id)
        if bound is None:
            cursor = self.cursor()
            cursor.execute(self._sql.batch_bound, (batch_id,))
            row = cursor.fetchone()
            bound = (0, 0) if row is None else (int(row[0]), int(row[1]))
            self._bounds[batch_id] = bound
        return bound

    def note_approval(self, batch_id: int, amount_fen: int) -> None:
        """An approval inserted into ``batch_id``: raise its bound (written by flush)."""
        count, amount = self.batch_bound(batch_id)
        self._bounds[batch_id] = (count + 1, amount + amount_fen)
        grown_count, grown_amount = self._growth.get(batch_id, (0, 0))
        self._growth[batch_id] = (grown_count + 1, grown_amount + amount_fen)

    def batch_tally(self, batch_id: int) -> BatchTally:
        """What the batch counts now, exactly (approved and voided rows; this unit of
        work's included): field 48 without its widths (:mod:`posbatch.batch.totals`)."""
        return _batch_tally(self.connection, batch_id)

    def update_terminal(self, terminal_id: str, **values: Any) -> None:
        """Set columns of the terminal's row; keys (:data:`SEALED_COLUMNS`) are sealed here."""
        if self.store._sealed_values(terminal_id, values) and not self._kek_checked:
            self.store.check_kek(self.connection)
            self._kek_checked = True
        self.connection.execute(
            t.terminals.update().where(t.terminals.c.terminal_id == terminal_id).values(**values)
        )

    # batches
    def batch(self, batch_id: int) -> Any:
        return self.connection.execute(
            sa.select(t.batches).where(t.batches.c.batch_id == batch_id)
        ).first()

    def current_batch(self, terminal: Any) -> Any:
        if terminal.current_batch_id is None:
            return None
        return self.batch(terminal.current_batch_id)

    def latest_batch(self, terminal_id: str, batch_no: int) -> Any:
        batch_id = _latest_batch_id(self.connection, terminal_id, batch_no)
        return None if batch_id is None else self.batch(batch_id)

    def last_closed_batch(self, terminal_id: str) -> Any:
        return self.connection.execute(
            sa.select(t.batches)
            .where(t.batches.c.terminal_id == terminal_id, t.batches.c.state == "CLOSED")
            .order_by(t.batches.c.batch_id.desc())
            .limit(1)
        ).first()

    def last_stan_in_batch(self, batch_id: int) -> int | None:
        """The STAN of the last transaction recorded in batch ``batch_id`` (None if none)."""
        return self.connection.execute(
            sa.select(t.transactions.c.stan)
            .where(t.transactions.c.batch_id == batch_id)
            .order_by(t.transactions.c.transaction_id.desc())
            .limit(1)
        ).scalar()

    def open_batch(self, terminal_id: str, batch_no: int, *, now: datetime) -> int:
        batch_id = self.connection.execute(
            t.batches.insert()
            .values(
                terminal_id=terminal_id,
                batch_no=batch_no,
                state=BatchState.OPEN.value,
                opened_at=naive_utc(now),
            )
            .returning(t.batches.c.batch_id)
        ).scalar_one()
        self.update_terminal(terminal_id, current_batch_id=batch_id)
        return int(batch_id)

    def open_next_batch(self, terminal_id: str, batch_no: int, *, now: datetime) -> int:
        """Open the batch after ``batch_no`` as the current one; return its number."""
        following = next_batch_no(batch_no)
        self.open_batch(terminal_id, following, now=now)
        return following

    def first_batch(self, terminal_id: str, *, now: datetime) -> int:
        return self.open_batch(terminal_id, FIRST_BATCH_NO, now=now)

    def set_batch(self, batch_id: int, **values: Any) -> None:
        self.connection.execute(
            t.batches.update().where(t.batches.c.batch_id == batch_id).values(**values)
        )

    def close_batch(
        self,
        batch_id: int,
        *,
        reason: str,
        now: datetime,
        host_totals: SettlementTotals | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "state": BatchState.CLOSED.value,
            "closed_at": naive_utc(now),
            "close_reason": reason,
        }
        if host_totals is not None:
            values["host_totals"] = encode_totals(host_totals)
        self.set_batch(batch_id, **values)

    def counted_transactions(self, batch_id: int) -> Sequence[Any]:
        return self.connection.execute(
            sa.select(t.transactions)
            .where(
                t.transactions.c.batch_id == batch_id,
                t.transactions.c.status.in_(_COUNTED_STATUSES),
            )
            .order_by(t.transactions.c.stan)
        ).all()

    def host_totals(
        self, batch_id: int, reconciliation: Reconciliation = Reconciliation.REQUEST
    ) -> SettlementTotals:
        rows = self.counted_transactions(batch_id)
        return compute_totals(
            ((Kind(row.kind), row.amount_fen, CardType(row.card_type)) for row in rows),
            reconciliation=reconciliation,
        )

    # transactions
    def transaction(self, batch_id: int, stan: int) -> TransactionRow | None:
        key = (batch_id, stan)
        if key in self._inserted:
            self._write_inserts()  # written in this unit of work: read it back from the database
        elif key in self._transactions:
            return self._transactions[key]
        cursor = self.cursor()
        cursor.execute(self._sql.transaction, (batch_id, stan))
        row = cursor.fetchone()
        return None if row is None else TransactionRow(*row)

    def transaction_by_id(self, transaction_id: int) -> Any:
        return self.connection.execute(
            sa.select(t.transactions).where(t.transactions.c.transaction_id == transaction_id)
        ).first()

    def insert_transaction(self, **values: Any) -> None:
        """Insert a transaction (written with the others of the unit of work, in order)."""
        values["created_at"] = self._sql.datetime(naive_utc(values["created_at"]))
        values.setdefault("refunded_fen", 0)
        key = (values["batch_id"], values["stan"])
        self._transactions.pop(key, None)
        self._inserted.add(key)
        self._inserts.append(tuple(values[name] for name in _INSERT_COLUMNS))

    def reversals_seen(
        self, terminal_id: str, batch_no: int, stan: int, original_kind: str
    ) -> list[tuple[int | None, int]]:
        """(batch_id, amount_fen) of reversals recorded for this (batch_no, stan, kind)."""
        key = (terminal_id, batch_no, stan, original_kind)
        if key in self._reversals:
            return self._reversals[key]
        cursor = self.cursor()
        cursor.execute(self._sql.reversals, (original_kind, terminal_id, batch_no, stan))
        return [(row[3], row[4]) for row in cursor.fetchall()]

    def set_transaction(self, transaction_id: int, **values: Any) -> None:
        self.connection.execute(
            t.transactions.update()
            .where(t.transactions.c.transaction_id == transaction_id)
            .values(**values)
        )

    # reversals
    def reversal(self, terminal_id: str, batch_no: int, stan: int, original_kind: str) -> Any:
        return self.connection.execute(
            sa.select(t.reversals)
            .where(
                t.reversals.c.terminal_id == terminal_id,
                t.reversals.c.batch_no == batch_no,
                t.reversals.c.stan == stan,
                t.reversals.c.original_kind == original_kind,
            )
            .order_by(t.reversals.c.reversal_id.desc())
            .limit(1)
        ).first()

    def insert_reversal(self, **values: Any) -> None:
        values["created_at"] = naive_utc(values["created_at"])
        self.connection.execute(t.reversals.insert().values(**values))

    # uploads
    def upload_records(self, batch_id: int) -> Sequence[Any]:
        return self.connection.execute(
            sa.select(t.upload_records)
            .where(t.upload_records.c.batch_id == batch_id)
            .order_by(t.upload_records.c.stan)
        ).all()

    def upload_record_stans(self, batch_id: int, stans: Sequence[int]) -> set[int]:
        return set(
            self.connection.execute(
                sa.select(t.upload_records.c.stan).where(
                    t.upload_records.c.batch_id == batch_id,
                    t.upload_records.c.stan.in_(stans),
                )
            ).scalars()
        )

    def insert_upload_records(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            for row in rows:
                row["created_at"] = naive_utc(row["created_at"])
            self.connection.execute(t.upload_records.insert(), rows)

    # exceptions and settlements
    def add_exception(
        self,
        *,
        terminal_id: str,
        merchant_id: str,
        batch_id: int | None,
        batch_no: int | None,
        stan: int | None,
        kind: str,
        cause: str,
        terminal_amount_fen: int | None,
        host_amount_fen: int | None,
        now: datetime,
    ) -> None:
        self.connection.execute(
            t.exceptions.insert().values(
                terminal_id=terminal_id,
                merchant_id=merchant_id,
                batch_id=batch_id,
                batch_no=batch_no,
                stan=stan,
                kind=kind,
                cause=cause,
                terminal_amount_fen=terminal_amount_fen,
                host_amount_fen=host_amount_fen,
                created_at=naive_utc(now),
            )
        )

    def add_over_capacity(
        self,
        terminal_id: str,
        merchant_id: str,
        batch: Any,
        counted: BatchTally,
        closed_by: str,
        *,
        now: datetime,
    ) -> None:
        """The exception record of a batch that held more than field 48 can count."""
        over = ", ".join(words[0] for words in (counter.words for counter in counted.overflows()))
        self.add_exception(
            terminal_id=terminal_id,
            merchant_id=merchant_id,
            batch_id=batch.batch_id,
            batch_no=batch.batch_no,
            stan=None,
            kind=ExceptionKind.BATCH_OVER_CAPACITY,
            cause=(
                f"batch {batch.batch_no:06d} held more than field 48 can count ({over} over "
                f"999 entries or 999,999,999,999 fen): {counted.describe()}; closed by "
                f"{closed_by}, its recorded totals are capped — the records are the truth"
            ),
            terminal_amount_fen=None,
            host_amount_fen=None,
            now=now,
        )

    def earlier_answer(self, batch_id: int, terminal_totals: str) -> str | None:
        """The host totals answered to an earlier 0500 of ``batch_id`` with these totals."""
        return self.connection.execute(
            sa.select(t.settlements.c.host_totals)
            .where(
                t.settlements.c.batch_id == batch_id,
                t.settlements.c.terminal_totals == terminal_totals,
            )
            .order_by(t.settlements.c.settlement_id)
            .limit(1)
        ).scalar()

    def add_settlement(self, **values: Any) -> None:
        values["created_at"] = naive_utc(values["created_at"])
        self.connection.execute(t.settlements.insert().values(**values))

    def add_batch_error(
        self, terminal: TerminalRow, request: Any, detail: str | None, *, now: datetime
    ) -> None:
        """Record a 77 answered to ``request``, with the reason its field 63 carries
        (``FORCED`` when a fault script forced it without one), for the back office."""
        state = decode_batch_detail(detail) if detail else None
        reason = "FORCED" if state is None or state.reason is None else state.reason.value
        self.connection.execute(
            t.batch_errors.insert().values(
                terminal_id=terminal.terminal_id,
                merchant_id=terminal.merchant_id,
                kind=request.KIND.value,
                stan=request.stan,
                batch_no=request.batch_no,
                host_batch_no=None if state is None else state.host_batch_no,
                reason=reason,
                created_at=naive_utc(now),
            )
        )
