"""The host's records the nightly checks read, in four statements of bare SQL.

Theory of operation
-------------------
Every night the checker (invariants 1–5) and invariant 8's host sums read the
same host rows: every terminal's batches and transactions, the exception
records, which merchant a terminal belongs to. Through the store's read API
that was three or four SQLAlchemy statements per terminal, built, keyed and
compiled every time, twice a night (the checker's snapshot and invariant 8's
sums each read every transaction), and a row object per row per reader.

:func:`read_host_rows` reads each of the four tables once with the driver
(``exec_driver_sql``: no statement to build or compile, the driver's own rows)
and both readers take what they need from the one :class:`HostRows`. It reads
the stored columns themselves, as the read API does, and converts them the same
way: a stored timestamp is naive UTC (``host.read_models.aware_utc``), totals
are field 48's text (decoded by the snapshot). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy.engine import Engine

__all__ = ["HostBatch", "HostExceptionRow", "HostRows", "HostTransaction", "read_host_rows"]


class HostBatch(NamedTuple):
    batch_id: int
    terminal_id: str
    batch_no: int
    state: str
    close_reason: str | None
    host_totals: str | None  # field 48 as stored


class HostTransaction(NamedTuple):
    transaction_id: int
    terminal_id: str
    batch_no: int  # of its batch (the join the read API makes)
    stan: int
    kind: str
    amount_fen: int
    card_type: str
    status: str  # approved / declined / reversed / voided, as stored
    response_code: str
    original_transaction_id: int | None
    created_at: datetime  # aware, UTC


class HostExceptionRow(NamedTuple):
    """An exception record (差错) as the snapshot keeps it."""

    terminal_id: str
    batch_no: int | None
    stan: int | None
    kind: str
    cause: str


@dataclass(frozen=True, slots=True)
class HostRows:
    """One night's read of the host: per terminal, its batches and transactions in id order."""

    merchant_of: Mapping[str, str]  # terminal_id → merchant_id
    batches: Mapping[str, Sequence[HostBatch]]
    transactions: Mapping[str, Sequence[HostTransaction]]
    exceptions: Sequence[HostExceptionRow]  # every terminal's, in id order


_TERMINALS = "SELECT terminal_id, merchant_id FROM host_terminals"
_BATCHES = (
    "SELECT batch_id, terminal_id, batch_no, state, close_reason, host_totals "
    "FROM host_batches ORDER BY batch_id"
)
_TRANSACTIONS = (
    "SELECT t.transaction_id, t.terminal_id, b.batch_no, t.stan, t.kind, t.amount_fen, "
    "t.card_type, t.status, t.response_code, t.original_transaction_id, t.created_at "
    "FROM host_transactions t JOIN host_batches b ON b.batch_id = t.batch_id "
    "ORDER BY t.transaction_id"
)
_EXCEPTIONS = (
    "SELECT terminal_id, batch_no, stan, kind, cause FROM host_exceptions ORDER BY exception_id"
)


def _utc(moment: datetime | str) -> datetime:
    """A stored timestamp as the read API gives it: SQLite's driver hands back the text
    SQLAlchemy wrote (ISO 8601), PostgreSQL's a naive datetime; both are UTC."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC)


def read_host_rows(engine: Engine) -> HostRows:
    """Every terminal's batches and transactions, every exception record, each terminal's
    merchant: four statements in one connection."""
    with engine.connect() as connection:
        merchant_of = {
            terminal_id: merchant_id
            for terminal_id, merchant_id in connection.exec_driver_sql(_TERMINALS)
        }
        batches: dict[str, list[HostBatch]] = {}
        for row in connection.exec_driver_sql(_BATCHES):
            batch = HostBatch(*row)
            batches.setdefault(batch.terminal_id, []).append(batch)
        transactions: dict[str, list[HostTransaction]] = {}
        for row in connection.exec_driver_sql(_TRANSACTIONS):
            txn = HostTransaction._make((*row[:-1], _utc(row[-1])))
            transactions.setdefault(txn.terminal_id, []).append(txn)
        exceptions = [HostExceptionRow(*row) for row in connection.exec_driver_sql(_EXCEPTIONS)]
    return HostRows(merchant_of, batches, transactions, exceptions)
