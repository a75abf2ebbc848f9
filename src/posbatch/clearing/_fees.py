"""Fee (手续费) arithmetic: exact decimal rates, integer fen, half up per transaction.

Theory of operation
-------------------
A rate is an exact :class:`~decimal.Decimal` fraction (``0.006`` for 0.60 %),
typed by people as a percentage with the sign (``"0.60%"``) so that 0.6 and
0.6 % are never confused. Nothing here ever touches a float.

*The fee of a sale* is ``amount_fen × rate`` rounded half up to the fen, then
capped (``min(fee, cap_fen)``) when the schedule has a cap for the card class
— debit cards usually are (the 2016 PBoC/NDRC regime caps the issuer's debit
fee at 13 yuan; merchants see caps of 20–35 yuan). A merchant paid faster
than T+1 (T+0/D+0) also pays the schedule's *instant* rate on the sale,
rounded the same way, not capped.

*The fee of a void or refund* follows the merchant's rule for it
(:class:`CreditFeeRule`): ``kept`` — the acquirer keeps the sale's fee, the
credit carries none; ``returned`` — the sale's fee comes back in proportion
to the amount credited. Proportions are rounded over *pieces* of the sale:
each credit holds fixed stretches of the sale's amount (the lowest ones free
when it was approved; a reversal of the credit frees them) and returns
``R(high) − R(low)`` for each, where ``R(x)`` is the sale's fee × x / sale
amount rounded half up. Standing credits hold disjoint pieces, so however a
sale is split, refunded, reversed and refunded again, its credits never
return more than its fee, and return exactly its fee when they cover it —
no fen is created or lost. The defaults (:data:`VOID_FEE_DEFAULT`, :data:`REFUND_FEE_DEFAULT`):
a void (撤销, the same batch) returns the fee — the sale is cancelled before
clearing; a refund (退货) keeps it, as UnionPay's rules keep the issuer's and
the network's fees of a refunded sale.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Final

from posbatch.batch.cards import quoted_as_typed
from posbatch.batch.model import CardType
from posbatch.errors import ClearingError

__all__ = [
    "CAP_FEN_MAX",
    "RATE_MAX",
    "RATE_PERCENT_DECIMALS_MAX",
    "REFUND_FEE_DEFAULT",
    "VOID_FEE_DEFAULT",
    "CardClass",
    "CreditFeeRule",
    "Funding",
    "fee_fen",
    "format_rate",
    "parse_rate",
    "returned_fee_fen",
]

# 10 %: no card acquiring rate comes near it; a larger figure is a typo (60 for 0.60).
RATE_MAX: Final = Decimal("0.1")
# 0.0001 % steps: the regime's finest figure is 0.065 %.
RATE_PERCENT_DECIMALS_MAX: Final = 4
# 100,000 yuan: a cap above the largest amount field 4 takes in one sale is no cap.
CAP_FEN_MAX: Final = 10_000_000
# Up to 6 whole digits, so that 100% (or 60% for 0.60%) reads "over 10.00%: a typo?" rather
# than "must be a percentage with its sign" — it has its sign.
_PERCENT: Final = re.compile(r"(?P<number>[0-9]{1,6}(?:\.[0-9]+)?)%")


class Funding(enum.StrEnum):
    """What a card draws on, from its BIN: the account (debit) or a credit line."""

    DEBIT = "debit"
    CREDIT = "credit"


class CardClass(enum.StrEnum):
    """The four card types a schedule prices: domestic/foreign × debit/credit."""

    DOMESTIC_DEBIT = "domestic-debit"
    DOMESTIC_CREDIT = "domestic-credit"
    FOREIGN_DEBIT = "foreign-debit"
    FOREIGN_CREDIT = "foreign-credit"

    @classmethod
    def of(cls, card_type: CardType | str, funding: Funding) -> CardClass:
        domestic = CardType(card_type) is CardType.DOMESTIC
        if funding is Funding.DEBIT:
            return cls.DOMESTIC_DEBIT if domestic else cls.FOREIGN_DEBIT
        return cls.DOMESTIC_CREDIT if domestic else cls.FOREIGN_CREDIT

    @property
    def label(self) -> str:
        """Chinese and English, as a statement shows it."""
        return _CLASS_LABELS[self]


_CLASS_LABELS: Final = {
    CardClass.DOMESTIC_DEBIT: "境内借记卡 domestic debit",
    CardClass.DOMESTIC_CREDIT: "境内贷记卡 domestic credit",
    CardClass.FOREIGN_DEBIT: "境外借记卡 foreign debit",
    CardClass.FOREIGN_CREDIT: "境外贷记卡 foreign credit",
}


class CreditFeeRule(enum.StrEnum):
    """What happens to a sale's fee when the sale is voided or refunded."""

    RETURNED = "returned"  # the fee comes back in proportion to the amount credited
    KEPT = "kept"  # the acquirer keeps the sale's fee


