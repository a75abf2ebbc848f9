"""GTIN check digits (GS1 mod-10), via python-stdnum.

Every GTIN the catalog stores is the 14-digit form (GTIN-14): EAN-8, UPC-A
(GTIN-12) and EAN-13 are left-padded with zeros, which is how GS1 AI (01)
carries them, so one product has exactly one key whatever its barcode.
"""

from __future__ import annotations

from stdnum import ean

from posbatch.errors import CatalogError

__all__ = ["GTIN_LENGTHS", "gtin_check_digit", "normalize_gtin", "with_check_digit"]

GTIN_LENGTHS = (8, 12, 13, 14)


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
