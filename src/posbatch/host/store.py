"""The host store: SQLAlchemy Core over one engine, SQLite or PostgreSQL.

:class:`HostStore` owns the engine and offers the registry (add, suspend,
list terminals), the read operations doctor, the dashboard and the simulator's
checker use, and the back-office :meth:`HostStore.advance_batch`. The request
path (:mod:`posbatch.host.core`) works inside :meth:`HostStore.transaction`
through :class:`~posbatch.host.unit_of_work.StoreTx`, which holds every query
of one unit of work; the commit happens when the ``with`` block ends, and
nothing is answered before.

Where the rest lives, by role: the record kinds and the typed rows the
host's rules read (statuses, exception kinds, close reasons) are in
:mod:`posbatch.batch.host_records`; the back-office rule of
:meth:`HostStore.advance_batch` is :func:`posbatch.batch.host_rules.advance`;
the read models of :meth:`HostStore.batches` and its kin are in
:mod:`posbatch.host.read_models`; the unit of work is
:mod:`posbatch.host.unit_of_work`; the raw SQL is :mod:`posbatch.host._queries`.
This module re-exports the names other packages import from it.

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

import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import alembic.config
import alembic.runtime.migration
import alembic.script
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from posbatch import storage
from posbatch.batch import host_rules
from posbatch.batch.counters import next_batch_no
from posbatch.batch.host_records import (
    BatchRow,
    CloseReason,
    ExceptionKind,
    TerminalRow,
    TerminalStatus,
    TransactionRow,
    TransactionStatus,
)
from posbatch.batch.ids import check_merchant_id, check_terminal_id, not_registered
from posbatch.batch.model import BatchState, CardType, Kind
from posbatch.batch.totals import BatchTally
from posbatch.errors import (
    ConfigError,
    HostError,
    KekMismatch,
    StorageError,
    StoreBusyError,
    StoreMissingError,
)
from posbatch.host import _schema as t
from posbatch.host import sealing
from posbatch.host._queries import HotSql, batch_tally, latest_batch_id
from posbatch.host.read_models import (
    BatchInfo,
    ExceptionInfo,
    SettlementInfo,
    TerminalInfo,
    TransactionInfo,
    aware_utc,
    naive_utc,
    totals_of,
)
from posbatch.host.sealing import KEK_ENV, KEK_FILE_ENV, KEK_FILE_NAME, KeyEncryptionKey, KeyKind
from posbatch.host.unit_of_work import StoreTx, pending_keys_bytes
from posbatch.wire import TMK_BYTES, decode_totals

__all__ = [
    "KEK_ATTRIBUTE",
    "MIGRATIONS",
    "PAN_HMAC_KEY_BYTES",
    "SEALED_COLUMNS",
    "SERVE_LOCK_TIMEOUT_MS",
    "VERSION_TABLE",
    "BatchInfo",
    "BatchRow",
    "CloseReason",
    "ExceptionInfo",
    "ExceptionKind",
    "HostStore",
    "SettlementInfo",
    "StoreTx",
    "TerminalInfo",
    "TerminalRow",
    "TerminalStatus",
    "TransactionInfo",
    "TransactionRow",
    "TransactionStatus",
    "host_store_exists",
    "naive_utc",
    "pending_keys_bytes",
]

MIGRATIONS: Final = "posbatch.host:migrations"
VERSION_TABLE: Final = "host_alembic_version"
PAN_HMAC_KEY_BYTES: Final = 32  # the key of the card numbers' HMAC-SHA256 digests
# Read operations return at most this many rows unless told otherwise.
READ_LIMIT_DEFAULT: Final = 1000
WRITE_OPTION: Final = "posbatch_host_write"
# WRITE_OPTION's value for a unit of work that does not wait for SQLite's write lock.
WRITE_UNLESS_BUSY: Final = "unless busy"
_LOCK_HELD: Final = "host store: the write lock is held by another process"
# PostgreSQL: the longest a serving host's statement waits for a lock another session holds
# (``lock_timeout``). A group locks its terminals on the event loop's thread, so a wait
# stops every connection of that worker: a terminal row held by a stuck back-office or
# psql session stopped them all for as long as it was held (10 s in the PostgreSQL probe
# of 2026-12-07). Another worker's group holds a terminal for milliseconds; past this
# the group fails, its requests are done again alone, and the locked terminal's are
# answered 96 with nothing kept (docs/host.md, "Several processes").
SERVE_LOCK_TIMEOUT_MS: Final = 1_000
# The migrations get the KEK under this attribute (v0002 seals the keys of older stores).
KEK_ATTRIBUTE: Final = "host_kek"
_log = logging.getLogger("posbatch.host")
# Opened keys a store remembers (HostStore.open_key): a few per terminal in service.
OPENED_KEYS_MAX: Final = 16_384
# A serving host looks for a rotated KEK it did not find at most this often (follow_rotation).
KEK_FOLLOW_INTERVAL_S: Final = 1.0
# The columns of host_terminals that hold a key, and what key each holds: sealed, always.
SEALED_COLUMNS: Final[dict[str, KeyKind]] = {
    "master_key": KeyKind.TMK,
    "mak": KeyKind.MAK,
    "pik": KeyKind.PIK,
    "pending_keys": KeyKind.PENDING,  # PIK ‖ MAK of a sign-on, until a request uses them
}


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
        self._pan_key = pan_key if pan_key is not None else secrets.token_bytes(PAN_HMAC_KEY_BYTES)
        if len(self._pan_key) < 16:
            raise HostError("the PAN key must be at least 16 bytes")
        self._pan_mac = hmac.new(self._pan_key, digestmod=hashlib.sha256)
        self._kek = kek or KeyEncryptionKey.generate("a random KEK of this process (none given)")
        self._opened: dict[tuple[KeyKind, str, bytes], bytes] = {}  # see open_key
        self._follow_lock = threading.Lock()  # see follow_rotation
        self._follow_missed: dict[str, float] = {}
        self.sql = HotSql(engine)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        pan_key: bytes | None = None,
        kek: KeyEncryptionKey | Callable[[], KeyEncryptionKey] | None = None,
        migrate: bool = True,
        create: bool = True,
        lock_timeout_ms: int | None = None,
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
        ``lock_timeout_ms`` (PostgreSQL): the longest any statement of this store waits
        for a lock another session holds (``serve`` gives :data:`SERVE_LOCK_TIMEOUT_MS`);
        None waits as long as it takes.
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
            engine = storage.create_engine(url, lock_timeout_ms=lock_timeout_ms)
        try:
            if engine.dialect.name == "sqlite":
                _begin_immediate(engine)
            if not create or path is not None:
                # A store that must exist, or a SQLite file that is there already: a file
                # of another kind (a terminal's journal, a backup) is refused, never migrated
                # into a host store.
                _check_exists(engine, missing_ok=create)
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
                if pan_key is not None:
                    _claim_pan_key(engine, pan_key)
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
        # From an HMAC keyed once (hmac.digest sets the key up again on every call).
        mac = self._pan_mac.copy()
        mac.update(pan.encode("ascii"))
        return mac.hexdigest()

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
        """The clear key of ``sealed`` (StorageError when it does not open under this KEK).

        Every request reads its terminal's sealed TMK and MAK; opening them with AES-GCM
        each time cost more than the request's MAC. A sealed value that opened once is
        remembered by its exact bytes, kind and terminal — an altered or moved value is
        other bytes or another key of the memo, and is opened (and refused) as ever. The
        memo forgets everything when full and when the KEK changes.
        """
        memo_key = (kind, terminal_id, bytes(sealed))
        clear = self._opened.get(memo_key)
        if clear is None:
            try:
                clear = self._kek.open(sealed, kind=kind, terminal_id=terminal_id)
            except KekMismatch as exc:
                if not self.follow_rotation(exc.store_kek_id):
                    raise
                clear = self._kek.open(sealed, kind=kind, terminal_id=terminal_id)
            if len(self._opened) >= OPENED_KEYS_MAX:
                self._opened.clear()
            self._opened[memo_key] = clear
        return clear

    @staticmethod
    def holds_keys(values: dict[str, Any]) -> bool:
        """True if ``values`` (columns of a terminal's row) sets a key: it will be sealed."""
        return any(values.get(column) is not None for column in SEALED_COLUMNS)

    def _sealed_values(self, terminal_id: str, values: dict[str, Any]) -> None:
        """Seal, in place, every key of ``values`` (:meth:`holds_keys` says if any)."""
        for column, kind in SEALED_COLUMNS.items():
            clear = values.get(column)
            if clear is not None:
                values[column] = self.seal_key(kind, terminal_id, bytes(clear))

    def check_kek(self, connection: Connection) -> None:
        """KekMismatch unless the store is sealed under this store's KEK (or records none).

        Locks the record for the rest of the unit of work (PostgreSQL ``FOR SHARE``;
        SQLite holds the whole database already): a rotation cannot commit between
        this check and the keys this unit of work seals.
        """
        recorded = connection.execute(
            sa.select(t.key_encryption.c.kek_id).with_for_update(read=True)
        ).scalar()
        if (
            recorded is not None
            and recorded != self._kek.kek_id
            and not self.follow_rotation(recorded)
        ):
            raise _kek_mismatch(recorded, self._kek)

    def follow_rotation(self, store_kek_id: str) -> bool:
        """True when this store seals and opens under the KEK ``store_kek_id`` names.

        A ``rotate-kek`` run by another process while this one serves re-seals every
        key under a new KEK and puts it in the KEK file: this store then meets keys
        sealed under a KEK it does not hold. It reads its KEK file (and the rotation's
        staged ``.next``, :func:`~posbatch.host.sealing.follow_rotation`) and, when one
        of them is that KEK, seals and opens under it from now on — a serving host
        follows a rotation without a restart. At most one look a second for a KEK it
        did not find (a KEK from the environment, or a file that does not hold it: the
        requests are refused as before, and each refusal does not cost two file reads).
        Called with the record locked (:meth:`check_kek`) or for a key the rotation
        already committed, so no key is sealed under a KEK the store has left.
        """
        with self._follow_lock:
            if store_kek_id == self._kek.kek_id:
                return True
            now = time.monotonic()
            last = self._follow_missed.get(store_kek_id)
            if last is not None and now - last < KEK_FOLLOW_INTERVAL_S:
                return False
            found = sealing.follow_rotation(self._kek, store_kek_id)
            if found is None:
                self._follow_missed = {store_kek_id: now}
                return False
            was = self._kek.kek_id
            self._kek = found
            self._opened.clear()
            self._follow_missed = {}
        followed = {"event": "kek-followed", "kek_id": found.kek_id, "was": was, "pid": os.getpid()}
        _log.warning(json.dumps(followed))
        return True

    def rotate_kek(
        self, new_kek: KeyEncryptionKey, *, progress: Callable[[int], None] | None = None
    ) -> int:
        """Re-seal every key of the store under ``new_kek`` in ONE transaction; return the count.

        Either every key is sealed under the new KEK and the record names it, or —
        a failure or a crash at any point before the commit — nothing changed and
        the old KEK opens everything. ``progress(n)`` is called after each terminal.
        From the commit on, this store seals and opens under ``new_kek``; another
        process still holding the old KEK follows it from its KEK file
        (:meth:`follow_rotation`) or, with a KEK from the environment, is refused
        (KekMismatch) until restarted.
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
            # One UPDATE per set of key columns a terminal has, each run over all of them at
            # once (executemany): a statement per terminal cost ≈ 0.3 ms each, and serving
            # hosts wait for this transaction (docs/host.md, "Rotation").
            resealed: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in rows:
                terminal_id = row[0]
                values: dict[str, Any] = {"_terminal_id": terminal_id}
                for (name, kind), sealed in zip(SEALED_COLUMNS.items(), row[1:], strict=True):
                    if sealed is not None:
                        clear = self.open_key(kind, terminal_id, sealed)
                        values[name] = new_kek.seal(clear, kind=kind, terminal_id=terminal_id)
                resealed.setdefault(tuple(values)[1:], []).append(values)
                done += 1
                if progress is not None:
                    progress(done)
            for names, group in resealed.items():
                if names:
                    connection.execute(
                        t.terminals.update()
                        .where(t.terminals.c.terminal_id == sa.bindparam("_terminal_id"))
                        .values({name: sa.bindparam(name) for name in names}),
                        group,
                    )
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
        self._opened.clear()
        return done

    @contextmanager
    def transaction(self, *, wait: bool = True) -> Iterator[StoreTx]:
        """One unit of work, committed when the block ends (rolled back on an exception).

        SQLite: the unit of work takes the write lock as it begins. With ``wait`` it
        waits for it (up to the busy timeout); without, entering raises
        :class:`StoreBusyError` at once when another process holds it — the caller waits
        its own way (the server keeps its event loop going) and tries again.
        """
        write: bool | str = True if wait else WRITE_UNLESS_BUSY
        try:
            with (
                self.engine.connect().execution_options(**{WRITE_OPTION: write}) as connection,
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
        for merchant_id, terminal_id, master_key in terminals:
            check_terminal_id(terminal_id)
            check_merchant_id(merchant_id)
            if len(master_key) != TMK_BYTES:  # a terminal master key is the TMK of field 62
                raise HostError(f"the master key is {TMK_BYTES} bytes")
        with self.transaction() as tx:
            self.check_kek(tx.connection)  # may follow a rotation: seal only after it
            rows = [
                {
                    "terminal_id": terminal_id,
                    "merchant_id": merchant_id,
                    "master_key": self.seal_key(KeyKind.TMK, terminal_id, master_key),
                    "status": TerminalStatus.ACTIVE,
                    "signed_on": False,
                    "created_at": naive_utc(now),
                }
                for merchant_id, terminal_id, master_key in terminals
            ]
            ids = [terminal_id for _, terminal_id, _ in terminals]
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
                raise HostError(not_registered(terminal_id))

    def suspend(self, terminal_id: str) -> None:
        self.set_status(terminal_id, suspended=True)

    def list_terminals(self) -> list[TerminalInfo]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.terminals).order_by(t.terminals.c.terminal_id)
            ).all()
            return [self._terminal_info(connection, row) for row in rows]

    def terminal(self, terminal_id: str) -> TerminalInfo | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(t.terminals).where(t.terminals.c.terminal_id == terminal_id)
            ).first()
            return None if row is None else self._terminal_info(connection, row)

    def _terminal_info(self, connection: Connection, row: sa.Row[Any]) -> TerminalInfo:
        """A terminal's row (read once: it was read twice, to see it exists and again) with
        its current batch and the number of its last closed batch."""
        terminal_id = row.terminal_id
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
            signed_on_at=aware_utc(row.signed_on_at),
            created_at=aware_utc(row.created_at) or row.created_at,
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
                opened_at=aware_utc(row.opened_at) or row.opened_at,
                closed_at=aware_utc(row.closed_at),
                close_reason=row.close_reason,
                host_totals=totals_of(row.host_totals),
                terminal_totals=totals_of(row.terminal_totals),
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
                batch_id = latest_batch_id(connection, terminal_id, batch_no)
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
                created_at=aware_utc(row.created_at) or row.created_at,
            )
            for row in rows
        ]

    def count_transactions(self, terminal_id: str, batch_no: int | None = None) -> int:
        """How many rows :meth:`transactions` has for these arguments, however long."""
        query = sa.select(sa.func.count()).where(t.transactions.c.terminal_id == terminal_id)
        with self.engine.connect() as connection:
            if batch_no is not None:
                batch_id = latest_batch_id(connection, terminal_id, batch_no)
                if batch_id is None:
                    return 0
                query = query.where(t.transactions.c.batch_id == batch_id)
            return int(connection.execute(query).scalar_one())

    def exceptions(
        self, terminal_id: str | None = None, *, limit: int = READ_LIMIT_DEFAULT
    ) -> list[ExceptionInfo]:
        """Exception (差错) records, oldest first; all terminals' when ``terminal_id`` is None;
        each says whether the back office has resolved it (the record itself never changes)."""
        work = t.exception_work.c
        query = (
            sa.select(t.exceptions, work.status.label("work_status"))
            .select_from(
                t.exceptions.outerjoin(
                    t.exception_work, work.exception_id == t.exceptions.c.exception_id
                )
            )
            .order_by(t.exceptions.c.exception_id)
            .limit(limit)
        )
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
                created_at=aware_utc(row.created_at) or row.created_at,
                resolved=row.work_status == "resolved",
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
                host_totals=totals_of(row.host_totals),
                response_code=row.response_code,
                outcome=row.outcome,
                created_at=aware_utc(row.created_at) or row.created_at,
            )
            for row in rows
        ]

    def batch_tally(self, batch_id: int) -> BatchTally:
        """A batch's field-48 counts and amounts, exactly (doctor: is it over capacity?)."""
        try:
            with self.engine.connect() as connection:
                return batch_tally(connection, batch_id)
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
                raise HostError(not_registered(terminal_id))
            batch = tx.current_batch(terminal)
            if batch is None:
                raise HostError(f"terminal {terminal_id} has no batch yet (never signed on)")
            counted = tx.batch_tally(batch.batch_id)
            tx.apply(host_rules.advance(terminal, batch, counted, reason, now=now))
            return next_batch_no(batch.batch_no)


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


def pan_key_id(pan_key: bytes) -> str:
    """The id a store records of the key its card numbers are hashed under (it tells two
    keys apart and says nothing of either)."""
    return hmac.new(pan_key, b"posbatch host PAN key id", hashlib.sha256).hexdigest()[:16]


def _claim_pan_key(engine: Engine, pan_key: bytes) -> None:
    """Record ``pan_key``'s id beside the KEK's if none is; ConfigError if another key's is.

    A store hashed under one key and opened with another (a data directory restored with
    the wrong ``host-pan.key``) would find none of its cards: every void and refund of an
    earlier sale declined 14, no duplicate found. Runs after :func:`_claim_kek`, which made
    the row."""
    wanted = pan_key_id(pan_key)
    column = t.key_encryption.c.pan_key_id
    try:
        with engine.begin() as connection:
            recorded = connection.execute(sa.select(column)).scalar()
            if recorded is None:
                connection.execute(
                    t.key_encryption.update().where(column.is_(None)).values(pan_key_id=wanted)
                )
                recorded = connection.execute(sa.select(column)).scalar()
    except sa.exc.SQLAlchemyError as exc:
        url = engine.url.render_as_string(hide_password=False)
        raise StorageError(f"host store {storage.describe_database_error(exc, url)}") from exc
    if recorded is not None and recorded != wanted:
        raise ConfigError(
            f"the PAN key given (id {wanted}) is not this host store's (id {recorded}): its "
            "card numbers were hashed under another host-pan.key, and this one would match "
            "none of them; put back the host-pan.key of this store (from the backup of its "
            "data directory; see docs/host.md, Backups)"
        )


def _check_exists(engine: Engine, *, missing_ok: bool = False) -> None:
    """ConfigError unless the database holds a host store already.

    ``missing_ok``: an empty database (a store about to be made) passes; a database
    holding other tables than a host store's never does.
    """
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot open the database {storage.describe_database_error(exc, url)}"
        ) from exc
    if VERSION_TABLE in tables:
        return
    where = engine.url.render_as_string(hide_password=True)
    path = storage.sqlite_path(url)
    if path is not None and tables:
        raise StoreMissingError(
            f"{path} is not a posbatch host store (it holds {len(tables)} other tables, "
            f"such as {sorted(tables)[0]}): nothing was changed"
        )
    if not missing_ok:
        raise StoreMissingError(f"no host store in {where} (nothing was created)")


def host_store_exists(url: str) -> bool:
    """True if ``url`` holds a host store already (nothing is created or changed)."""
    path = storage.sqlite_path(url)
    if path is not None and not path.is_file():
        return False
    if path is None and storage.is_memory_url(url):
        return False
    engine = storage.create_engine(url)
    try:
        with engine.connect() as connection:
            return sa.inspect(connection).has_table(VERSION_TABLE)
    except sa.exc.SQLAlchemyError as exc:
        text = storage.describe_database_error(
            exc, engine.url.render_as_string(hide_password=False)
        )
        raise StorageError(f"cannot open the database {text}") from exc
    finally:
        engine.dispose()


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
        if write != WRITE_UNLESS_BUSY:
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
            return
        # SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries, the
        # thread blocked all the while; this caller would rather wait its own way. On the
        # driver's connection: a try that fails is then a plain exception (≈ 4× cheaper
        # than one through SQLAlchemy's error handling), and the server may try often.
        raw = connection.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                raise StoreBusyError(_LOCK_HELD) from None
            raise StorageError(f"host store: {exc}") from exc
        finally:
            raw.execute(f"PRAGMA busy_timeout={storage.SQLITE_BUSY_TIMEOUT_MS}")


def _memory_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
