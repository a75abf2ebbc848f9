"""Settlement totals arithmetic, shared by the host and the terminal.

DESIGN.md, field 48: debits are sales; credits are voids and refunds, each
counted on the card's side (domestic or foreign). A voided sale still counts
as a debit (its void is the credit); a reversed transaction is not passed in
at all — the caller lists only what stands approved in the batch.

Capacity: field 48 counts in n3 and sums in n12 per half, so a batch holds at
most 999 debits and 999 credits per card class, and at most 999,999,999,999 fen
of each. :class:`BatchTally` counts a batch exactly, without those widths: the
host asks it whether one more approval still fits (else it answers 95, batch
full), the terminal whether its own limit is reached (then it settles first),
and both settle a batch that is already over capacity (data from before these
rules) with :meth:`BatchTally.capped_totals` — each half that does not fit is
sent capped and marked reconciliation code 3, which is never balanced, so batch
upload carries every record.

Pure: integers in, :class:`~posbatch.batch.model.SettlementTotals` out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from posbatch.batch.limits import TOTAL_AMOUNT_FEN_MAX, TOTAL_COUNT_MAX
from posbatch.batch.model import CardTotals, CardType, Kind, Reconciliation, SettlementTotals
from posbatch.batch.money import format_fen
from posbatch.errors import BatchError

__all__ = [
    "CREDIT_KINDS",
    "DEBIT_KINDS",
    "TOTAL_AMOUNT_FEN_MAX",
    "TOTAL_COUNT_MAX",
    "BatchTally",
    "HalfTally",
    "TotalsCounter",
    "compute_totals",
    "describe_totals",
    "net_fen",
    "tally",
    "tally_sums",
]

DEBIT_KINDS: Final = frozenset({Kind.SALE})
CREDIT_KINDS: Final = frozenset({Kind.VOID, Kind.REFUND})
# Which half of field 48 a card counts in. This profile's rule, shared by host and
# terminal so both sides put every card on the same side: UnionPay BINs (62…) and
# the domestic 9… range are domestic (内卡), everything else foreign (外卡).
DOMESTIC_PAN_PREFIXES: Final = ("62", "9")


def card_type_of_pan(pan: str) -> CardType:
    """DOMESTIC for a UnionPay/domestic BIN, FOREIGN otherwise."""
    return CardType.DOMESTIC if pan.startswith(DOMESTIC_PAN_PREFIXES) else CardType.FOREIGN


class TotalsCounter(enum.StrEnum):
    """One of the eight numbers of field 48 that can fill up (field 63 ``F=`` of a 95)."""

    DOMESTIC_DEBIT_COUNT = "DOMESTIC_DEBIT_COUNT"
    DOMESTIC_DEBIT_AMOUNT = "DOMESTIC_DEBIT_AMOUNT"
    DOMESTIC_CREDIT_COUNT = "DOMESTIC_CREDIT_COUNT"
    DOMESTIC_CREDIT_AMOUNT = "DOMESTIC_CREDIT_AMOUNT"
    FOREIGN_DEBIT_COUNT = "FOREIGN_DEBIT_COUNT"
    FOREIGN_DEBIT_AMOUNT = "FOREIGN_DEBIT_AMOUNT"
    FOREIGN_CREDIT_COUNT = "FOREIGN_CREDIT_COUNT"
    FOREIGN_CREDIT_AMOUNT = "FOREIGN_CREDIT_AMOUNT"

    @property
    def words(self) -> tuple[str, str]:
        """(English, Chinese) for people: ``("domestic debits (sales)", "内卡借记(消费)")``."""
        side_en, side_zh = _SIDE_WORDS[self.value.split("_")[0]]
        what_en, what_zh = _WHAT_WORDS[self.value.split("_")[1]]
        return f"{side_en} {what_en}", f"{side_zh}{what_zh}"


_SIDE_WORDS: Final = {"DOMESTIC": ("domestic", "内卡"), "FOREIGN": ("foreign", "外卡")}
_WHAT_WORDS: Final = {
    "DEBIT": ("debits (sales)", "借记(消费)"),
    "CREDIT": ("credits (voids and refunds)", "贷记(撤销与退货)"),
}


@dataclass(frozen=True, slots=True)
class HalfTally:
    """One card class of a batch, counted exactly (no field width)."""

    debit_amount_fen: int = 0
    debit_count: int = 0
    credit_amount_fen: int = 0
    credit_count: int = 0

    def fits(self) -> bool:
        """Whether field 48 can carry this half as it is."""
        return (
            max(self.debit_count, self.credit_count) <= TOTAL_COUNT_MAX
            and max(self.debit_amount_fen, self.credit_amount_fen) <= TOTAL_AMOUNT_FEN_MAX
        )

    def capped(self, reconciliation: Reconciliation) -> CardTotals:
        """The half as field 48 carries it; a half that does not fit is capped at the
        field's maximum and marked ``ERROR`` (3) whatever ``reconciliation`` says."""
        if self.fits():
            return CardTotals(
                self.debit_amount_fen,
                self.debit_count,
                self.credit_amount_fen,
                self.credit_count,
                reconciliation,
            )
        return CardTotals(
            min(self.debit_amount_fen, TOTAL_AMOUNT_FEN_MAX),
            min(self.debit_count, TOTAL_COUNT_MAX),
            min(self.credit_amount_fen, TOTAL_AMOUNT_FEN_MAX),
            min(self.credit_count, TOTAL_COUNT_MAX),
            Reconciliation.ERROR,
        )


