"""What the host's rules decide to write: typed effects, one write each, and the Decision.

:func:`posbatch.batch.host_rules.decide` returns a :class:`Decision` — the
response, the processing requirement of the answer's header, and the effects —
and the host applies the effects in order, in the unit of work of the request,
before it answers (:meth:`posbatch.host.unit_of_work.StoreTx.apply`). Every
effect is an immutable value (a frozen dataclass; :class:`InsertTransaction`, made
for every sale, a NamedTuple). Two are made by one function each, so that each
rule lives in one place: a batch moves only by :func:`move_batch` (to the
state the batch table of :mod:`posbatch.batch.host_batch` returns), a
transaction's status changes only by :func:`set_status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from posbatch.batch.host_batch import BatchEvent, apply
from posbatch.batch.host_records import TerminalRow, UploadRecordRow
from posbatch.batch.model import BatchState
from posbatch.batch.txn_lifecycle import HostTxnEvent, apply_host
from posbatch.wire import (
    ProcessingRequirement,
    Request,
    Response,
    WorkingKeys,
    decode_batch_detail,
)

__all__ = [
    "AddException",
    "AddSettlement",
    "BringKeysIntoForce",
    "Decision",
    "Effect",
    "InsertReversal",
    "InsertTransaction",
    "InsertUploadRecords",
    "MoveBatch",
    "NoteStan",
    "OpenFirstBatch",
    "OpenNextBatch",
    "RecordBatchError",
    "RecordHostTotals",
    "RecordSettlementTotals",
    "RecordUploadEnd",
    "SetRefundedFen",
    "SetTransactionStatus",
    "SignOff",
    "SignOn",
    "SignOnAgain",
    "batch_error",
    "move_batch",
    "set_status",
]


@dataclass(frozen=True, slots=True)
class OpenFirstBatch:
    """The terminal's first sign-on: batch 000001 opens as its current batch."""

    terminal_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SignOn:
    """The terminal signed on: its new keys wait (pending) until a request uses them."""

    terminal_id: str
    pending_keys: WorkingKeys
    stan: int
    at: datetime


@dataclass(frozen=True, slots=True)
class SignOff:
    """The terminal signed off (its keys stay: an 0820 carries no MAC)."""

    terminal_id: str


@dataclass(frozen=True, slots=True)
class BringKeysIntoForce:
    """The terminal's first request MACed under the keys of its last sign-on: they are the
    keys in force now, and it is signed on."""

    terminal_id: str
    keys: WorkingKeys


@dataclass(frozen=True, slots=True)
class SignOnAgain:
    """A signed-off terminal MACed a request under its keys in force: it is signed on again."""

    terminal_id: str


@dataclass(frozen=True, slots=True)
class NoteStan:
    """The terminal's last STAN seen is ``stan``."""

    terminal_id: str
    stan: int


class InsertTransaction(NamedTuple):
    """A sale, void or refund answered (approved, declined, or reversed before it came).

    A NamedTuple, not a frozen dataclass like the others: one is made for every sale,
    and a frozen dataclass of 17 fields costs several times as much to make.
    """

    batch_id: int
    terminal_id: str
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
    request_digest: str
    created_at: datetime
    # The PAN key's hash of the card's first 8 digits (cards.card_bin8): clearing matches
    # 8-digit BIN entries by it. None for a card under 16 digits.
    bin8_hmac: str | None = None


@dataclass(frozen=True, slots=True)
class SetTransactionStatus:
    """Made only by :func:`set_status`: the one place a transaction's status changes."""

    transaction_id: int
    status: str


@dataclass(frozen=True, slots=True)
class SetRefundedFen:
    transaction_id: int
    refunded_fen: int


@dataclass(frozen=True, slots=True)
class MoveBatch:
    """The batch is now in ``state``, the state the batch table's ``apply()`` returned
    (made only by :func:`move_batch`); ``close_reason`` and ``at`` when it closes."""

    batch_id: int
    state: BatchState
    close_reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class OpenNextBatch:
    """Open the batch after ``after_batch_no`` (wrapping) as the terminal's current one."""

    terminal_id: str
    after_batch_no: int
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordSettlementTotals:
    """What the batch's 0500 said and what the host answered (settle code 00)."""

    batch_id: int
    terminal_totals: str
    host_totals: str


