"""What the engine's flows return: plain values a till, a receipt or a report reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from posbatch.batch.codes import describe
from posbatch.batch.model import SettlementTotals
from posbatch.batch.terminal_batch import RecoveryDecision
from posbatch.batch.totals import TOTAL_COUNT_MAX, BatchTally
from posbatch.errors import ConfigError
from posbatch.terminal._journal import TxnState

__all__ = [
    "BATCH_LIMIT_DEFAULT",
    "BATCH_LIMIT_MAX",
    "BalanceResult",
    "SettlementResult",
    "SignOnResult",
    "TransactionResult",
    "check_batch_limit",
]

# The terminal settles by itself before one field-48 counter of its batch passes this
# many entries (a setting of the journal, ``StateRow.batch_limit``); field 48 counts 999.
BATCH_LIMIT_DEFAULT: Final = 500
BATCH_LIMIT_MAX: Final = TOTAL_COUNT_MAX


def check_batch_limit(limit: int) -> None:
    if not 1 <= limit <= BATCH_LIMIT_MAX:
        raise ConfigError(f"batch limit {limit}: 1..{BATCH_LIMIT_MAX} transactions per counter")


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """What a sale, void or refund came to (``approved`` is the only thing a till needs)."""

    kind: str
    txn_id: int
    stan: int
    batch_no: int
    amount_fen: int
    state: str
    response_code: str | None
    rrn: str | None
    auth_code: str | None
    pan_masked: str
    training: bool = False
    # Batches this terminal settled by itself before the transaction, because they were
    # full (its own limit, or the host's 95): the cashier did nothing, the receipt says so.
    settled_batch_nos: tuple[int, ...] = ()

    @property
    def approved(self) -> bool:
        return self.state in TxnState.COUNTED or self.state == TxnState.TRAINING

    @property
    def message(self) -> str:
        if self.state == TxnState.TRAINING:
            return "培训模式 / training mode: not sent to the host"
        if self.state == TxnState.REVERSAL_PENDING:  # the host may hold it until then
            return (
                "无应答，待冲正 / no valid answer: not done; the terminal reverses it by itself "
                "before the next transaction"
            )
        if self.state == TxnState.REVERSED:
            return "无应答，已冲正 / no valid answer: the transaction is reversed"
        if self.response_code is None:
            return "无应答 / no answer yet"
        return describe(self.response_code)


@dataclass(frozen=True, slots=True)
class SignOnResult:
    batch_no: int  # the terminal's current batch after sign-on
    host_batch_no: int
    recovery: RecoveryDecision


@dataclass(frozen=True, slots=True)
class SettlementResult:
    batch_no: int
    balanced: bool | None
    terminal_totals: SettlementTotals | None
    host_totals: SettlementTotals | None
    uploaded_count: int
    close_reason: str
    resumed_from: str
    next_batch_no: int


@dataclass(frozen=True, slots=True)
class BalanceResult:
    batch_no: int
    step: str
    totals: SettlementTotals  # field 48 as the 0500 would carry it (capped if over capacity)
    approved_count: int
    outstanding_count: int
    training_count: int
    tally: BatchTally = field(default_factory=BatchTally)  # the batch counted exactly
    batch_limit: int = BATCH_LIMIT_DEFAULT  # entries per counter before it settles by itself

    @property
    def fullest(self) -> int:
        """The highest of the batch's four field-48 counts (what the batch limit is about)."""
        return max(
            self.tally.domestic.debit_count,
            self.tally.domestic.credit_count,
            self.tally.foreign.debit_count,
            self.tally.foreign.credit_count,
        )