VOID_FEE_DEFAULT: Final = CreditFeeRule.RETURNED
REFUND_FEE_DEFAULT: Final = CreditFeeRule.KEPT


def parse_rate(text: str) -> Decimal:
    """``"0.60%"`` → ``Decimal("0.0060")``; exact, 0 ≤ rate ≤ :data:`RATE_MAX`."""
    stripped = text.strip()
    match = _PERCENT.fullmatch(stripped) if stripped.isascii() else None
    if match is None:
        raise ClearingError(
            f"rate{quoted_as_typed(text)} must be a percentage with its sign, like 0.60% "
            "(no exponent, no separators)"
        )
    number = match["number"]
    decimals = len(number.partition(".")[2])
    if decimals > RATE_PERCENT_DECIMALS_MAX:
        raise ClearingError(
            f"rate{quoted_as_typed(text)} has more than {RATE_PERCENT_DECIMALS_MAX} decimals "
            "of a percent"
        )
    rate = Decimal(number) / 100
    if rate > RATE_MAX:
        raise ClearingError(f"rate{quoted_as_typed(text)} is over {format_rate(RATE_MAX)}: a typo?")
    return rate


def check_rate(rate: Decimal) -> Decimal:
    """``rate`` if it is a finite fraction in 0..RATE_MAX with at most the allowed digits."""
    if not isinstance(rate, Decimal):
        raise ClearingError(f"a rate is an exact Decimal, never a {type(rate).__name__}")
    try:
        valid = rate.is_finite() and Decimal(0) <= rate <= RATE_MAX
        exponent = rate.normalize().as_tuple().exponent
    except InvalidOperation:
        valid, exponent = False, 0
    if not valid or not isinstance(exponent, int):
        raise ClearingError(f"rate {rate} is not a fraction between 0 and {RATE_MAX}")
    if -exponent > RATE_PERCENT_DECIMALS_MAX + 2:
        raise ClearingError(f"rate {rate} is finer than {RATE_PERCENT_DECIMALS_MAX} decimals of %")
    return rate


def format_rate(rate: Decimal) -> str:
    """``Decimal("0.006")`` → ``"0.60%"`` (at least two decimals, more when it has them)."""
    percent = (rate * 100).normalize()
    text = f"{percent:f}"
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}%"


def rate_ratio(rate: Decimal) -> tuple[int, int]:
    """``rate`` as (numerator, denominator) integers, for fen arithmetic without Decimal."""
    numerator, denominator = check_rate(rate).as_integer_ratio()
    return numerator, denominator


def fee_fen(amount_fen: int, rate: Decimal, cap_fen: int | None = None) -> int:
    """The fee of one sale: ``amount_fen × rate`` half up to the fen, capped at ``cap_fen``.

    >>> fee_fen(10_000, Decimal("0.006"), 2_000)   # 100.00 at 0.60 %, cap 20.00
    60
    """
    numerator, denominator = rate_ratio(rate)
    return fee_from_ratio(amount_fen, numerator, denominator, cap_fen)


def fee_from_ratio(amount_fen: int, numerator: int, denominator: int, cap_fen: int | None) -> int:
    """:func:`fee_fen` with the rate as a ratio (the hot path of a statement run)."""
    if amount_fen < 0:
        raise ClearingError(f"a fee is of a positive amount, not {amount_fen} fen")
    fee = (2 * amount_fen * numerator + denominator) // (2 * denominator)
    return fee if cap_fen is None or fee <= cap_fen else cap_fen


def _share(fee: int, part_fen: int, whole_fen: int) -> int:
    # fee × part / whole, half up (all non-negative integers)
    return (2 * fee * part_fen + whole_fen) // (2 * whole_fen)


def returned_fee_fen(
    sale_fee_fen: int, sale_amount_fen: int, pieces: Sequence[tuple[int, int]]
) -> int:
    """The part of a sale's fee that a credit holding ``pieces`` of the sale returns.

    A piece ``(low, high)`` is a stretch of the sale's amount in fen, 0 ≤ low < high ≤ the
    amount; the credit returns ``R(high) - R(low)`` for each, ``R(x)`` being the sale's fee
    × x / amount rounded half up. Credits standing together hold disjoint pieces
    (:func:`~posbatch.clearing.credit_pieces`), so together they never return more than
    the fee, and exactly the fee when they cover the whole sale.
    """
    if sale_amount_fen <= 0 or sale_fee_fen < 0:
        raise ClearingError("a credit returns a share of a positive sale's fee")
    returned = 0
    for low, high in pieces:
        if not 0 <= low < high <= sale_amount_fen:
            raise ClearingError(
                f"credits beyond the sale of {sale_amount_fen} fen (piece {low}..{high})"
            )
        returned += _share(sale_fee_fen, high, sale_amount_fen) - _share(
            sale_fee_fen, low, sale_amount_fen
        )
    return returned
