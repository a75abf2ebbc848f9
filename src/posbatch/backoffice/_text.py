"""Free text people type (remarks, reasons) made safe to keep and show: bounded, one line
of printable characters, and never a card number: each is masked to its first 6 and last 4
by :func:`posbatch.batch.cards.mask_card_numbers` (a remark "card 6222021234567890123
refunded" keeps 622202*********0123), unless it is one of the ids passed as allowed (a
15-digit merchant id)."""

from __future__ import annotations

import re
from typing import Final

from posbatch.batch.cards import mask_card_numbers

__all__ = ["clean_text", "mask_card_numbers"]

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]+")


def clean_text(text: str, chars_max: int, *, allowed: frozenset[str] = frozenset()) -> str:
    """``text`` on one line (control characters become spaces), cut to ``chars_max``,
    card numbers masked."""
    one_line = _CONTROL.sub(" ", text).strip()
    # Mask before cutting, so a cut can never leave the digits of a number unmasked.
    return mask_card_numbers(one_line, allowed=allowed)[:chars_max]
