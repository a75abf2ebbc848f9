"""The request path's unit of work: :class:`StoreTx`, the host's records of one group commit.

:class:`StoreTx` reads what the rules need (the group's read-ahead, then the
:class:`~posbatch.batch.host_rules.HostView` lookups, every row typed) and
writes what they decided (:meth:`StoreTx.apply`, one :data:`Effect` at a time,
in order). The commit happens when :meth:`HostStore.transaction
<posbatch.host.store.HostStore.transaction>` ends, and nothing is answered
before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.batch.counters import next_batch_no
from posbatch.batch.host_batch import FIRST_BATCH_NO
from posbatch.batch.host_effects import (
    AddException,
    AddSettlement,
    BringKeysIntoForce,
    Effect,
    InsertReversal,
    InsertTransaction,
    InsertUploadRecords,
    MoveBatch,
    NoteStan,
    OpenFirstBatch,
    OpenNextBatch,
    RecordBatchError,
    RecordHostTotals,
    RecordSettlementTotals,
    RecordUploadEnd,
    SetRefundedFen,
    SetTransactionStatus,
    SignOff,
    SignOn,
    SignOnAgain,
)
from posbatch.batch.host_records import (
    BatchRow,
    ReversalRow,
    TerminalRow,
    TransactionRow,
    TransactionStatus,
    UploadRecordRow,
)
from posbatch.batch.model import (
    BatchState,
    CardType,
    Kind,
    Reconciliation,
    SettlementTotals,
)
from posbatch.batch.totals import BatchTally, compute_totals
from posbatch.host import _schema as t
from posbatch.host._queries import (
    COUNTED_STATUSES,
    INSERT_COLUMNS,
    batch_tally,
    chunks,
    latest_batch_id,
)
from posbatch.host.read_models import naive_utc
from posbatch.host.sealing import KeyKind
from posbatch.wire import PIK_BYTES, WorkingKeys

if TYPE_CHECKING:
    from posbatch.host.store import HostStore

__all__ = ["StoreTx", "pending_keys_bytes"]


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
        row[6], row[7], None if row[8] is None else BatchState(row[8]),
        None if row[9] is None else _working_keys(
            store.open_key(KeyKind.PENDING, terminal_id, row[9])
        ),
    )  # fmt: skip


class StoreTx:
    """The queries of one unit of work on the request path (used by the core only): the
    :class:`~posbatch.batch.host_rules.HostView` that :func:`~posbatch.batch.host_rules.decide`
    reads, and :meth:`apply`, which writes the effects it returns.

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
                for chunk in chunks(growth):
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
        for chunk in chunks(ids):
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
        for chunk in chunks(wanted):
            self._transactions.update(dict.fromkeys(chunk))
            cursor.execute(*self._sql.transactions(chunk))
            for row in cursor.fetchall():
                self._transactions[row[1], row[2]] = _transaction_row(row)

    def read_reversals(self, keys: Sequence[tuple[str, int, int]], original_kind: str) -> None:
        """Read the reversals of ``original_kind`` under these (terminal, batch_no, stan) keys."""
        wanted = list(dict.fromkeys(keys))
        cursor = self.cursor()
        for chunk in chunks(wanted):
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
        terminal = None
        if row is not None:
            self._note_bound(row)
            terminal = _terminal_row(row, self.store)
        if for_update or not self._sql.row_locks:  # kept only as read_terminals keeps it
            self._terminals[terminal_id] = terminal
        return terminal

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
        return batch_tally(self.connection, batch_id)

    def update_terminal(self, terminal_id: str, **values: object) -> None:
        """Set columns of the terminal's row; keys (:data:`SEALED_COLUMNS`) are sealed here.

        Only this terminal's read-ahead is forgotten (its next :meth:`terminal` reads the
        row again): nothing else the group read ahead lives in that row. (A terminal's
        first request after a sign-on comes here; forgetting everything made each such
        request cost the rest of its group a statement per lookup.)
        """
        if not self._kek_checked and self.store.holds_keys(values):
            self.store.check_kek(self._connection)  # may follow a rotation: seal after it
            self._kek_checked = True
        self.store._sealed_values(terminal_id, values)
        self.cursor().execute(
            self._sql.update_terminal(tuple(values)),
            [
                self._sql.datetime(value) if isinstance(value, datetime) else value
                for value in values.values()
            ]
            + [terminal_id],
        )
        self._terminals.pop(terminal_id, None)

    def bring_keys_into_force(self, terminal_id: str, keys: WorkingKeys) -> None:
        """The terminal's first request MACed under the keys of its last sign-on: they are
        the keys in force now, and it is signed on. Written at once; a row this unit of
        work read (locked: ``terminal(…, for_update=True)``, so nothing else can have
        changed it) is kept as it now stands, not read again (a round trip and two key
        openings per such request)."""
        kept = self._terminals.get(terminal_id)
        self.update_terminal(terminal_id, mak=keys.mak, pik=keys.pik, pending_keys=None,
                             signed_on=True)  # fmt: skip
        if kept is not None:
            self._keep(kept._replace(mak=keys.mak, pending_keys=None, signed_on=True))

    def sign_on_again(self, terminal_id: str) -> None:
        """A signed-off terminal that MACs under its keys in force is signed on again (as
        :meth:`bring_keys_into_force`, a row this unit of work read is kept)."""
        kept = self._terminals.get(terminal_id)
        self.update_terminal(terminal_id, signed_on=True)
        if kept is not None:
            self._keep(kept._replace(signed_on=True))

    def _keep(self, terminal: TerminalRow) -> TerminalRow:
        self._terminals[terminal.terminal_id] = terminal
        return terminal

    # batches
    def batch(self, batch_id: int) -> BatchRow | None:
        row = self.connection.execute(_BATCH_BY_ID, {"by_batch_id": batch_id}).first()
        return None if row is None else _batch_row(row)

    def current_batch(self, terminal: TerminalRow) -> BatchRow | None:
        if terminal.current_batch_id is None:
            return None
        return self.batch(terminal.current_batch_id)

    def latest_batch(self, terminal_id: str, batch_no: int) -> BatchRow | None:
        batch_id = latest_batch_id(self.connection, terminal_id, batch_no)
        return None if batch_id is None else self.batch(batch_id)

    def last_closed_batch(self, terminal_id: str) -> BatchRow | None:
        row = self.connection.execute(_LAST_CLOSED_BATCH, {"by_terminal_id": terminal_id}).first()
        return None if row is None else _batch_row(row)

    def last_stan_in_batch(self, batch_id: int) -> int | None:
        """The STAN of the last transaction recorded in batch ``batch_id`` (None if none)."""
        stan = self.connection.execute(_LAST_STAN_IN_BATCH, {"by_batch_id": batch_id}).scalar()
        return None if stan is None else int(stan)

    def open_batch(self, terminal_id: str, batch_no: int, *, now: datetime) -> int:
        batch_id = self.connection.execute(
            _INSERT_BATCH,
            {
                "terminal_id": terminal_id,
                "batch_no": batch_no,
                "state": BatchState.OPEN.value,
                "opened_at": naive_utc(now),
            },
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

    def set_batch(self, batch_id: int, **values: object) -> None:
        self.connection.execute(_UPDATE_BATCH, {**values, "by_batch_id": batch_id})

    def counted_transactions(self, batch_id: int) -> list[TransactionRow]:
        """The batch's approved and voided transactions, by STAN."""
        return [
            _transaction_row(row)
            for row in self.connection.execute(_COUNTED_TRANSACTIONS, {"by_batch_id": batch_id})
        ]

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
        return None if row is None else _transaction_row(row)

    def insert_transaction(self, **values: Any) -> None:
        """Insert a transaction row as given (for fixtures and tools; the request path
        inserts through :meth:`apply`)."""
        values["created_at"] = self._sql.datetime(naive_utc(values["created_at"]))
        values.setdefault("refunded_fen", 0)
        values.setdefault("bin8_hmac", None)
        key = (values["batch_id"], values["stan"])
        self._transactions.pop(key, None)
        self._inserted.add(key)
        self._inserts.append(tuple(values[name] for name in INSERT_COLUMNS))

    def host_totals(
        self, batch_id: int, reconciliation: Reconciliation = Reconciliation.REQUEST
    ) -> SettlementTotals:
        """The batch's field-48 totals as the host counts them."""
        return compute_totals(
            (
                (Kind(row.kind), row.amount_fen, CardType(row.card_type))
                for row in self.counted_transactions(batch_id)
            ),
            reconciliation=reconciliation,
        )

    def transaction_by_id(self, transaction_id: int) -> TransactionRow | None:
        row = self.connection.execute(
            sa.select(*_TRANSACTION_TABLE_COLUMNS).where(
                t.transactions.c.transaction_id == transaction_id
            )
        ).first()
        return None if row is None else _transaction_row(row)

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

    # reversals
    def reversal(
        self, terminal_id: str, batch_no: int, stan: int, original_kind: str, amount_fen: int
    ) -> ReversalRow | None:
        row = self.connection.execute(
            sa.select(t.reversals.c.batch_id, t.reversals.c.response_code)
            .where(
                t.reversals.c.terminal_id == terminal_id,
                t.reversals.c.batch_no == batch_no,
                t.reversals.c.stan == stan,
                t.reversals.c.original_kind == original_kind,
                t.reversals.c.amount_fen == amount_fen,
            )
            .order_by(t.reversals.c.reversal_id.desc())
            .limit(1)
        ).first()
        return None if row is None else ReversalRow(row.batch_id, row.response_code)

    # uploads
    def upload_records(self, batch_id: int) -> list[UploadRecordRow]:
        return [
            UploadRecordRow(
                stan=row.stan,
                card_type=row.card_type,
                pan_hmac=row.pan_hmac,
                pan_masked=row.pan_masked,
                amount_fen=row.amount_fen,
            )
            for row in self.connection.execute(
                sa.select(
                    t.upload_records.c.stan,
                    t.upload_records.c.card_type,
                    t.upload_records.c.pan_hmac,
                    t.upload_records.c.pan_masked,
                    t.upload_records.c.amount_fen,
                )
                .where(t.upload_records.c.batch_id == batch_id)
                .order_by(t.upload_records.c.stan)
            )
        ]

    def upload_record_stans(self, batch_id: int, stans: Sequence[int]) -> set[int]:
        return {
            int(stan)
            for stan in self.connection.execute(
                sa.select(t.upload_records.c.stan).where(
                    t.upload_records.c.batch_id == batch_id,
                    t.upload_records.c.stan.in_(stans),
                )
            ).scalars()
        }

    # settlements
    def earlier_answer(self, batch_id: int, terminal_totals: str) -> str | None:
        """The host totals answered to an earlier 0500 of ``batch_id`` with these totals."""
        host_totals = self.connection.execute(
            sa.select(t.settlements.c.host_totals)
            .where(
                t.settlements.c.batch_id == batch_id,
                t.settlements.c.terminal_totals == terminal_totals,
            )
            .order_by(t.settlements.c.settlement_id)
            .limit(1)
        ).scalar()
        return None if host_totals is None else str(host_totals)

    # --- effects: what the rules decided, written in order -----------------------------------

    def apply(self, effects: Sequence[Effect]) -> None:
        """Write ``effects`` (one :func:`~posbatch.batch.host_rules.decide` result) in order."""
        for effect in effects:
            if isinstance(effect, InsertTransaction):
                self._insert_transaction(effect)
            elif isinstance(effect, NoteStan):
                self._last_stans[effect.terminal_id] = effect.stan
            elif isinstance(effect, SetTransactionStatus):
                self._set_transaction(effect.transaction_id, status=effect.status)
            elif isinstance(effect, SetRefundedFen):
                self._set_transaction(effect.transaction_id, refunded_fen=effect.refunded_fen)
            elif isinstance(effect, MoveBatch):
                self._move_batch(effect)
            elif isinstance(effect, OpenFirstBatch):
                self.first_batch(effect.terminal_id, now=effect.at)
            elif isinstance(effect, SignOn):
                self.update_terminal(
                    effect.terminal_id,
                    signed_on=True,
                    pending_keys=pending_keys_bytes(effect.pending_keys),
                    signed_on_at=naive_utc(effect.at),
                    last_stan=effect.stan,
                )
            elif isinstance(effect, SignOff):
                self.update_terminal(effect.terminal_id, signed_on=False)
            elif isinstance(effect, OpenNextBatch):
                self.open_next_batch(effect.terminal_id, effect.after_batch_no, now=effect.at)
            elif isinstance(effect, RecordSettlementTotals):
                self.set_batch(
                    effect.batch_id,
                    terminal_totals=effect.terminal_totals,
                    host_totals=effect.host_totals,
                    settle_response_code="00",
                )
            elif isinstance(effect, RecordHostTotals):
                self.set_batch(effect.batch_id, host_totals=effect.host_totals)
            elif isinstance(effect, RecordUploadEnd):
                self.set_batch(effect.batch_id, upload_end_records=effect.total_records)
            elif isinstance(effect, AddException):
                self._add_exception(effect)
            elif isinstance(effect, InsertReversal):
                self._insert_reversal(effect)
            elif isinstance(effect, InsertUploadRecords):
                self._insert_upload_records(effect)
            elif isinstance(effect, BringKeysIntoForce):
                self.bring_keys_into_force(effect.terminal_id, effect.keys)
            elif isinstance(effect, SignOnAgain):
                self.sign_on_again(effect.terminal_id)
            elif isinstance(effect, RecordBatchError):
                self._record_batch_error(effect)
            else:
                assert isinstance(effect, AddSettlement), effect
                self._add_settlement(effect)

    def _record_batch_error(self, effect: RecordBatchError) -> None:
        """A 77 answered, for the back office's list of batch-number errors."""
        self.connection.execute(
            t.batch_errors.insert().values(
                terminal_id=effect.terminal_id,
                merchant_id=effect.merchant_id,
                kind=effect.kind,
                stan=effect.stan,
                batch_no=effect.batch_no,
                host_batch_no=effect.host_batch_no,
                reason=effect.reason,
                created_at=naive_utc(effect.at),
            )
        )

    def _insert_transaction(self, effect: InsertTransaction) -> None:
        """Written with the others of the unit of work, in order, at the first read of it
        or at the end (the columns of :data:`~posbatch.host._queries.INSERT_COLUMNS`)."""
        key = (effect.batch_id, effect.stan)
        self._transactions.pop(key, None)
        self._inserted.add(key)
        self._inserts.append(
            (
                effect.batch_id, effect.stan, effect.kind, effect.amount_fen, effect.card_type,
                effect.pan_hmac, effect.pan_masked, effect.status, effect.response_code,
                effect.rrn, effect.auth_code, effect.local_time, effect.local_date,
                effect.original_transaction_id, 0, effect.request_digest, effect.terminal_id,
                self._sql.datetime(naive_utc(effect.created_at)), effect.bin8_hmac,
            )
        )  # fmt: skip
        if effect.status == TransactionStatus.APPROVED:
            self.note_approval(effect.batch_id, effect.amount_fen)

    def _set_transaction(self, transaction_id: int, **values: object) -> None:
        self.connection.execute(
            _UPDATE_TRANSACTION, {**values, "by_transaction_id": transaction_id}
        )

    def _move_batch(self, effect: MoveBatch) -> None:
        values: dict[str, object] = {"state": effect.state.value}
        if effect.state == BatchState.CLOSED:
            values["closed_at"] = naive_utc(effect.at)
            values["close_reason"] = effect.close_reason
        self.set_batch(effect.batch_id, **values)

    def _add_exception(self, effect: AddException) -> None:
        self.connection.execute(
            _INSERT_EXCEPTION,
            {
                "terminal_id": effect.terminal_id,
                "merchant_id": effect.merchant_id,
                "batch_id": effect.batch_id,
                "batch_no": effect.batch_no,
                "stan": effect.stan,
                "kind": effect.kind,
                "cause": effect.cause,
                "terminal_amount_fen": effect.terminal_amount_fen,
                "host_amount_fen": effect.host_amount_fen,
                "created_at": naive_utc(effect.at),
            },
        )

    def _insert_reversal(self, effect: InsertReversal) -> None:
        self.connection.execute(
            _INSERT_REVERSAL,
            {
                "terminal_id": effect.terminal_id,
                "batch_id": effect.batch_id,
                "batch_no": effect.batch_no,
                "stan": effect.stan,
                "original_kind": effect.original_kind,
                "amount_fen": effect.amount_fen,
                "reason_code": effect.reason_code,
                "outcome": effect.outcome,
                "transaction_id": effect.transaction_id,
                "response_code": effect.response_code,
                "created_at": naive_utc(effect.created_at),
            },
        )

    def _insert_upload_records(self, effect: InsertUploadRecords) -> None:
        created_at = naive_utc(effect.created_at)
        self.connection.execute(
            _INSERT_UPLOAD_RECORD,
            [
                {
                    "batch_id": effect.batch_id,
                    "stan": record.stan,
                    "card_type": record.card_type,
                    "pan_hmac": record.pan_hmac,
                    "pan_masked": record.pan_masked,
                    "amount_fen": record.amount_fen,
                    "created_at": created_at,
                }
                for record in effect.records
            ],
        )

    def _add_settlement(self, effect: AddSettlement) -> None:
        self.connection.execute(
            _INSERT_SETTLEMENT,
            {
                "batch_id": effect.batch_id,
                "terminal_id": effect.terminal_id,
                "batch_no": effect.batch_no,
                "stan": effect.stan,
                "terminal_totals": effect.terminal_totals,
                "host_totals": effect.host_totals,
                "response_code": effect.response_code,
                "outcome": effect.outcome,
                "created_at": naive_utc(effect.created_at),
            },
        )


_BATCH_COLUMNS: Final = (
    t.batches.c.batch_id,
    t.batches.c.terminal_id,
    t.batches.c.batch_no,
    t.batches.c.state,
    t.batches.c.opened_at,
    t.batches.c.closed_at,
    t.batches.c.close_reason,
    t.batches.c.terminal_totals,
    t.batches.c.host_totals,
    t.batches.c.settle_response_code,
    t.batches.c.upload_end_records,
)
_TRANSACTION_TABLE_COLUMNS: Final = tuple(t.transactions.c[name] for name in TransactionRow._fields)

# The statements of the unit of work, built once: SQLAlchemy builds a statement and its
# cache key at every call otherwise (≈ 50–100 µs here), more than the query. Values are
# bound at execution; the names of the WHERE parameters (by_…) are not column names, so
# an UPDATE's SET takes exactly the columns its parameters name.
_BATCH_BY_ID: Final = sa.select(*_BATCH_COLUMNS).where(
    t.batches.c.batch_id == sa.bindparam("by_batch_id")
)
_LAST_CLOSED_BATCH: Final = (
    sa.select(*_BATCH_COLUMNS)
    .where(
        t.batches.c.terminal_id == sa.bindparam("by_terminal_id"),
        t.batches.c.state == BatchState.CLOSED.value,
    )
    .order_by(t.batches.c.batch_id.desc())
    .limit(1)
)
_LAST_STAN_IN_BATCH: Final = (
    sa.select(t.transactions.c.stan)
    .where(t.transactions.c.batch_id == sa.bindparam("by_batch_id"))
    .order_by(t.transactions.c.transaction_id.desc())
    .limit(1)
)
_COUNTED_TRANSACTIONS: Final = (
    sa.select(*_TRANSACTION_TABLE_COLUMNS)
    .where(
        t.transactions.c.batch_id == sa.bindparam("by_batch_id"),
        t.transactions.c.status.in_(COUNTED_STATUSES),
    )
    .order_by(t.transactions.c.stan)
)
_INSERT_BATCH: Final = t.batches.insert().returning(t.batches.c.batch_id)
_UPDATE_BATCH: Final = t.batches.update().where(t.batches.c.batch_id == sa.bindparam("by_batch_id"))
_UPDATE_TRANSACTION: Final = t.transactions.update().where(
    t.transactions.c.transaction_id == sa.bindparam("by_transaction_id")
)
_INSERT_EXCEPTION: Final = t.exceptions.insert()
_INSERT_REVERSAL: Final = t.reversals.insert()
_INSERT_UPLOAD_RECORD: Final = t.upload_records.insert()
_INSERT_SETTLEMENT: Final = t.settlements.insert()


def _batch_row(row: Sequence[Any]) -> BatchRow:
    return BatchRow(
        row[0], row[1], row[2], BatchState(row[3]), row[4], row[5], row[6], row[7], row[8],
        row[9], row[10],
    )  # fmt: skip


def _transaction_row(row: Sequence[Any]) -> TransactionRow:
    return TransactionRow(row[0], row[1], row[2], Kind(row[3]), *row[4:])
