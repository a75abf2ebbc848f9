"""Free text people type (remarks, reasons) made safe to keep and show: bounded, one line
of printable characters, and never a card number: each is masked to its first 6 and last 4
by :func:`posbatch.batch.cards.mask_card_numbers` (a remark "card 6222021234567890123
refunded" keeps 622202*********0123), unless it is one of the ids passed as allowed (a
15-digit merchant id).

What a person types is not always ASCII: a Chinese input method in full-width mode writes
６２２２…, a pasted number may carry no-break spaces. Digits of every script become ASCII
digits and every kind of space a space, so that what is kept reads the same everywhere. The
net itself finds card numbers in digits of any script, grouped by any kind of separator, and
inside runs longer than 19 digits (a PAN glued to other digits, as in a batch-upload
record's zero-filled n20)."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from posbatch.batch.cards import mask_card_numbers

__all__ = ["clean_text", "mask_card_numbers"]

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]+")
# Any character beyond ASCII: a digit of another script or a space of another kind is
# made ASCII, anything else is left as it is.
_OTHER_DIGIT_OR_SPACE: Final = re.compile(r"[^\x00-\x7f]")


def _ascii_digit_or_space(match: re.Match[str]) -> str:
    char = match.group(0)
    if unicodedata.category(char) == "Nd":
        return str(unicodedata.decimal(char))
    if unicodedata.category(char) == "Zs":
        return " "
    return char


def clean_text(text: str, chars_max: int, *, allowed: frozenset[str] = frozenset()) -> str:
    """``text`` on one line (control characters become spaces), cut to ``chars_max``,
    card numbers masked (also in digits of other scripts, and inside longer runs)."""
    one_line = _CONTROL.sub(" ", text).strip()
    if not one_line.isascii():
        one_line = _OTHER_DIGIT_OR_SPACE.sub(_ascii_digit_or_space, one_line)
    # Mask before cutting, so a cut can never leave the digits of a number unmasked.
    return mask_card_numbers(one_line, allowed=allowed)[:chars_max]
