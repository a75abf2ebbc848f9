"""GTIN check digits (GS1 mod-10), via python-stdnum.

Every GTIN the catalog stores is the 14-digit form (GTIN-14): EAN-8, UPC-A
(GTIN-12) and EAN-13 are left-padded with zeros, which is how GS1 AI (01)
carries them, so one product has exactly one key whatever its barcode.
"""

from __future__ import annotations

import re
from typing import Final

from stdnum import ean

from posbatch.batch.cards import check_pan, grouped_pieces
from posbatch.errors import CatalogError

__all__ = [
    "DIGIT_RUN",
    "GTIN_LENGTHS",
    "could_be_card_number",
    "gtin_check_digit",
    "normalize_gtin",
    "shown_gtins",
    "with_check_digit",
]

GTIN_LENGTHS = (8, 12, 13, 14)
DIGIT_RUN: Final = re.compile(r"(?<![0-9])[0-9]+(?![0-9])")  # a run of ASCII digits, whole
# The GTIN lengths the card-number net would mask: it leaves 8 digits alone, and 12 unless
# they could be a card (and then they are not shown whole here either).
_MASKED_GTIN_LENGTHS: Final = frozenset({13, 14})


def could_be_card_number(run: str) -> bool:
    """Whether ``run`` (ASCII digits) could be a card number the host would take: as it is,
    or without its leading zeros — a 13-digit card scanned or typed as a GTIN comes back
    zero-filled to GTIN-14 ("unknown product 06222021234095"), the card whole behind a 0.
    A GS1 check digit that fits proves nothing: one card number in ten has one."""
    return check_pan(run) is None or check_pan(run.lstrip("0")) is None


def shown_gtins(text: str) -> frozenset[str]:
    """The GTINs in ``text`` the card-number net may show whole (its ``allowed``): the one
    rule of every error line, console line and HTTP answer that quotes a GTIN. A run of 13
    or 14 digits (the GTIN lengths the net masks) is shown whole only when no card number could be
    it (:func:`could_be_card_number`) and it is not a group of a longer run of digits and
    separators (a card typed in two halves, "62220212-34567890"). Any other GTIN is masked
    like a card, first 6 and last 4: an error quoting one says what else it knows (the line,
    the product's name)."""
    glued = grouped_pieces(text)
    return frozenset(
        run
        for run in DIGIT_RUN.findall(text)
        if len(run) in _MASKED_GTIN_LENGTHS and run not in glued and not could_be_card_number(run)
    )


def gtin_check_digit(payload: str) -> str:
    """The GS1 mod-10 check digit for ``payload`` (a GTIN without its last digit)."""
    if not payload.isascii() or not payload.isdigit():
        raise CatalogError(f"GTIN payload {payload!r} is not all digits")
    return str(ean.calc_check_digit(payload))


def with_check_digit(payload: str) -> str:
    """``payload`` followed by its check digit."""
    return payload + gtin_check_digit(payload)


def normalize_gtin(value: str) -> str:
    """The GTIN-14 form of ``value`` (8, 12, 13 or 14 digits) after checking its check digit.

    Raises :class:`CatalogError` naming the expected check digit when it is wrong.
    """
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise CatalogError(f"GTIN {value!r} is not all digits")
    if len(text) not in GTIN_LENGTHS:
        raise CatalogError(f"GTIN {value!r} has {len(text)} digits; expected 8, 12, 13 or 14")
    expected = gtin_check_digit(text[:-1])
    if expected != text[-1]:
        raise CatalogError(
            f"GTIN {text} has a bad check digit: expected {expected}, got {text[-1]}"
        )
    return text.zfill(14)
