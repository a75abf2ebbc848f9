"""Terminal and merchant ids as a person types them: the one rule every registration applies.

The wire carries them as ans8 (field 41) and ans15 (field 42), which would let
spaces and punctuation through; an id typed at registration is held to letters
and digits, so that ``3000 001`` or fifteen spaces never become a terminal or a
merchant that no receipt, support desk or back office can tell apart.
"""

from __future__ import annotations

import re
from typing import Final

from posbatch.batch.cards import quoted_as_typed
from posbatch.errors import ConfigError

__all__ = ["MERCHANT_ID_CHARS", "TERMINAL_ID_CHARS", "check_merchant_id", "check_terminal_id"]

TERMINAL_ID_CHARS: Final = 8
MERCHANT_ID_CHARS: Final = 15
_LETTERS_AND_DIGITS: Final = re.compile(r"[0-9A-Za-z]+")


def _check(text: str, *, what: str, chars: int) -> str:
    if len(text) != chars or not _LETTERS_AND_DIGITS.fullmatch(text):
        raise ConfigError(
            f"{what}{quoted_as_typed(text)} must be {chars} letters or digits (A-Z, a-z, 0-9), "
            "no spaces or other characters"
        )
    return text


def check_terminal_id(text: str) -> str:
    """``text`` if it is a terminal id (8 letters or digits), else ConfigError saying why."""
    return _check(text, what="terminal ID", chars=TERMINAL_ID_CHARS)


def check_merchant_id(text: str) -> str:
    """``text`` if it is a merchant id (15 letters or digits), else ConfigError saying why."""
    return _check(text, what="merchant ID", chars=MERCHANT_ID_CHARS)
