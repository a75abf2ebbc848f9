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
- training transactions (培训模式): rung up on the terminal, never sent;
- cards at the edges of the rules (issue 11): the shortest and longest card
  numbers the batch upload carries (12, 13 digits; 19 is the common case),
  which must be approved, and numbers it cannot carry or that fail their
  check digit (leading 0, Luhn failure, 11 and 20 digits, a separator typed
  in), which the terminal must refuse (14) before it spends a STAN;
- busy days (:data:`BUSY_DAY_SHARE`): the shop sets a low batch limit
  (:data:`BUSY_BATCH_LIMITS`), so the batch fills during the day and the
  terminal settles it by itself, faults and all;
- third-party probes (:data:`PROBES`): another terminal's software, built
  from docs/wire.md, sends the host what must never be approved — an odd
  currency, a malformed one, a card number upload cannot carry, a track 2 of
  another card, a swipe whose track says the card expired — and expects the
  documented refusal; one probe in :data:`CORRECTED_REVERSAL_SHARE` is instead a
  sale reversed first for the wrong amount, then for the right one, and settled
  at zero: it must balance.

Nothing here touches a terminal; :mod:`posbatch.sim._world` carries the plan
out.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import Final

from posbatch.batch.limits import PAN_DIGITS_MAX, PAN_DIGITS_MIN
from posbatch.batch.model import CardType
from posbatch.host.issuer import TEST_PAN_INSUFFICIENT_FUNDS, TEST_PAN_NOT_ISSUED

__all__ = [
    "BUSY_BATCH_LIMITS",
    "BUSY_DAY_SHARE",
    "CARDS",
    "CARD_NUMBERS",
    "CORRECTED_REVERSAL_SHARE",
    "PROBES",
    "SHOP_SALE_FEN_MAX",
    "Card",
    "Operation",
    "OperationKind",
    "Probe",
    "draw_amount_fen",
    "draw_card",
    "draw_operation",
]

AMOUNT_FEN_MEDIAN: Final = 3_800
AMOUNT_SIGMA: Final = 1.1
SHOP_SALE_FEN_MAX: Final = 2_000_000  # ¥20,000: above it a shop takes a bank transfer
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
    edge: bool = False  # at the edge of the card-number rules (counted apart)


# Weights are relative (the first eight add up to 990). The first eight PANs pass the
# Luhn check; three of them are refused by the host's issuer rules (posbatch.host.issuer):
# expired → 54, no funds → 51, not issued → 14. The edge cards (≈ 5 %) follow.
CARDS: Final = (
    Card("UnionPay debit", "6222021234567890128", "3012", CardType.DOMESTIC, 520),
    Card("UnionPay debit 2", "6217003810012345677", "2906", CardType.DOMESTIC, 150),
    Card("UnionPay credit", "6225881234567898", "2811", CardType.DOMESTIC, 180),
    Card("Visa", "4111111111111111", "2909", CardType.FOREIGN, 60),
    Card("Mastercard", "5555555555554444", "2805", CardType.FOREIGN, 40),
    Card("expired UnionPay", "6222020000000000018", "2001", CardType.DOMESTIC, 15),
    Card("no-funds UnionPay", TEST_PAN_INSUFFICIENT_FUNDS, "3012", CardType.DOMESTIC, 20),
    Card("not-issued UnionPay", TEST_PAN_NOT_ISSUED, "3012", CardType.DOMESTIC, 5),
    # At the edges of the card-number rules: approved …
    Card("12-digit card", "622202123452", "3012", CardType.DOMESTIC, 10, edge=True),
    Card("13-digit card", "6222021234566", "3012", CardType.DOMESTIC, 10, edge=True),
    # … and refused by the terminal before a STAN is spent (14)
    Card("card starting with 0", "0000000000000000", "3012", CardType.DOMESTIC, 8, edge=True),
    Card("check digit wrong", "6222021234567890123", "3012", CardType.DOMESTIC, 8, edge=True),
    Card("11-digit card", "62220212345", "3012", CardType.DOMESTIC, 4, edge=True),
    Card("20-digit card", "62220212345678901283", "3012", CardType.DOMESTIC, 4, edge=True),
    Card("card typed with a dash", "6222-02123456789012", "3012", CardType.DOMESTIC, 4, edge=True),
)
# Every card number the cashiers of the world type that could be a card (12–19 digits, not
# starting with 0), as digits: what must never leak whole. A run of zeros or 20 digits is
# no card of this profile (zero-filled amounts and totals are ordinary runs of digits).
CARD_NUMBERS: Final = tuple(
    sorted({digits for card in CARDS
            if PAN_DIGITS_MIN <= len(digits := card.pan.replace("-", "")) <= PAN_DIGITS_MAX
            and not digits.startswith("0")})
)  # fmt: skip
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
    return min(max(amount, 1), SHOP_SALE_FEN_MAX)


def draw_card(generator: random.Random) -> Card:
    return generator.choices(CARDS, weights=_CARD_WEIGHTS)[0]


# Shares of the operation mix (the rest are sales).
VOID_SHARE: Final = 0.06
REFUND_SHARE: Final = 0.04
TRAINING_SHARE: Final = 0.02
THINK_MS_MIN: Final = 5_000
THINK_MS_MAX: Final = 150_000


# Busy days: the shop lowers its batch limit (posbatch terminal settings --batch-limit) so
# that a day's trading fills a batch or two.
BUSY_DAY_SHARE: Final = 0.15
BUSY_BATCH_LIMITS: Final = (2, 3, 4, 5, 8)
# Now and then a seed's host caps batches lower than field 48 does (an acquirer's rule): a
# terminal whose own limit is higher then meets the host's 95 and settles on it.
LOW_HOST_CAP_SHARE: Final = 0.3
LOW_HOST_CAPS: Final = (3, 4, 6, 10)
PROBE_SHARE: Final = 0.3  # per terminal-day: one third-party probe
CORRECTED_REVERSAL_SHARE: Final = 0.2  # of the probes: a corrected reversal instead


@dataclass(frozen=True, slots=True)
class Probe:
    """What a third-party terminal sends, and the code the host must answer."""

    label: str
    pan: str
    currency: str
    expected: str
    track2: str | None = None
    expiry: str | None = "3012"  # field 14 (None: not sent, as a swipe often is)


PROBES: Final = (
    Probe("currency 840 (USD)", "6222021234567890128", "840", "40"),
    Probe("currency 978 (EUR)", "6222021234567890128", "978", "40"),
    Probe("currency AB! (malformed)", "6222021234567890128", "AB!", "30"),
    Probe("currency '15 ' (malformed)", "6222021234567890128", "15 ", "30"),
    Probe("card starting with 0", "0000000000000000", "156", "14"),
    Probe("card starting with 0, 19 digits", "0622021234567890125", "156", "14"),
    Probe("check digit wrong", "6222021234567890123", "156", "14"),
    Probe(
        "track 2 of another card",
        "6222021234567890128",
        "156",
        "14",
        track2="6222020000000000018=3012101",
    ),
    # A swipe often carries the expiry only on its track: the host judges the card by it.
    Probe(
        "swiped, expired on the track, no field 14",
        "6222021234567890128",
        "156",
        "54",
        track2="6222021234567890128=2001101",
        expiry=None,
    ),
    Probe(
        "swiped, expired on the track, a field 14 to come",
        "6222021234567890128",
        "156",
        "54",
        track2="6222021234567890128=2001101",
    ),
)


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
