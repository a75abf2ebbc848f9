"""Issuer rules: who approves a sale when there is no real issuer link.

Deterministic and documented, so terminal developers can provoke every
decline on purpose. :class:`IssuerRules` checks, in this order:

1. amount: 0 fen → 13; above ``amount_limit_fen`` (default 5,000,000 fen =
   50,000 CNY) → 61;
2. card number: fails the Luhn check digit → 14; starts with a prefix of
   ``not_issued_prefixes`` (default ``622202999``) → 14;
3. expiry (field 14, YYMM, and track 2's, the worse of the two: see
   :func:`posbatch.batch.cards.card_expiry`) before the month of the injected clock, read
   in Beijing time → 54; a month outside 01..12 → 54;
4. ``insufficient_funds_prefixes`` (default ``622202888``) → 51;
5. otherwise 00.

A real issuer link replaces this by anything with the same ``decide`` method
(:class:`Issuer` protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from posbatch.batch.cards import luhn_valid
from posbatch.batch.model import beijing

__all__ = [
    "AMOUNT_LIMIT_FEN_DEFAULT",
    "TEST_PAN_APPROVED",
    "TEST_PAN_INSUFFICIENT_FUNDS",
    "TEST_PAN_NOT_ISSUED",
    "Issuer",
    "IssuerRules",
    "luhn_valid",
]

AMOUNT_LIMIT_FEN_DEFAULT: Final = 5_000_000
# Luhn-valid test cards, one per outcome.
TEST_PAN_APPROVED: Final = "6222021234567890128"
TEST_PAN_INSUFFICIENT_FUNDS: Final = "6222028880000000007"
TEST_PAN_NOT_ISSUED: Final = "6222029990000000003"


class Issuer(Protocol):
    def decide(self, *, pan: str, amount_fen: int, expiry: str | None, now: datetime) -> str: ...


@dataclass(frozen=True, slots=True)
class IssuerRules:
    """The default issuer: the rules of this module's docstring."""

    amount_limit_fen: int = AMOUNT_LIMIT_FEN_DEFAULT
    not_issued_prefixes: tuple[str, ...] = ("622202999",)
    insufficient_funds_prefixes: tuple[str, ...] = ("622202888",)
    check_luhn: bool = True

    def decide(self, *, pan: str, amount_fen: int, expiry: str | None, now: datetime) -> str:
        """The response code for a sale of ``amount_fen`` on ``pan`` at ``now``."""
        if amount_fen <= 0:
            return "13"
        if amount_fen > self.amount_limit_fen:
            return "61"
        if self.check_luhn and not luhn_valid(pan):
            return "14"
        if pan.startswith(self.not_issued_prefixes):
            return "14"
        if expiry is not None:
            month = int(expiry[2:4]) if len(expiry) == 4 and expiry.isdigit() else 0
            if not 1 <= month <= 12:
                return "54"
            # The expiry month is China's: a card of 2611 is over at 00:00 on 1 December in
            # Beijing, 16:00 UTC the day before.
            local = beijing(now)
            if int(expiry) < (local.year % 100) * 100 + local.month:
                return "54"
        if pan.startswith(self.insufficient_funds_prefixes):
            return "51"
        return "00"