@dataclass(frozen=True, slots=True)
class BatchTally:
    """A batch's debits and credits per card class, exact: what field 48 would carry if it
    could. :meth:`totals` is field 48 (when it fits); :meth:`full_counter` says whether one
    more entry would still fit under a limit."""

    domestic: HalfTally = HalfTally()
    foreign: HalfTally = HalfTally()

    def half(self, card_type: CardType) -> HalfTally:
        return self.domestic if CardType(card_type) == CardType.DOMESTIC else self.foreign

    def fits(self) -> bool:
        """Whether field 48 can carry the batch's totals."""
        return self.domestic.fits() and self.foreign.fits()

    def overflows(self) -> list[TotalsCounter]:
        """Every counter beyond what field 48 carries (empty when :meth:`fits`)."""
        found = []
        for side, half in (("DOMESTIC", self.domestic), ("FOREIGN", self.foreign)):
            for what, count, amount_fen in (
                ("DEBIT", half.debit_count, half.debit_amount_fen),
                ("CREDIT", half.credit_count, half.credit_amount_fen),
            ):
                if count > TOTAL_COUNT_MAX:
                    found.append(TotalsCounter(f"{side}_{what}_COUNT"))
                if amount_fen > TOTAL_AMOUNT_FEN_MAX:
                    found.append(TotalsCounter(f"{side}_{what}_AMOUNT"))
        return found

    def value_of(self, counter: TotalsCounter) -> int:
        """What ``counter`` holds: a count, or fen for an ``…_AMOUNT`` counter."""
        side, what, unit = counter.value.split("_")
        half = self.domestic if side == "DOMESTIC" else self.foreign
        if what == "DEBIT":
            return half.debit_count if unit == "COUNT" else half.debit_amount_fen
        return half.credit_count if unit == "COUNT" else half.credit_amount_fen

    def adding(self, kind: Kind, amount_fen: int, card_type: CardType) -> BatchTally:
        """The tally with one more ``kind`` of ``amount_fen`` on ``card_type``."""
        if amount_fen < 0:
            raise BatchError(f"negative amount {amount_fen} in totals")
        half = self.half(card_type)
        if kind in DEBIT_KINDS:
            half = replace(
                half,
                debit_amount_fen=half.debit_amount_fen + amount_fen,
                debit_count=half.debit_count + 1,
            )
        elif kind in CREDIT_KINDS:
            half = replace(
                half,
                credit_amount_fen=half.credit_amount_fen + amount_fen,
                credit_count=half.credit_count + 1,
            )
        else:
            raise BatchError(f"a {kind} does not count in settlement totals")
        if CardType(card_type) == CardType.DOMESTIC:
            return replace(self, domestic=half)
        return replace(self, foreign=half)

    def full_counter(
        self,
        kind: Kind,
        amount_fen: int,
        card_type: CardType,
        *,
        count_max: int = TOTAL_COUNT_MAX,
    ) -> TotalsCounter | None:
        """The counter that one more ``kind`` of ``amount_fen`` would push past ``count_max``
        entries (or past the n12 amount field); None when there is room."""
        after = self.adding(kind, amount_fen, card_type).half(card_type)
        side = "DOMESTIC" if CardType(card_type) == CardType.DOMESTIC else "FOREIGN"
        what = "DEBIT" if kind in DEBIT_KINDS else "CREDIT"
        count, total_fen = (
            (after.debit_count, after.debit_amount_fen)
            if what == "DEBIT"
            else (after.credit_count, after.credit_amount_fen)
        )
        if count > min(count_max, TOTAL_COUNT_MAX):
            return TotalsCounter(f"{side}_{what}_COUNT")
        if total_fen > TOTAL_AMOUNT_FEN_MAX:
            return TotalsCounter(f"{side}_{what}_AMOUNT")
        return None

    def totals(self, reconciliation: Reconciliation = Reconciliation.REQUEST) -> SettlementTotals:
        """Field 48 of this batch; :class:`BatchError` when it does not fit."""
        for card_type, half in (
            (CardType.DOMESTIC, self.domestic),
            (CardType.FOREIGN, self.foreign),
        ):
            if not half.fits():
                raise BatchError(f"{card_type.name.lower()} totals do not fit field 48")
        return self.capped_totals(reconciliation)

    def capped_totals(
        self, reconciliation: Reconciliation = Reconciliation.REQUEST
    ) -> SettlementTotals:
        """Field 48 even when it does not fit: each half that does not is capped at the
        field's maximum and carries reconciliation code 3 ("error": these are not the
        batch's totals). A 0500 so marked is never balanced: batch upload carries the
        records one by one (docs/wire.md)."""
        return SettlementTotals(
            self.domestic.capped(reconciliation), self.foreign.capped(reconciliation)
        )

    @property
    def net_fen(self) -> int:
        """Debits minus credits over both halves, in fen (exact, never capped)."""
        return (
            self.domestic.debit_amount_fen
            + self.foreign.debit_amount_fen
            - self.domestic.credit_amount_fen
            - self.foreign.credit_amount_fen
        )

    def describe(self) -> str:
        """``domestic sales 1000 / 38000.00, credits 3 / 12.00; …`` (not capped)."""
        text = f"domestic {_describe_tally_half(self.domestic)}"
        if self.foreign.debit_count or self.foreign.credit_count:
            text += f"; foreign {_describe_tally_half(self.foreign)}"
        return text


