"""Amounts typed by people (yuan, "12.50") to integer fen, and back. Exact: no float."""

from __future__ import annotations

import re
from typing import Final

from posbatch.batch.cards import quoted_as_typed
from posbatch.errors import ConfigError

__all__ = ["YUAN_DIGITS_MAX", "format_fen", "parse_yuan"]

YUAN_DIGITS_MAX: Final = 10  # field 4 holds 12 digits of fen
FEN_DIGITS_MAX: Final = 2
_YUAN: Final = re.compile(r"(?P<yuan>[0-9]+)(?:\.(?P<fen>[0-9]+))?")


def parse_yuan(text: str) -> int:
    """``"12.50"`` → 1250 fen. Refuses signs, more than 2 decimals, exponents, separators,
    and more than 10 digits of yuan (what field 4 cannot carry)."""
    stripped = text.strip()
    match = _YUAN.fullmatch(stripped) if stripped.isascii() else None
    if match is None or len(match["fen"] or "") > FEN_DIGITS_MAX:
        raise ConfigError(
            f"amount{quoted_as_typed(text)} must be yuan with at most 2 decimals, like 12.50 "
            "(no sign, no exponent, no separators)"
        )
    if len(match["yuan"].lstrip("0")) > YUAN_DIGITS_MAX:
        raise ConfigError(
            f"amount{quoted_as_typed(text)} is too large: at most {YUAN_DIGITS_MAX} digits of "
            f"yuan ({'9' * YUAN_DIGITS_MAX}.99)"
        )
    fen = int(match["yuan"]) * 100 + int((match["fen"] or "0").ljust(2, "0"))
    if fen <= 0:
        raise ConfigError(f"amount{quoted_as_typed(text)} must be more than 0.00")
    return fen


def format_fen(amount_fen: int) -> str:
    """1250 → ``"12.50"`` (yuan with two decimals; negative with a leading minus)."""
    sign = "-" if amount_fen < 0 else ""
    yuan, fen = divmod(abs(amount_fen), 100)
    return f"{sign}{yuan}.{fen:02d}"
