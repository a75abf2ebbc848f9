"""What the checker reads: plain snapshots of the terminal journals and the host store.

The simulation copies each side's records into these frozen rows (the journals
through their read API, the host's tables with bare SQL) after every day; the checker is
a pure function of them. Keeping the checker off the live objects means it
can be tested with hand-written tables, and that a violation can be printed
from exactly the rows that showed it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from posbatch.batch.model import CardType, Kind, SettlementTotals
from posbatch.sim._clearing import ClearingSnapshot
from posbatch.sim._host_rows import HostExceptionRow

__all__ = [
    "HostBatchRow",
    "HostExceptionRow",
    "HostTxnRow",
    "HostTxnStatus",
    "Snapshot",
    "TerminalBatchRow",
    "TerminalTxnRow",
    "TerminalTxnStatus",
]


class TerminalTxnStatus(enum.StrEnum):
    """A journal row's outcome, in the checker's words."""

    APPROVED = "approved"  # the host said 00 and nothing took it back
    DECLINED = "declined"  # the host said no: nothing to settle
    IN_FLIGHT = "in_flight"  # sent, no answer yet and no reversal decided (crash window)
    REVERSAL_PENDING = "reversal_pending"  # no answer: a reversal is queued, not yet acknowledged
    REVERSED = "reversed"  # a reversal was sent and acknowledged
    UNSENT = "unsent"  # written but never sent (crash before it left): no effect anywhere
    TRAINING = "training"  # training mode: never sent


class HostTxnStatus(enum.StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    REVERSED = "reversed"


@dataclass(frozen=True, slots=True)
class TerminalTxnRow:
    terminal_id: str
    journal: int  # which journal of this terminal (a reinstall starts a new one)
    batch_no: int
    stan: int
    kind: Kind
    amount_fen: int
    card_type: CardType
    status: TerminalTxnStatus
    original_batch_no: int | None = None
    original_stan: int | None = None
    raw_state: str = ""


@dataclass(frozen=True, slots=True)
class TerminalBatchRow:
    terminal_id: str
    journal: int
    batch_no: int
    step: str  # the settlement step (terminal_batch.SettleStep value)
    closed: bool
    balanced: bool | None
    close_reason: str | None
    terminal_totals: SettlementTotals | None  # what the terminal sent in its 0500


@dataclass(frozen=True, slots=True)
class HostTxnRow:
    terminal_id: str
    batch_no: int
    batch_key: int  # the host's own id of the batch (two batches may share a number)
    txn_key: int  # the host's own id of the row
    stan: int
    kind: Kind
    amount_fen: int
    card_type: CardType
    status: HostTxnStatus
    response_code: str
    original_key: int | None = None  # host id of the original (void/refund)


@dataclass(frozen=True, slots=True)
class HostBatchRow:
    terminal_id: str
    batch_key: int
    batch_no: int
    state: str  # OPEN / UPLOADING / CLOSED
    close_reason: str | None
    host_totals: SettlementTotals | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Both sides' records at one moment (end of a simulated day)."""

    day: int
    terminal_txns: tuple[TerminalTxnRow, ...]
    terminal_batches: tuple[TerminalBatchRow, ...]
    host_txns: tuple[HostTxnRow, ...]
    host_batches: tuple[HostBatchRow, ...]
    host_exceptions: tuple[HostExceptionRow, ...]
    failures: tuple[tuple[str, str], ...]  # (terminal_id or "host", what escaped) — invariant 6
    final: bool = False  # after the quiet close: nothing may still be in flight
    clearing: ClearingSnapshot | None = None  # statements and host sums (invariant 8)
