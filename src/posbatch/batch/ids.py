"""Ids as a person types them — terminal id, merchant id, batch number, STAN: one rule and
one message each, for every command and page that takes one.

The wire carries them as ans8 (field 41) and ans15 (field 42), which would let
spaces and punctuation through; an id typed at registration is held to letters
and digits, so that ``3000 001`` or fifteen spaces never become a terminal or a
merchant that no receipt, support desk or back office can tell apart.
"""

from __future__ import annotations

import re
from typing import Final

from posbatch.batch.cards import quoted_as_typed
from posbatch.batch.limits import BATCH_NO_DIGITS, BATCH_NO_MAX, STAN_MAX
from posbatch.errors import ConfigError

__all__ = [
    "MERCHANT_ID_CHARS",
    "TERMINAL_ID_CHARS",
    "check_batch_no",
    "check_merchant_id",
    "check_stan",
    "check_terminal_id",
    "not_registered",
]

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


def _check_number(text: str, *, what: str, maximum: int) -> int:
    digits = text.isascii() and text.isdigit()  # "١٢٣" and "²" are digits to str.isdigit
    if not digits or len(text) > BATCH_NO_DIGITS or not 1 <= int(text) <= maximum:
        raise ConfigError(
            f"{what}{quoted_as_typed(text)} must be 1 to {BATCH_NO_DIGITS} digits 0-9, "
            f"from 1 to {maximum}"
        )
    return int(text)


def check_batch_no(text: str) -> int:
    """The batch number (批次号) ``text`` names, 1..999999, else ConfigError saying why."""
    return _check_number(text, what="batch number", maximum=BATCH_NO_MAX)


def check_stan(text: str) -> int:
    """The STAN (流水号) ``text`` names, 1..999999, else ConfigError saying why."""
    return _check_number(text, what="STAN", maximum=STAN_MAX)


def not_registered(terminal_id: str) -> str:
    """The one line for a terminal id of the right shape that the host does not know."""
    return f"terminal ID {terminal_id} is not registered (see: posbatch host list-terminals)"