@dataclass(frozen=True, slots=True)
class RecordHostTotals:
    """The host's totals of a batch the back office closed (nobody settled it)."""

    batch_id: int
    host_totals: str


@dataclass(frozen=True, slots=True)
class RecordUploadEnd:
    batch_id: int
    total_records: int


@dataclass(frozen=True, slots=True)
class AddException:
    """An exception (差错) record for the back office, with its cause."""

    terminal_id: str
    merchant_id: str
    batch_id: int | None
    batch_no: int | None
    stan: int | None
    kind: str
    cause: str
    terminal_amount_fen: int | None
    host_amount_fen: int | None
    at: datetime


@dataclass(frozen=True, slots=True)
class InsertReversal:
    terminal_id: str
    batch_id: int | None
    batch_no: int
    stan: int
    original_kind: str
    amount_fen: int
    reason_code: str
    outcome: str
    transaction_id: int | None
    response_code: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InsertUploadRecords:
    batch_id: int
    records: tuple[UploadRecordRow, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AddSettlement:
    """The log of one 0500 and its answer."""

    batch_id: int
    terminal_id: str
    batch_no: int
    stan: int
    terminal_totals: str
    host_totals: str
    response_code: str
    outcome: str  # balanced / unbalanced / repeated / error
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RecordBatchError:
    """A 77 answered, for the back office: the host's batch number and the reason its
    field 63 gave (``FORCED`` when a fault script forced the 77 without one)."""

    terminal_id: str
    merchant_id: str
    kind: str
    stan: int
    batch_no: int
    host_batch_no: int | None
    reason: str
    at: datetime


Effect = (
    OpenFirstBatch
    | BringKeysIntoForce
    | SignOnAgain
    | RecordBatchError
    | SignOn
    | SignOff
    | NoteStan
    | InsertTransaction
    | SetTransactionStatus
    | SetRefundedFen
    | MoveBatch
    | OpenNextBatch
    | RecordSettlementTotals
    | RecordHostTotals
    | RecordUploadEnd
    | AddException
    | InsertReversal
    | InsertUploadRecords
    | AddSettlement
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request and the writes that must be durable before it is sent."""

    response: Response
    requirement: ProcessingRequirement = ProcessingRequirement.NONE
    effects: tuple[Effect, ...] = ()

    @property
    def code(self) -> str:
        return self.response.response_code

    @property
    def detail(self) -> str | None:
        return self.response.detail


def batch_error(
    terminal: TerminalRow, request: Request, detail: str | None, *, at: datetime
) -> RecordBatchError:
    """The record of a 77 answered to ``request`` with field 63 ``detail``."""
    state = decode_batch_detail(detail) if detail else None
    reason = "FORCED" if state is None or state.reason is None else state.reason.value
    return RecordBatchError(
        terminal.terminal_id, terminal.merchant_id, request.KIND.value, request.stan,
        request.batch_no, None if state is None else state.host_batch_no, reason, at,
    )  # fmt: skip


def set_status(transaction_id: int, status: str, event: HostTxnEvent) -> SetTransactionStatus:
    """The one place a transaction's status is set: the status the host transaction
    table (:mod:`posbatch.batch.txn_lifecycle`) gives ``event`` from ``status``; raises
    :class:`~posbatch.errors.IllegalTransition` if the table has no such move."""
    return SetTransactionStatus(transaction_id, apply_host(status, event))


def move_batch(
    batch_id: int,
    state: BatchState,
    event: BatchEvent,
    *,
    at: datetime,
    close_reason: str | None = None,
) -> MoveBatch | None:
    """The write of ``event`` on a batch in ``state``: a move to the state the batch table's
    ``apply()`` returns, or None when the table keeps the batch where it is (nothing to
    write). Raises :class:`~posbatch.errors.IllegalTransition` if the table forbids it."""
    after = apply(state, event)
    if after == state:
        return None
    if after == BatchState.CLOSED and close_reason is None:
        raise ValueError(f"batch {batch_id} closes without a close reason")
    return MoveBatch(batch_id, after, close_reason, at)
