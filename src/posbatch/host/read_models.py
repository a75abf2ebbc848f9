"""What the host's records look like to their readers: doctor, the back office, the dashboard.

Typed, aware-UTC rows (frozen dataclasses) that :class:`~posbatch.host.store.HostStore`'s
read operations return; and :func:`naive_utc`, the form every time column holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from posbatch.batch.model import BatchState, CardType, Kind, SettlementTotals
from posbatch.wire import decode_totals

__all__ = [
    "BatchInfo",
    "ExceptionInfo",
    "SettlementInfo",
    "TerminalInfo",
    "TransactionInfo",
    "aware_utc",
    "naive_utc",
    "totals_of",
]


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as naive UTC, the form every time column holds."""
    if moment.tzinfo is None:
        return moment
    if moment.tzinfo is UTC:  # the common case: the host's clock is UTC
        return moment.replace(tzinfo=None)
    return moment.astimezone(UTC).replace(tzinfo=None)


def aware_utc(moment: datetime | None) -> datetime | None:
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
    # The back office resolved it (host_exception_work): the record stays, the work is done.
    resolved: bool = False


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


def totals_of(text: str | None) -> SettlementTotals | None:
    return None if text is None else decode_totals(text)
