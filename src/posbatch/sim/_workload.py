"""The trading-day workload: what each cashier does, drawn from the ``workload`` stream.

A day at one terminal is a sign-on, then ``transactions`` operations, then
settlement (unless the merchant takes a holiday). Operations follow the mix
of a small Chinese shop:

- sales, with amounts drawn from a log-normal around ¥38 (convenience store
  to restaurant bill), a few round amounts, a long tail up to ¥20,000;
- cards: mostly domestic UnionPay debit and credit, some foreign Visa and
  Mastercard; a share of them the issuer refuses (insufficient funds, expired
  card, over the limit) — which PANs and amounts decline is the host issuer's
  rule, and :data:`CARDS` is built to meet each of them;
- voids of a sale of the same batch (the customer changed their mind at the
  till), refunds of an earlier sale (partial allowed, of the open batch or one of the
  last three closed ones);
- training transactions (培训模式): rung up on the terminal, never sent.

Nothing here touches a terminal; :mod:`posbatch.sim._world` carries the plan
out.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import Final

from posbatch.host.issuer import TEST_PAN_INSUFFICIENT_FUNDS, TEST_PAN_NOT_ISSUED
from posbatch.wire import CardType

__all__ = [
    "AMOUNT_FEN_MAX",
    "CARDS",
    "Card",
    "Operation",
    "OperationKind",
    "draw_amount_fen",
    "draw_card",
    "draw_operation",
]

AMOUNT_FEN_MEDIAN: Final = 3_800
AMOUNT_SIGMA: Final = 1.1
AMOUNT_FEN_MAX: Final = 2_000_000  # ¥20,000: above it a shop takes a bank transfer
ROUND_AMOUNT_SHARE: Final = 0.15
# Now and then someone tries a ¥60,000 purchase: over the issuer's limit (61).
OVER_LIMIT_SHARE: Final = 0.003
OVER_LIMIT_AMOUNT_FEN: Final = 6_000_000


class OperationKind(enum.StrEnum):
    SALE = "sale"
    VOID = "void"
    REFUND = "refund"
    TRAINING = "training"


@dataclass(frozen=True, slots=True)
class Card:
    """A test card: PAN, expiry (YYMM), which side of field 48 it counts on, its weight."""

    label: str
    pan: str
    expiry: str
    card_type: CardType
    weight: int


# Weights are per 1000 cards presented. The PANs pass the Luhn check; the
# last three are refused by the host's issuer rules (posbatch.host.issuer):
# expired → 54, no funds → 51, not issued → 14.
CARDS: Final = (
    Card("UnionPay debit", "6222021234567890128", "3012", CardType.DOMESTIC, 520),
    Card("UnionPay debit 2", "6217003810012345677", "2906", CardType.DOMESTIC, 150),
    Card("UnionPay credit", "6225881234567898", "2811", CardType.DOMESTIC, 180),
    Card("Visa", "4111111111111111", "2909", CardType.FOREIGN, 60),
    Card("Mastercard", "5555555555554444", "2805", CardType.FOREIGN, 40),
    Card("expired UnionPay", "6222020000000000018", "2001", CardType.DOMESTIC, 15),
    Card("no-funds UnionPay", TEST_PAN_INSUFFICIENT_FUNDS, "3012", CardType.DOMESTIC, 20),
    Card("not-issued UnionPay", TEST_PAN_NOT_ISSUED, "3012", CardType.DOMESTIC, 5),
)
_CARD_WEIGHTS: Final = tuple(card.weight for card in CARDS)


@dataclass(frozen=True, slots=True)
class Operation:
    kind: OperationKind
    amount_fen: int
    card: Card
    think_ms: int  # the cashier's pause before it


def draw_amount_fen(generator: random.Random) -> int:
    """A sale amount in fen: log-normal around ¥38, some round, 1 fen .. ¥20,000."""
    amount = round(math.exp(generator.gauss(math.log(AMOUNT_FEN_MEDIAN), AMOUNT_SIGMA)))
    if generator.random() < ROUND_AMOUNT_SHARE:
        amount = max(100, round(amount, -2))
    if generator.random() < OVER_LIMIT_SHARE:
        return OVER_LIMIT_AMOUNT_FEN
    return min(max(amount, 1), AMOUNT_FEN_MAX)


def draw_card(generator: random.Random) -> Card:
    return generator.choices(CARDS, weights=_CARD_WEIGHTS)[0]


# Shares of the operation mix (the rest are sales).
VOID_SHARE: Final = 0.06
REFUND_SHARE: Final = 0.04
TRAINING_SHARE: Final = 0.02
THINK_MS_MIN: Final = 5_000
THINK_MS_MAX: Final = 150_000


def draw_operation(generator: random.Random) -> Operation:
    draw = generator.random()
    if draw < VOID_SHARE:
        kind = OperationKind.VOID
    elif draw < VOID_SHARE + REFUND_SHARE:
        kind = OperationKind.REFUND
    elif draw < VOID_SHARE + REFUND_SHARE + TRAINING_SHARE:
        kind = OperationKind.TRAINING
    else:
        kind = OperationKind.SALE
    return Operation(
        kind,
        draw_amount_fen(generator),
        draw_card(generator),
        generator.randint(THINK_MS_MIN, THINK_MS_MAX),
    )
