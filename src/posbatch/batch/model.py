"""The domain's words: what a message is about, a batch's states, settlement totals.

These are the nouns the host, the terminal, doctor and the back office share.
They know nothing of the wire: :mod:`posbatch.wire` encodes them into its
fields (``Kind`` into MTI, processing code and 60.1; ``BatchState`` and
``BatchReason`` into field 63; the totals into field 48) and imports them from
here, never the reverse.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

__all__ = [
    "BEIJING",
    "BatchReason",
    "BatchState",
    "BatchStateDetail",
    "CardTotals",
    "CardType",
    "Kind",
    "Reconciliation",
    "SettlementTotals",
    "beijing",
    "shown_at",
]

# DESIGN.md: times are stored in UTC and shown in Beijing time — China Standard Time, UTC+8
# all year (no daylight saving since 1991), so a fixed offset is exact for every date.
BEIJING: Final = timezone(timedelta(hours=8), "Beijing")


def beijing(moment: datetime) -> datetime:
    """``moment`` in Beijing time. House rule: a naive datetime is UTC (every time column
    and journal entry holds UTC)."""
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).astimezone(BEIJING)


def shown_at(moment: datetime, *, seconds: bool = False) -> str:
    """``moment`` as people read it: Beijing time (:func:`beijing`), to the minute (or the
    second)."""
    return f"{beijing(moment):%Y-%m-%d %H:%M{':%S' if seconds else ''}}"


class Kind(enum.StrEnum):
    """What a message is about: one word per function of DESIGN.md's table."""

    SIGN_ON = "sign_on"
    SIGN_OFF = "sign_off"
    ECHO = "echo"
    SALE = "sale"
    VOID = "void"
    REFUND = "refund"
    REVERSAL = "reversal"
    SETTLEMENT = "settlement"
    BATCH_UPLOAD = "batch_upload"
    BATCH_UPLOAD_END = "batch_upload_end"


class BatchState(enum.StrEnum):
    """The host's batch: open, waiting for batch upload, or closed."""

    OPEN = "OPEN"
    UPLOADING = "UPLOADING"  # settled unbalanced, waiting for batch upload to end
    CLOSED = "CLOSED"


class BatchReason(enum.StrEnum):
    """Why the host refused for the batch: field 63 ``R=`` of a 77 (or of a 95: FULL)."""

    BEHIND = "BEHIND"  # the terminal's batch_no is lower than the host's
    AHEAD = "AHEAD"  # higher than the host's
    NOT_SIGNED_ON = "NOT_SIGNED_ON"
    CLOSED = "CLOSED"  # the batch the terminal names was already closed by the host
    FULL = "FULL"  # a 95: one more transaction would overflow field 48 (63 F= says which)


@dataclass(frozen=True, slots=True)
class BatchStateDetail:
    """The host's view of a terminal's batch, told in field 63 of a 77 and of a sign-on answer."""

    reason: BatchReason | None
    host_batch_no: int
    host_batch_state: BatchState
    last_closed_batch_no: int | None = None


class CardType(enum.StrEnum):
    """The card's side in settlement: domestic (内卡) or foreign (外卡)."""

    DOMESTIC = "00"
    FOREIGN = "01"


class Reconciliation(enum.IntEnum):
    """The reconciliation code closing each half of the settlement totals."""

    REQUEST = 0
    BALANCED = 1  # 对账平
    NOT_BALANCED = 2  # 对账不平
    ERROR = 3


@dataclass(frozen=True, slots=True)
class CardTotals:
    """One card side of a batch's totals: debits are sales, credits are voids and refunds."""

    debit_amount_fen: int = 0
    debit_count: int = 0
    credit_amount_fen: int = 0
    credit_count: int = 0
    reconciliation: Reconciliation = Reconciliation.REQUEST

    def same_amounts(self, other: CardTotals) -> bool:
        """Equal totals, whatever the reconciliation code."""
        return (
            self.debit_amount_fen == other.debit_amount_fen
            and self.debit_count == other.debit_count
            and self.credit_amount_fen == other.credit_amount_fen
            and self.credit_count == other.credit_count
        )

    def with_reconciliation(self, code: Reconciliation) -> CardTotals:
        return CardTotals(
            self.debit_amount_fen, self.debit_count, self.credit_amount_fen, self.credit_count, code
        )


@dataclass(frozen=True, slots=True)
class SettlementTotals:
    """A batch's totals: domestic cards, then foreign cards (field 48 of 0500/0510)."""

    domestic: CardTotals = CardTotals()
    foreign: CardTotals = CardTotals()

    def same_amounts(self, other: SettlementTotals) -> bool:
        return self.domestic.same_amounts(other.domestic) and self.foreign.same_amounts(
            other.foreign
        )

    @property
    def balanced(self) -> bool:
        return (
            self.domestic.reconciliation == Reconciliation.BALANCED
            and self.foreign.reconciliation == Reconciliation.BALANCED
        )

    def with_reconciliation(self, code: Reconciliation) -> SettlementTotals:
        return SettlementTotals(
            self.domestic.with_reconciliation(code), self.foreign.with_reconciliation(code)
        )
