"""The journal's rows, typed: one frozen dataclass per table, and how they meet the database.

A row is what the engine reads and writes; the journal stores each one twice
(its table row and a snapshot in an entry, :mod:`posbatch.terminal._chain`).
The field order of each class is its column order in the statements the
journal reads with (``record_of`` builds a row from one database record in
that order); booleans come back from SQLite as 0/1 and are made ``bool`` here.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import sqlalchemy as sa

from posbatch.batch.terminal_batch import SettleStep
from posbatch.batch.txn_lifecycle import TxnEvent, TxnState, apply_terminal
from posbatch.terminal._journal_schema import batches_table, state_table, transactions_table

__all__ = [
    "KIND_BATCH",
    "KIND_EVENT",
    "KIND_OF",
    "KIND_STATE",
    "KIND_TXN",
    "ROW_TABLES",
    "STATE_KEY",
    "AnyRow",
    "BatchRow",
    "EventRow",
    "StateRow",
    "TxnRow",
    "Value",
    "field_names",
    "row_from_mapping",
    "row_from_record",
    "row_values",
    "txn_id_of",
]

# What a journal column holds: text, an integer or a boolean (or NULL).
Value = str | int | bool | None

STATE_KEY: Final = "1"


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


AnyRow = StateRow | BatchRow | TxnRow
_Row = TypeVar("_Row", bound=AnyRow)
RowClass = type[StateRow] | type[BatchRow] | type[TxnRow]

KIND_STATE: Final = "state"
KIND_BATCH: Final = "batch"
KIND_TXN: Final = "txn"
KIND_EVENT: Final = "event"
# kind of entry -> (its table, its row class, its key column)
ROW_TABLES: Final[dict[str, tuple[sa.Table, RowClass, str]]] = {
    KIND_STATE: (state_table, StateRow, "state_id"),
    KIND_BATCH: (batches_table, BatchRow, "batch_id"),
    KIND_TXN: (transactions_table, TxnRow, "txn_id"),
}
KIND_OF: Final[dict[RowClass, str]] = {cls: kind for kind, (_t, cls, _k) in ROW_TABLES.items()}


@dataclass(frozen=True, slots=True)
class _Shape:
    names: tuple[str, ...]  # the fields, in order (the column order of the journal's reads)
    booleans: frozenset[str]
    boolean_positions: tuple[int, ...]


def _shape(cls: RowClass) -> _Shape:
    fields = dataclasses.fields(cls)
    names = tuple(field.name for field in fields)
    booleans = frozenset(field.name for field in fields if "bool" in str(field.type))
    return _Shape(names, booleans, tuple(i for i, name in enumerate(names) if name in booleans))


_SHAPES: Final[dict[type[object], _Shape]] = {
    cls: _shape(cls) for cls in (StateRow, BatchRow, TxnRow)
}


def field_names(cls: RowClass) -> tuple[str, ...]:
    """The fields of a row class, in order: the columns :func:`row_from_record` reads."""
    return _SHAPES[cls].names


def row_from_mapping(cls: type[_Row], mapping: Mapping[Any, Any]) -> _Row:
    """A row from a mapping of column names (a table row, or an entry's snapshot).

    A column the mapping lacks (one added by a later migration, absent from an
    old snapshot) takes the field's default.
    """
    shape = _SHAPES[cls]
    found = dict(mapping)  # one copy: a key test on a SQLAlchemy row mapping costs more
    values: dict[str, Value] = {}
    for name in shape.names:
        if name not in found:
            continue
        value = found[name]
        if value is not None and name in shape.booleans:
            value = bool(value)
        values[name] = value
    make: Callable[..., _Row] = cls  # the database hands back what the columns hold
    return make(**values)


def row_from_record(cls: type[_Row], record: Sequence[Value]) -> _Row:
    """A row from one database record holding every field, in :func:`field_names` order."""
    positions = _SHAPES[cls].boolean_positions
    values = list(record)
    for position in positions:
        value = values[position]
        if value is not None:
            values[position] = bool(value)
    make: Callable[..., _Row] = cls
    return make(*values)


def row_values(row: AnyRow) -> dict[str, Value]:
    """The row as a dict of its fields (``dataclasses.asdict`` without the deep copy)."""
    return {name: getattr(row, name) for name in _SHAPES[type(row)].names}


txn_id_of: Final = operator.attrgetter("txn_id")
