"""What the host records, as the host's batch rules read it: kinds, statuses and typed rows.

The host's storage (:mod:`posbatch.host.store`) writes these values and reads
these rows; the rules (:mod:`posbatch.batch.host_rules`) decide over them.
Pure: plain values, no storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple

from posbatch.batch.model import BatchState, Kind
from posbatch.batch.txn_lifecycle import TransactionStatus
from posbatch.wire import WorkingKeys

__all__ = [
    "BatchRow",
    "CloseReason",
    "ExceptionKind",
    "ReversalRow",
    "TerminalRow",
    "TerminalStatus",
    "TransactionRow",
    "TransactionStatus",
    "UploadRecordRow",
]


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
    batch_state: BatchState | None
    pending_keys: WorkingKeys | None = None  # of the last sign-on, while no request used them


class TransactionRow(NamedTuple):
    transaction_id: int
    batch_id: int
    stan: int
    kind: Kind
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


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One host batch as the rules read it (totals as field 48 text, as stored)."""

    batch_id: int
    terminal_id: str
    batch_no: int
    state: BatchState
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    terminal_totals: str | None
    host_totals: str | None
    settle_response_code: str | None
    upload_end_records: int | None


@dataclass(frozen=True, slots=True)
class ReversalRow:
    """The last reversal recorded under a (terminal, batch_no, STAN, original kind, amount)."""

    batch_id: int | None
    response_code: str


@dataclass(frozen=True, slots=True)
class UploadRecordRow:
    """One batch-upload record as the host keeps it (never the PAN in clear)."""

    stan: int
    card_type: str
    pan_hmac: str
    pan_masked: str
    amount_fen: int
