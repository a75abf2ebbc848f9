"""Batch number and STAN arithmetic of the terminal: 000001–999999, wrapping.

Both counters live in the terminal journal; this module only says what the
next value is, how far apart two values are (modulo the wrap), and whether a
value someone typed is a batch number at all. Pure: no storage, no clock.

- STAN (流水号): one per message the terminal originates; ``999999`` is
  followed by ``000001`` (``000000`` is never used).
- batch_no (批次号): advances by one when a batch closes; it wraps the same way.

"Behind" has ONE definition (:func:`is_behind`), used by the host (which
answers 77 ``R=BEHIND`` / ``R=AHEAD``), the terminal's recovery and doctor:
999999 is behind 000001, because 000001 follows it.
"""

from __future__ import annotations

from typing import Final

from posbatch.batch.limits import (
    BATCH_NO_DIGITS,
    BATCH_NO_FIRST,
    BATCH_NO_MAX,
    STAN_FIRST,
    STAN_MAX,
)
from posbatch.errors import ConfigError

__all__ = [
    "BATCH_NO_DIGITS",
    "BATCH_NO_FIRST",
    "BATCH_NO_MAX",
    "STAN_FIRST",
    "STAN_MAX",
    "batch_no_distance",
    "format_batch_no",
    "format_stan",
    "is_batch_no",
    "is_behind",
    "is_stan",
    "next_batch_no",
    "next_stan",
    "parse_batch_no",
]

_CYCLE: Final = BATCH_NO_MAX  # values per turn of either counter (1..999999)
# Batch numbers within half a turn are compared as "behind"/"ahead"; beyond that the
# wrap makes the order meaningless and the nearer direction wins.
_HALF_CYCLE: Final = _CYCLE // 2


def is_stan(value: int) -> bool:
    return STAN_FIRST <= value <= STAN_MAX


def is_batch_no(value: int) -> bool:
    return BATCH_NO_FIRST <= value <= BATCH_NO_MAX


def next_stan(stan: int) -> int:
    """The STAN after ``stan``: 999999 wraps to 1."""
    if not is_stan(stan):
        raise ValueError(f"STAN {stan} outside {STAN_FIRST}..{STAN_MAX}")
    return STAN_FIRST if stan == STAN_MAX else stan + 1


def next_batch_no(batch_no: int) -> int:
    """The batch number after ``batch_no``: 999999 wraps to 1."""
    if not is_batch_no(batch_no):
        raise ValueError(f"batch_no {batch_no} outside {BATCH_NO_FIRST}..{BATCH_NO_MAX}")
    return BATCH_NO_FIRST if batch_no == BATCH_NO_MAX else batch_no + 1


def batch_no_distance(start: int, end: int) -> int:
    """How many ``next_batch_no`` steps lead from ``start`` to ``end`` (0..999998)."""
    if not (is_batch_no(start) and is_batch_no(end)):
        raise ValueError(f"batch_no outside {BATCH_NO_FIRST}..{BATCH_NO_MAX}: {start}, {end}")
    return (end - start) % _CYCLE


def is_behind(batch_no: int, other: int) -> bool:
    """Whether ``batch_no`` comes before ``other``, counting across the wrap.

    ``other`` is reached from ``batch_no`` in 1..499,999 ``next_batch_no`` steps:
    000005 is behind 000006, 999999 is behind 000001 (the wrap), and 000001 is
    *not* behind 999999 — it is ahead of it. Equal numbers are neither.
    """
    return 0 < batch_no_distance(batch_no, other) <= _HALF_CYCLE


def format_stan(stan: int) -> str:
    if not is_stan(stan):
        raise ValueError(f"STAN {stan} outside {STAN_FIRST}..{STAN_MAX}")
    return f"{stan:06d}"


def format_batch_no(batch_no: int) -> str:
    if not is_batch_no(batch_no):
        raise ValueError(f"batch_no {batch_no} outside {BATCH_NO_FIRST}..{BATCH_NO_MAX}")
    return f"{batch_no:0{BATCH_NO_DIGITS}d}"


def parse_batch_no(text: str) -> int:
    """A batch number typed by a person: 1 to 6 digits, 000001..999999.

    Raises :class:`ConfigError` saying why otherwise (spaces around are
    forgiven; signs, decimals, letters and full-width digits are not).
    """
    stripped = text.strip()
    if not stripped:
        raise ConfigError("batch number is empty")
    if not (stripped.isascii() and stripped.isdigit()):
        raise ConfigError(f"batch number {text!r} must be digits 0-9 only")
    if len(stripped) > BATCH_NO_DIGITS:
        raise ConfigError(f"batch number {text!r} has more than {BATCH_NO_DIGITS} digits")
    value = int(stripped)
    if not is_batch_no(value):
        raise ConfigError(f"batch number {text!r} must be 000001..999999")
    return value
