"""The host store's SQL: the driver-level statements of the request path and the shared queries.

:class:`HotSql` holds the hottest statements, written for the DBAPI cursor
(see its docstring); :func:`batch_tally` and :func:`latest_batch_id` are the
SQLAlchemy Core queries both the request path and the read operations use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from posbatch.batch.host_records import TransactionRow, TransactionStatus
from posbatch.batch.model import CardType, Kind
from posbatch.batch.totals import BatchTally, tally_sums
from posbatch.errors import StorageError
from posbatch.host import _schema as t

__all__ = [
    "COUNTED_STATUSES",
    "INSERT_COLUMNS",
    "READ_AHEAD_KEYS_MAX",
    "TRANSACTION_COLUMNS",
    "HotSql",
    "batch_tally",
    "chunks",
    "latest_batch_id",
]


COUNTED_STATUSES: Final = (TransactionStatus.APPROVED, TransactionStatus.VOIDED)


# Built once (values bound at execution): building them per call cost more than the query.
_BATCH_TALLY: Final = (
    sa.select(
        t.transactions.c.kind,
        t.transactions.c.card_type,
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(t.transactions.c.amount_fen), 0),
    )
    .where(
        t.transactions.c.batch_id == sa.bindparam("by_batch_id"),
        t.transactions.c.status.in_(COUNTED_STATUSES),
    )
    .group_by(t.transactions.c.kind, t.transactions.c.card_type)
)
_LATEST_BATCH_ID: Final = (
    sa.select(t.batches.c.batch_id)
    .where(
        t.batches.c.terminal_id == sa.bindparam("by_terminal_id"),
        t.batches.c.batch_no == sa.bindparam("by_batch_no"),
    )
    .order_by(t.batches.c.batch_id.desc())
    .limit(1)
)


def batch_tally(connection: Connection, batch_id: int) -> BatchTally:
    rows = connection.execute(_BATCH_TALLY, {"by_batch_id": batch_id}).all()
    return tally_sums(
        (Kind(kind), CardType(card_type), int(count), int(amount_fen))
        for kind, card_type, count, amount_fen in rows
    )


def latest_batch_id(connection: Connection, terminal_id: str, batch_no: int) -> int | None:
    return connection.execute(
        _LATEST_BATCH_ID, {"by_terminal_id": terminal_id, "by_batch_no": batch_no}
    ).scalar()


INSERT_COLUMNS: Final = (*TransactionRow._fields[1:], "terminal_id", "created_at", "bin8_hmac")
_TERMINAL_SELECT: Final = (
    "SELECT t.terminal_id, t.merchant_id, t.master_key, t.status, t.signed_on, t.mak, "
    "t.current_batch_id, b.batch_no, b.state, t.pending_keys, b.approved_count, "
    "b.approved_amount_fen FROM host_terminals t "
    "LEFT JOIN host_batches b ON b.batch_id = t.current_batch_id "
)
TRANSACTION_COLUMNS: Final = (
    "t.transaction_id, t.batch_id, t.stan, t.kind, t.amount_fen, t.card_type, t.pan_hmac, "
    "t.pan_masked, t.status, t.response_code, t.rrn, t.auth_code, t.local_time, t.local_date, "
    "t.original_transaction_id, t.refunded_fen, t.request_digest"
)
_REVERSAL_COLUMNS: Final = "r.terminal_id, r.batch_no, r.stan, r.batch_id, r.amount_fen"
_INSERT_SQL: Final = (
    "INSERT INTO host_transactions (batch_id, stan, kind, amount_fen, card_type, pan_hmac, "
    "pan_masked, status, response_code, rrn, auth_code, local_time, local_date, "
    "original_transaction_id, refunded_fen, request_digest, terminal_id, created_at, "
    "bin8_hmac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Keys one read-ahead statement asks for at most (a group holds at most 512 requests).
READ_AHEAD_KEYS_MAX: Final = 512

_K = TypeVar("_K")


def chunks(keys: Sequence[_K]) -> Iterator[Sequence[_K]]:
    for start in range(0, len(keys), READ_AHEAD_KEYS_MAX):
        yield keys[start : start + READ_AHEAD_KEYS_MAX]


class HotSql:
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
            f"SELECT {TRANSACTION_COLUMNS} FROM host_transactions t "  # noqa: S608 - constants
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
        processor: Callable[[datetime], Any] | None = (
            sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
        )
        if dialect.name == "sqlite":
            # SQLAlchemy's SQLite DATETIME text ("YYYY-MM-DD HH:MM:SS.ffffff"), written by
            # datetime's own C code: a third of the cost, the same text for naive datetimes
            # (tests/host/test_store_sql.py compares the two).
            processor = _sqlite_datetime
        self.datetime: Callable[[datetime], Any] = processor or (lambda moment: moment)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self._percent else text

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one HotSql per store, a few shapes
    def update_terminal(self, columns: tuple[str, ...]) -> str:
        """``UPDATE host_terminals SET`` these columns (checked against the table's)."""
        unknown = set(columns) - set(t.terminals.c.keys())
        if unknown or not columns:
            raise ValueError(f"not columns of host_terminals: {sorted(unknown) or 'none'}")
        assignments = ", ".join(f"{column} = ?" for column in columns)
        return self.sql(f"UPDATE host_terminals SET {assignments} WHERE terminal_id = ?")  # noqa: S608 - checked names

    def _keys(
        self, keys: Sequence[tuple[Any, ...]], types: tuple[str, ...]
    ) -> tuple[int, list[Any]]:
        """The parameters of a FROM item ``k`` holding ``keys`` (:meth:`_from_keys`), and
        the size its text depends on (the number of keys; none with arrays)."""
        if self._arrays:
            return 0, [list(column) for column in zip(*keys, strict=True)]
        return len(keys), [value for key in keys for value in key]

    @staticmethod
    def _from_keys(arrays: bool, count: int, types: tuple[str, ...]) -> str:
        """A FROM item ``k`` with columns k1, k2, … holding ``count`` keys (with ``?``)."""
        names = ", ".join(f"k{i + 1}" for i in range(len(types)))
        if arrays:
            arrays_text = ", ".join(f"?::{kind}[]" for kind in types)
            return f"unnest({arrays_text}) AS k({names})"
        row = "(" + ", ".join("?" * len(types)) + ")"
        values = ", ".join([row] * count)
        # SQLite names VALUES columns column1, column2, …
        columns = ", ".join(f"column{i + 1} AS k{i + 1}" for i in range(len(types)))
        return f"(SELECT {columns} FROM (VALUES {values})) AS k"  # noqa: S608 - marks only

    # The statements below depend on the number of keys only (with arrays, not even on
    # that): their text is built once per size (a group's read-ahead asked for it three
    # times per request, most groups being of one request), the parameters every time.
    @functools.lru_cache(maxsize=READ_AHEAD_KEYS_MAX)  # noqa: B019 - one HotSql per store
    def _grow_batches_sql(self, count: int) -> str:
        from_keys = self._from_keys(self._arrays, count, ("int", "int", "bigint"))
        return self.sql(
            "UPDATE host_batches SET approved_count = approved_count + k.k2, "  # noqa: S608
            f"approved_amount_fen = approved_amount_fen + k.k3 FROM {from_keys} "
            "WHERE host_batches.batch_id = k.k1"
        )

    @functools.lru_cache(maxsize=READ_AHEAD_KEYS_MAX)  # noqa: B019 - one HotSql per store
    def _terminals_sql(self, count: int) -> str:
        keys = self._from_keys(self._arrays, count, ("text",))
        where = f"WHERE t.terminal_id IN (SELECT k1 FROM {keys})"  # noqa: S608 - marks only
        return self.sql(_TERMINAL_SELECT + where)

    @functools.lru_cache(maxsize=READ_AHEAD_KEYS_MAX)  # noqa: B019 - one HotSql per store
    def _lock_sql(self, count: int) -> str:
        keys = self._from_keys(self._arrays, count, ("text",))
        return self.sql(
            f"SELECT terminal_id FROM host_terminals WHERE terminal_id IN (SELECT k1 FROM {keys}) "  # noqa: S608
            "ORDER BY terminal_id FOR UPDATE"
        )

    @functools.lru_cache(maxsize=READ_AHEAD_KEYS_MAX)  # noqa: B019 - one HotSql per store
    def _transactions_sql(self, count: int) -> str:
        from_keys = self._from_keys(self._arrays, count, ("int", "int"))
        return self.sql(
            f"SELECT {TRANSACTION_COLUMNS} FROM {from_keys} "  # noqa: S608 - constants and marks
            "JOIN host_transactions t ON t.batch_id = k.k1 AND t.stan = k.k2"
        )

    @functools.lru_cache(maxsize=READ_AHEAD_KEYS_MAX)  # noqa: B019 - one HotSql per store
    def _reversals_sql(self, count: int) -> str:
        from_keys = self._from_keys(self._arrays, count, ("text", "int", "int"))
        return self.sql(
            f"SELECT {_REVERSAL_COLUMNS} FROM {from_keys} JOIN host_reversals r "  # noqa: S608
            "ON r.terminal_id = k.k1 AND r.batch_no = k.k2 AND r.stan = k.k3 "
            "WHERE r.original_kind = ?"
        )

    def grow_batches(self, growth: Sequence[tuple[int, int, int]]) -> tuple[str, list[Any]]:
        """PostgreSQL: add (batch_id, approvals, amount_fen) to the batches' capacity bounds
        in one statement (SQLite: ``grow_batch`` per batch, cheaper in process)."""
        count, params = self._keys(growth, ("int", "int", "bigint"))
        return self._grow_batches_sql(count), params

    def terminals(self, terminal_ids: Sequence[str]) -> tuple[str, list[Any]]:
        """Read ``terminal_ids`` with their current batches (lock them first: :meth:`lock`)."""
        count, params = self._keys([(terminal_id,) for terminal_id in terminal_ids], ("text",))
        return self._terminals_sql(count), params

    def lock(self, terminal_ids: Sequence[str]) -> tuple[str, list[Any]]:
        """PostgreSQL: lock ``terminal_ids`` in terminal id order (a stable lock order)."""
        count, params = self._keys([(terminal_id,) for terminal_id in terminal_ids], ("text",))
        return self._lock_sql(count), params

    def transactions(self, keys: Sequence[tuple[int, int]]) -> tuple[str, list[Any]]:
        """The transactions under these (batch_id, stan) keys."""
        count, params = self._keys(keys, ("int", "int"))
        return self._transactions_sql(count), params

    def reversals_of(
        self, keys: Sequence[tuple[str, int, int]], original_kind: str
    ) -> tuple[str, list[Any]]:
        """The reversals of ``original_kind`` under these (terminal_id, batch_no, stan) keys."""
        count, params = self._keys(keys, ("text", "int", "int"))
        return self._reversals_sql(count), [*params, original_kind]


def _sqlite_datetime(moment: datetime) -> str:
    return moment.isoformat(" ", "microseconds")