def _describe_tally_half(half: HalfTally) -> str:
    return (
        f"sales {half.debit_count} / {format_fen(half.debit_amount_fen)}, "
        f"credits {half.credit_count} / {format_fen(half.credit_amount_fen)}"
    )


def tally(entries: Iterable[tuple[Kind, int, CardType]]) -> BatchTally:
    """The exact tally of ``(kind, amount_fen, card_type)`` entries (see :func:`compute_totals`)."""
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
    return BatchTally(HalfTally(*sums[CardType.DOMESTIC]), HalfTally(*sums[CardType.FOREIGN]))


def tally_sums(sums: Iterable[tuple[Kind, CardType, int, int]]) -> BatchTally:
    """The tally of ``(kind, card_type, count, amount_fen)`` sums (a database's GROUP BY)."""
    halves = {CardType.DOMESTIC: [0, 0, 0, 0], CardType.FOREIGN: [0, 0, 0, 0]}
    for kind, card_type, count, amount_fen in sums:
        half = halves[CardType(card_type)]
        if kind in DEBIT_KINDS:
            half[0] += amount_fen
            half[1] += count
        elif kind in CREDIT_KINDS:
            half[2] += amount_fen
            half[3] += count
        else:
            raise BatchError(f"a {kind} does not count in settlement totals")
    return BatchTally(HalfTally(*halves[CardType.DOMESTIC]), HalfTally(*halves[CardType.FOREIGN]))


def compute_totals(
    entries: Iterable[tuple[Kind, int, CardType]],
    *,
    reconciliation: Reconciliation = Reconciliation.REQUEST,
) -> SettlementTotals:
    """Field-48 totals of ``(kind, amount_fen, card_type)`` entries.

    Raises :class:`BatchError` for a kind that is neither debit nor credit, a
    negative amount, or a half whose count or amount field 48 cannot carry
    (:meth:`BatchTally.capped_totals` is the form that never raises).
    """
    return tally(entries).totals(reconciliation)


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
