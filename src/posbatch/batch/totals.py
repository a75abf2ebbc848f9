"""Settlement totals arithmetic, shared by the host and the terminal.

DESIGN.md, field 48: debits are sales; credits are voids and refunds, each
counted on the card's side (domestic or foreign). A voided sale still counts
as a debit (its void is the credit); a reversed transaction is not passed in
at all — the caller lists only what stands approved in the batch.

Pure: integers in, :class:`~posbatch.wire.SettlementTotals` out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from posbatch.batch.money import format_fen
from posbatch.errors import BatchError
from posbatch.wire import CardTotals, CardType, Kind, Reconciliation, SettlementTotals

__all__ = [
    "CREDIT_KINDS",
    "DEBIT_KINDS",
    "TOTAL_AMOUNT_FEN_MAX",
    "TOTAL_COUNT_MAX",
    "compute_totals",
    "describe_totals",
    "net_fen",
]

DEBIT_KINDS: Final = frozenset({Kind.SALE})
CREDIT_KINDS: Final = frozenset({Kind.VOID, Kind.REFUND})
# What field 48 can carry: n3 counts and n12 amounts per half.
TOTAL_COUNT_MAX: Final = 999
TOTAL_AMOUNT_FEN_MAX: Final = 999_999_999_999
# Which half of field 48 a card counts in. This profile's rule, shared by host and
# terminal so both sides put every card on the same side: UnionPay BINs (62…) and
# the domestic 9… range are domestic (内卡), everything else foreign (外卡).
DOMESTIC_PAN_PREFIXES: Final = ("62", "9")


def card_type_of_pan(pan: str) -> CardType:
    """DOMESTIC for a UnionPay/domestic BIN, FOREIGN otherwise."""
    return CardType.DOMESTIC if pan.startswith(DOMESTIC_PAN_PREFIXES) else CardType.FOREIGN


def compute_totals(
    entries: Iterable[tuple[Kind, int, CardType]],
    *,
    reconciliation: Reconciliation = Reconciliation.REQUEST,
) -> SettlementTotals:
    """Field-48 totals of ``(kind, amount_fen, card_type)`` entries.

    Raises :class:`BatchError` for a kind that is neither debit nor credit, a
    negative amount, or a half whose count or amount field 48 cannot carry.
    """
    # [domestic, foreign] x [debit amount, debit count, credit amount, credit count]
    sums = {CardType.DOMESTIC: [0, 0, 0, 0], CardType.FOREIGN: [0, 0, 0, 0]}
    for kind, amount_fen, card_type in entries:
        if amount_fen < 0:
            raise BatchError(f"negative amount {amount_fen} in totals")
        half = sums[CardType(card_type)]
        if kind in DEBIT_KINDS:
            half[0] += amount_fen
            half[1] += 1
        elif kind in CREDIT_KINDS:
            half[2] += amount_fen
            half[3] += 1
        else:
            raise BatchError(f"a {kind} does not count in settlement totals")
    halves = []
    for card_type in (CardType.DOMESTIC, CardType.FOREIGN):
        debit_amount, debit_count, credit_amount, credit_count = sums[card_type]
        if max(debit_count, credit_count) > TOTAL_COUNT_MAX or (
            max(debit_amount, credit_amount) > TOTAL_AMOUNT_FEN_MAX
        ):
            raise BatchError(f"{card_type.name.lower()} totals do not fit field 48")
        halves.append(
            CardTotals(debit_amount, debit_count, credit_amount, credit_count, reconciliation)
        )
    return SettlementTotals(halves[0], halves[1])


def net_fen(totals: SettlementTotals) -> int:
    """Debits minus credits over both halves, in fen."""
    return (totals.domestic.debit_amount_fen + totals.foreign.debit_amount_fen) - (
        totals.domestic.credit_amount_fen + totals.foreign.credit_amount_fen
    )


def _describe_half(half: CardTotals) -> str:
    return (
        f"sales {half.debit_count} / {format_fen(half.debit_amount_fen)}, "
        f"credits {half.credit_count} / {format_fen(half.credit_amount_fen)}"
    )


def describe_totals(totals: SettlementTotals) -> str:
    """Totals as people read them: ``domestic sales 3 / 71.88, credits 0 / 0.00; foreign …``."""
    text = f"domestic {_describe_half(totals.domestic)}"
    foreign = totals.foreign
    if foreign.debit_count or foreign.credit_count:
        text += f"; foreign {_describe_half(foreign)}"
    return f"{text}; net {format_fen(net_fen(totals))}"
