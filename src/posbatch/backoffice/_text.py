"""Free text people type (remarks, reasons) made safe to keep and show: bounded, one line
of printable characters, and never a card number — any run of 13–19 digits is masked to
its first 6 and last 4 (a remark "card 6222021234567890123 refunded" keeps 622202*********0123),
unless it is one of the ids passed as allowed (a 15-digit merchant id)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["clean_text", "mask_card_numbers"]

# 13–19 digits, also when written in groups ("6222 0212 3456 7890 123", "6222-0212-…").
_PAN_LIKE: Final = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]+")


def mask_card_numbers(text: str, *, allowed: frozenset[str] = frozenset()) -> str:
    def mask(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group(0))
        if digits in allowed:
            return match.group(0)
        return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]

    return _PAN_LIKE.sub(mask, text)


def clean_text(text: str, chars_max: int, *, allowed: frozenset[str] = frozenset()) -> str:
    """``text`` on one line (control characters become spaces), cut to ``chars_max``,
    card numbers masked."""
    one_line = _CONTROL.sub(" ", text).strip()
    # Mask before cutting, so a cut can never leave the digits of a number unmasked.
    return mask_card_numbers(one_line, allowed=allowed)[:chars_max]
